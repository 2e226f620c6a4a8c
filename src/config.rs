//! The flags of the `coordinator` and `worker` binaries, each with its `FANFOLD_*` variable, and
//! their validation into the configs `fanfold_coordinator::run` and `fanfold_worker::run` take.
//! The binaries flatten [`CoordinatorFlags`] and [`WorkerFlags`] into their command lines; a
//! custom build does the same and swaps in its own registry (see `examples/custom_job.rs`).

use std::path::PathBuf;
use std::time::Duration;

use fanfold_common::registry::Registry;
use fanfold_common::spec::SpecInvalid;

use crate::flags;

/// Everything a coordinator is started with.
#[derive(clap::Args, Clone, Debug)]
pub struct CoordinatorFlags {
    /// Address to listen on for clients, workers and health probes. An address other machines
    /// can reach needs --auth-tokens (or --insecure): without authentication, anyone who
    /// reaches the port can run jobs over any file the coordinator can read.
    #[arg(long, env = "FANFOLD_LISTEN", default_value = "127.0.0.1:7077")]
    pub listen: String,
    /// Address of the HTTP port: status pages, the JSON API (/api/v1/), Prometheus /metrics,
    /// /healthz and /readyz; `off` serves none. An address other machines can reach needs
    /// --insecure, like --listen.
    #[arg(long, env = "FANFOLD_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: String,
    /// The HTTP port's URL as clients reach it (e.g. `http://coord.example:8080` behind a
    /// published or forwarded port), for the page URLs `submit-job` prints [default: the bound
    /// address].
    #[arg(long, env = "FANFOLD_HTTP_ADVERTISE")]
    pub http_advertise: Option<String>,
    /// Dotted host names the HTTP port answers to (comma-separated), e.g. a proxy's or an
    /// ingress's; IP addresses, `localhost`, single-label names and --http-advertise's host
    /// always are. Requests naming other hosts are refused (DNS rebinding).
    #[arg(long, env = "FANFOLD_HTTP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub http_allowed_hosts: Vec<String>,
    /// Listen on a non-loopback address with no authentication, accepting every client and
    /// worker that reaches the port (a warning is logged at every start).
    #[arg(long, env = "FANFOLD_INSECURE")]
    pub insecure: bool,
    /// The tokens file: one principal per line, `NAME ROLE[+programs] sha256:HEX` (make lines
    /// with `coordinator token new NAME ROLE`). Every client, worker and page must then present
    /// a token; the file must not be readable by others.
    #[arg(long, env = "FANFOLD_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,
    /// A directory job inputs must lie beneath (repeatable; comma-separated in the variable).
    /// Paths are resolved beneath it when opened: `..`, symlinks out, devices, FIFOs and
    /// /proc are refused. Without one, any file this coordinator can read.
    #[arg(long = "data-root", env = "FANFOLD_DATA_ROOTS", value_delimiter = ',')]
    pub data_roots: Vec<PathBuf>,
    /// A directory output directories (--output-dir) must lie beneath (repeatable).
    #[arg(
        long = "output-root",
        env = "FANFOLD_OUTPUT_ROOTS",
        value_delimiter = ','
    )]
    pub output_roots: Vec<PathBuf>,
    /// Most input files one job may name.
    #[arg(long, env = "FANFOLD_MAX_INPUTS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_inputs: u64,
    /// The gRPC port's TLS certificate chain (PEM); with --tls-key it serves only TLS.
    #[arg(long, env = "FANFOLD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "FANFOLD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A CA (PEM) whose client certificates workers must present (mutual TLS); clients of the
    /// job API need none.
    #[arg(long, env = "FANFOLD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Chunk size for jobs that do not set one (e.g. 8MiB).
    #[arg(long, env = "FANFOLD_CHUNK_SIZE", default_value = "16MiB", value_parser = flags::size)]
    pub chunk_size: u64,
    /// Chunks a worker may hold beyond its slots, so it never waits between chunks.
    #[arg(long, env = "FANFOLD_PREFETCH", default_value_t = 1)]
    pub prefetch: u32,
    /// Failed attempts per chunk before its failure fails the job.
    #[arg(long, env = "FANFOLD_MAX_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Silence after which a worker counts as gone and its chunks are re-queued.
    #[arg(long, env = "FANFOLD_WORKER_TIMEOUT", default_value = "10s", value_parser = flags::duration)]
    pub worker_timeout: Duration,
    /// Directory for durable state (jobs, checkpoints, results); jobs resume from it after a
    /// restart. Without it, state lives in memory only.
    #[arg(long, env = "FANFOLD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// A chunk running this long, and 4 times the job's median chunk time, gets a backup
    /// attempt on an idle worker once nothing else is pending.
    #[arg(long, env = "FANFOLD_BACKUP_AFTER", default_value = "10s", value_parser = flags::duration)]
    pub backup_after: Duration,
    /// Never start backup attempts of straggling chunks.
    #[arg(long, env = "FANFOLD_NO_BACKUPS")]
    pub no_backups: bool,
    /// Accept streaming jobs, whose reducer command runs here: they run arbitrary programs.
    #[arg(long, env = "FANFOLD_ALLOW_STREAMING")]
    pub allow_streaming: bool,
    /// Log JSON lines instead of text.
    #[arg(long, env = "FANFOLD_LOG_JSON")]
    pub log_json: bool,
}

/// Everything a worker is started with.
#[derive(clap::Args, Clone, Debug)]
pub struct WorkerFlags {
    /// Coordinator address, `host:port` or a URL.
    #[arg(long, env = "FANFOLD_COORDINATOR", default_value = "127.0.0.1:7077", value_parser = flags::endpoint)]
    pub coordinator: String,
    /// Chunks mapped at once [default: available cores].
    #[arg(long, env = "FANFOLD_SLOTS", value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: Option<u32>,
    /// Name in the coordinator's logs [default: HOSTNAME-PID].
    #[arg(long, env = "FANFOLD_WORKER_NAME")]
    pub name: Option<String>,
    /// Interval between heartbeats; keep it well under the coordinator's worker timeout.
    #[arg(long, env = "FANFOLD_HEARTBEAT", default_value = "2s", value_parser = flags::duration)]
    pub heartbeat: Duration,
    /// On SIGTERM or SIGINT, how long running chunks may take to finish before detaching.
    #[arg(long, env = "FANFOLD_DRAIN_TIMEOUT", default_value = "30s", value_parser = flags::duration)]
    pub drain_timeout: Duration,
    /// Run streaming jobs' mapper commands: they run arbitrary programs as this user. Without
    /// it, such chunks fail (not retried) with an error that says so.
    #[arg(long, env = "FANFOLD_ALLOW_STREAMING")]
    pub allow_streaming: bool,
    /// This worker sees the coordinator's input files at the same paths (the same machine, or
    /// a shared volume mounted at the same path): it reads its chunks itself instead of
    /// receiving their bytes. A chunk it cannot read is handed back and sent inline.
    #[arg(long, env = "FANFOLD_SHARED_STORAGE")]
    pub shared_storage: bool,
    /// Where this worker serves the map outputs of partitioned jobs (--reducers) to other
    /// workers. Loopback by default (a one-machine fleet); an address other machines can reach
    /// needs --insecure, since anyone who reaches it can read those outputs.
    #[arg(long, env = "FANFOLD_SHUFFLE_LISTEN", default_value = "127.0.0.1:0")]
    pub shuffle_listen: std::net::SocketAddr,
    /// The `host:port` other workers reach the shuffle address at [default: the bound address],
    /// e.g. the pod IP and port on Kubernetes.
    #[arg(long, env = "FANFOLD_SHUFFLE_ADVERTISE")]
    pub shuffle_advertise: Option<String>,
    /// Directory for partitioned jobs' map outputs [default: the system temp dir]; each
    /// worker keeps its own directory there and removes it when it stops.
    #[arg(long, env = "FANFOLD_SPILL_DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Serve Prometheus /metrics (slots busy, chunks mapped, map time, bytes read, resident
    /// memory) on this address; none by default. An address other machines can reach needs
    /// --insecure.
    #[arg(long, env = "FANFOLD_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Serve metrics on an address other machines can reach, with no authentication, and map
    /// outputs on one (fetches present the coordinator's shuffle token, over plain text).
    #[arg(long, env = "FANFOLD_INSECURE")]
    pub insecure: bool,
    #[command(flatten)]
    pub auth: ClientAuthFlags,
    /// Log JSON lines instead of text.
    #[arg(long, env = "FANFOLD_LOG_JSON")]
    pub log_json: bool,
}

/// How a client (`submit-job`) or a worker proves who it is and checks whom it talks to.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientAuthFlags {
    /// A file holding this client's token, for a coordinator with --auth-tokens. The variable
    /// FANFOLD_TOKEN may hold the token itself instead.
    #[arg(long, global = true, env = "FANFOLD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed an https:// coordinator's certificate [default:
    /// the public web roots].
    #[arg(long, global = true, env = "FANFOLD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) to present, for a coordinator that asks workers for one.
    #[arg(
        long = "tls-cert",
        global = true,
        env = "FANFOLD_TLS_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(
        long = "tls-key",
        global = true,
        env = "FANFOLD_TLS_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

/// Reads a file a flag names, saying which flag.
fn read_flag_file(flag: &'static str, path: &std::path::Path) -> Result<Vec<u8>, FlagError> {
    std::fs::read(path).map_err(|source| FlagError::File {
        flag,
        path: path.display().to_string(),
        source,
    })
}

impl ClientAuthFlags {
    /// The token (FANFOLD_TOKEN, else --token-file) and TLS files these flags name.
    pub fn security(&self) -> Result<fanfold_proto::transport::ClientSecurity, FlagError> {
        use fanfold_proto::transport::{ClientSecurity, ClientTls, Token};
        let token = match (std::env::var("FANFOLD_TOKEN"), &self.token_file) {
            (Ok(token), _) if !token.trim().is_empty() => {
                Some(Token::new(&token).map_err(|e| FlagError::Token("FANFOLD_TOKEN".into(), e))?)
            }
            (_, Some(path)) => {
                let text = read_flag_file("--token-file", path)?;
                let text = String::from_utf8_lossy(&text);
                Some(
                    Token::new(&text)
                        .map_err(|e| FlagError::Token(path.display().to_string(), e))?,
                )
            }
            _ => None,
        };
        let tls = ClientTls {
            ca_pem: self
                .tls_ca
                .as_deref()
                .map(|p| read_flag_file("--tls-ca", p))
                .transpose()?,
            identity: match (&self.client_cert, &self.client_key) {
                (Some(cert), Some(key)) => Some((
                    read_flag_file("--tls-cert", cert)?,
                    read_flag_file("--tls-key", key)?,
                )),
                _ => None,
            },
        };
        Ok(ClientSecurity { tls, token })
    }
}

/// Flags that parsed but cannot run together, or a listener they ask for.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("{flag} {path}: {source}")]
    File {
        flag: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token in {0}: {1}")]
    Token(String, fanfold_proto::transport::BadToken),
    #[error(transparent)]
    Tokens(#[from] fanfold_coordinator::auth::TokensError),
    #[error("{flag} {source}")]
    Root {
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("--chunk-size: {0}")]
    ChunkSize(SpecInvalid),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {0} with no authentication: anyone who reaches it could run jobs \
         over any file this coordinator can read. Listen on a loopback address (the defaults: \
         127.0.0.1:7077 for --listen, 127.0.0.1:8080 for --http-listen), give a tokens file \
         (--auth-tokens, see `coordinator token new`), or pass --insecure \
         (FANFOLD_INSECURE=true) to accept every client that reaches the port"
    )]
    Exposed(std::net::SocketAddr),
    #[error(
        "refusing to serve map outputs on {0} with no authentication: anyone who reaches it \
         could read them. Keep --shuffle-listen on a loopback address (the default), attach \
         with a token (FANFOLD_TOKEN or --token-file), or pass --insecure \
         (FANFOLD_INSECURE=true)"
    )]
    ShuffleExposed(std::net::SocketAddr),
    #[error(
        "refusing to serve metrics on {0} with no authentication. Keep --metrics-listen on a \
         loopback address, or pass --insecure (FANFOLD_INSECURE=true)"
    )]
    MetricsExposed(std::net::SocketAddr),
}

/// Who can reach a coordinator's listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exposure {
    /// Only this machine.
    Loopback,
    /// Other machines, each with a token (--auth-tokens).
    Authenticated,
    /// Other machines, with no authentication: asked for with --insecure.
    Insecure,
}

/// How many times a job's median chunk time a chunk must run before it gets a backup.
const BACKUP_SLOWDOWN: u32 = 4;

impl CoordinatorFlags {
    /// Binds the listeners, refusing an address other machines can reach unless `--insecure`
    /// says so; the caller logs a warning for [`Exposure::Insecure`] at every start.
    pub async fn listen(&self) -> Result<(fanfold_coordinator::Listeners, Exposure), FlagError> {
        let listen = |address: &str| {
            let address = address.to_owned();
            move |source| FlagError::Listen { address, source }
        };
        let http = self.http_address();
        let listeners = fanfold_coordinator::Listeners::bind(&self.listen, http)
            .await
            .map_err(|e| {
                // Say which of the two addresses could not be bound.
                let grpc_free = std::net::TcpListener::bind(&self.listen).is_ok();
                match http {
                    Some(http) if grpc_free => listen(http)(e),
                    _ => listen(&self.listen)(e),
                }
            })?;
        let bound = listeners.grpc.local_addr().map_err(listen(&self.listen))?;
        let mut exposure = self.exposure(bound)?;
        if let Some(http) = &listeners.http {
            let bound = http.local_addr().map_err(listen(&self.http_listen))?;
            exposure = exposure.max(self.exposure(bound)?);
        }
        Ok((listeners, exposure))
    }

    /// The HTTP port's address, unless it is `off`.
    pub fn http_address(&self) -> Option<&str> {
        (self.http_listen != "off").then_some(self.http_listen.as_str())
    }

    /// Who can reach a listener bound to `bound`, if these flags allow it.
    pub fn exposure(&self, bound: std::net::SocketAddr) -> Result<Exposure, FlagError> {
        if bound.ip().is_loopback() {
            Ok(Exposure::Loopback)
        } else if self.auth_tokens.is_some() {
            Ok(Exposure::Authenticated)
        } else if self.insecure {
            Ok(Exposure::Insecure)
        } else {
            Err(FlagError::Exposed(bound))
        }
    }

    /// The coordinator's config, serving the operations of `registry` (programs only with
    /// `--allow-streaming`). The listen address and log format are the caller's to apply.
    pub fn config(&self, registry: Registry) -> Result<fanfold_coordinator::Config, FlagError> {
        fanfold_common::spec::check_chunk_size(self.chunk_size).map_err(FlagError::ChunkSize)?;
        let access = match &self.auth_tokens {
            Some(path) => fanfold_coordinator::auth::Access::load(path)?,
            None => fanfold_coordinator::auth::Access::Open,
        };
        let roots = |flag, dirs: &[PathBuf]| {
            fanfold_common::roots::Roots::new(dirs)
                .map_err(|source| FlagError::Root { flag, source })
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(fanfold_proto::transport::ServerTls {
                cert_pem: read_flag_file("--tls-cert", cert)?,
                key_pem: read_flag_file("--tls-key", key)?,
                client_ca_pem: self
                    .tls_client_ca
                    .as_deref()
                    .map(|p| read_flag_file("--tls-client-ca", p))
                    .transpose()?,
            }),
            _ => None,
        };
        Ok(fanfold_coordinator::Config {
            access,
            data_roots: roots("--data-root", &self.data_roots)?,
            output_roots: roots("--output-root", &self.output_roots)?,
            max_inputs: usize::try_from(self.max_inputs).unwrap_or(usize::MAX),
            tls,
            default_chunk_size: self.chunk_size,
            scheduling: fanfold_coordinator::Scheduling {
                prefetch: self.prefetch,
                max_attempts: self.max_attempts,
                worker_timeout: self.worker_timeout,
                backups: (!self.no_backups).then_some(fanfold_coordinator::BackupPolicy {
                    min_age: self.backup_after,
                    slowdown: BACKUP_SLOWDOWN,
                }),
            },
            state_dir: self.state_dir.clone(),
            registry: registry.allow_programs(self.allow_streaming),
            http_advertise: self.http_advertise.clone(),
            http_allowed_hosts: self.http_allowed_hosts.clone(),
        })
    }
}

impl WorkerFlags {
    /// The worker's config, running the operations of `registry` (programs only with
    /// `--allow-streaming`); slots default to the available cores, the name to HOSTNAME-PID.
    /// The log format is the caller's to apply.
    pub fn config(&self, registry: Registry) -> Result<fanfold_worker::Config, FlagError> {
        let security = self.auth.security()?;
        // Fetches must present the coordinator's shuffle token, which a worker gets only by
        // attaching with a token of its own.
        if !self.shuffle_listen.ip().is_loopback() && !self.insecure && security.token.is_none() {
            return Err(FlagError::ShuffleExposed(self.shuffle_listen));
        }
        if let Some(metrics) = self.metrics_listen
            && !metrics.ip().is_loopback()
            && !self.insecure
        {
            return Err(FlagError::MetricsExposed(metrics));
        }
        let slots = self
            .slots
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        let name = self.name.clone().unwrap_or_else(default_worker_name);
        let mut config = fanfold_worker::Config::new(&self.coordinator, name, slots);
        config.heartbeat = self.heartbeat;
        config.drain_timeout = self.drain_timeout;
        config.shared_storage = self.shared_storage;
        config.registry = registry.allow_programs(self.allow_streaming);
        config.shuffle_listen = self.shuffle_listen;
        config.shuffle_advertise = self.shuffle_advertise.clone();
        config.metrics_listen = self.metrics_listen;
        config.security = security;
        if let Some(dir) = &self.spill_dir {
            config.spill_dir = dir.clone();
        }
        Ok(config)
    }
}

/// `HOSTNAME-PID`, or `worker-PID` where the host name cannot be read.
fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use fanfold_common::operation::{Options, SpecError};

    use super::*;

    #[derive(Parser)]
    struct Coordinator {
        #[command(flatten)]
        flags: CoordinatorFlags,
    }

    #[derive(Parser)]
    struct Worker {
        #[command(flatten)]
        flags: WorkerFlags,
    }

    /// Whether `registry` lets a streaming job (a program) run.
    fn runs_programs(registry: &Registry) -> bool {
        let options: Options = [("mapper".to_owned(), "cat".to_owned())].into();
        match registry.build("streaming", &options) {
            Ok(_) => true,
            Err(SpecError::ProgramsNotAllowed(_)) => false,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn only_loopback_is_served_without_insecure() {
        let safe = Coordinator::try_parse_from(["coordinator"]).unwrap().flags;
        let addr = |text: &str| text.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(
            safe.exposure(addr("127.0.0.1:7077")).unwrap(),
            Exposure::Loopback
        );
        assert_eq!(
            safe.exposure(addr("[::1]:7077")).unwrap(),
            Exposure::Loopback
        );
        for open in ["0.0.0.0:7077", "[::]:7077", "10.1.2.3:7077"] {
            let refused = safe.exposure(addr(open)).unwrap_err().to_string();
            assert!(
                refused.starts_with(&format!("refusing to listen on {open}"))
                    && refused.contains("--insecure"),
                "{refused}"
            );
        }
        let open = Coordinator::try_parse_from(["coordinator", "--insecure"])
            .unwrap()
            .flags;
        assert_eq!(
            open.exposure(addr("0.0.0.0:7077")).unwrap(),
            Exposure::Insecure
        );
    }

    #[test]
    fn coordinator_defaults_are_the_documented_ones() {
        let flags = Coordinator::try_parse_from(["coordinator"]).unwrap().flags;
        assert_eq!(flags.listen, "127.0.0.1:7077");
        assert!(!flags.insecure);
        assert_eq!(flags.http_address(), Some("127.0.0.1:8080"));
        assert_eq!(flags.http_advertise, None);
        assert!(!flags.log_json);
        let config = flags.config(Registry::builtin()).unwrap();
        assert_eq!(config.default_chunk_size, 16 << 20);
        assert_eq!(config.scheduling.prefetch, 1);
        assert_eq!(config.scheduling.max_attempts, 4);
        assert_eq!(config.scheduling.worker_timeout, Duration::from_secs(10));
        let backups = config.scheduling.backups.expect("backups on by default");
        assert_eq!(
            (backups.min_age, backups.slowdown),
            (Duration::from_secs(10), 4)
        );
        assert_eq!(config.state_dir, None);
        assert!(!runs_programs(&config.registry));
    }

    #[test]
    fn coordinator_flags_reach_its_config() {
        let flags = Coordinator::try_parse_from([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--chunk-size",
            "8MiB",
            "--prefetch",
            "3",
            "--max-attempts",
            "2",
            "--worker-timeout",
            "1500ms",
            "--state-dir",
            "/var/lib/fanfold",
            "--no-backups",
            "--allow-streaming",
            "--log-json",
            "--http-listen",
            "off",
            "--http-advertise",
            "http://coord.example:8080",
        ])
        .unwrap()
        .flags;
        assert_eq!(flags.listen, "127.0.0.1:0");
        assert_eq!(flags.http_address(), None);
        assert!(flags.log_json);
        let config = flags.config(Registry::builtin()).unwrap();
        assert_eq!(config.default_chunk_size, 8 << 20);
        assert_eq!(config.scheduling.prefetch, 3);
        assert_eq!(config.scheduling.max_attempts, 2);
        assert_eq!(
            config.scheduling.worker_timeout,
            Duration::from_millis(1500)
        );
        assert!(config.scheduling.backups.is_none());
        assert_eq!(config.state_dir, Some(PathBuf::from("/var/lib/fanfold")));
        assert!(runs_programs(&config.registry));
        assert_eq!(
            config.http_advertise.as_deref(),
            Some("http://coord.example:8080")
        );

        let later = Coordinator::try_parse_from(["coordinator", "--backup-after", "1m"])
            .unwrap()
            .flags;
        let backups = later
            .config(Registry::builtin())
            .unwrap()
            .scheduling
            .backups
            .unwrap();
        assert_eq!(backups.min_age, Duration::from_secs(60));
    }

    #[test]
    fn a_chunk_size_out_of_range_is_refused_naming_the_flag() {
        let flags = Coordinator::try_parse_from(["coordinator", "--chunk-size", "10"])
            .unwrap()
            .flags;
        let error = flags.config(Registry::builtin()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--chunk-size: chunk size 10 is outside 1024..=268435456 bytes"
        );
        assert!(Coordinator::try_parse_from(["coordinator", "--max-attempts", "0"]).is_err());
    }

    #[test]
    fn worker_flags_reach_its_config_and_defaults_fill_the_rest() {
        let flags = Worker::try_parse_from([
            "worker",
            "--coordinator",
            "coord:7077",
            "--slots",
            "3",
            "--name",
            "w1",
            "--heartbeat",
            "500ms",
            "--drain-timeout",
            "5s",
            "--shared-storage",
            "--allow-streaming",
            "--shuffle-listen",
            "127.0.0.1:7078",
            "--shuffle-advertise",
            "w1.local:7078",
            "--spill-dir",
            "/var/spill",
        ])
        .unwrap()
        .flags;
        let config = flags.config(Registry::builtin()).unwrap();
        assert_eq!(config.shuffle_listen.to_string(), "127.0.0.1:7078");
        assert_eq!(config.shuffle_advertise.as_deref(), Some("w1.local:7078"));
        assert_eq!(config.spill_dir, PathBuf::from("/var/spill"));
        assert_eq!(config.coordinator, "http://coord:7077");
        assert_eq!((config.name.as_str(), config.slots), ("w1", 3));
        assert_eq!(config.heartbeat, Duration::from_millis(500));
        assert_eq!(config.drain_timeout, Duration::from_secs(5));
        assert!(config.shared_storage);
        assert!(runs_programs(&config.registry));

        let flags = Worker::try_parse_from(["worker"]).unwrap().flags;
        let config = flags.config(Registry::builtin()).unwrap();
        assert!(config.shuffle_listen.ip().is_loopback());
        assert_eq!(config.spill_dir, std::env::temp_dir());
        assert_eq!(config.coordinator, "http://127.0.0.1:7077");
        let cores = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(config.slots, cores);
        assert!(
            config.name.ends_with(&format!("-{}", std::process::id())),
            "{}",
            config.name
        );
        assert_eq!(config.heartbeat, Duration::from_secs(2));
        assert_eq!(config.drain_timeout, Duration::from_secs(30));
        assert!(!config.shared_storage);
        assert!(!runs_programs(&config.registry));
        assert!(Worker::try_parse_from(["worker", "--slots", "0"]).is_err());
        let open = ["worker", "--shuffle-listen", "0.0.0.0:7078"];
        let refused = Worker::try_parse_from(open).unwrap().flags;
        let error = refused.config(Registry::builtin()).unwrap_err().to_string();
        assert!(
            error.contains("0.0.0.0:7078") && error.contains("--insecure"),
            "{error}"
        );
        let allowed = Worker::try_parse_from([&open[..], &["--insecure"]].concat()).unwrap();
        assert!(allowed.flags.config(Registry::builtin()).is_ok());

        let metrics = ["worker", "--metrics-listen", "0.0.0.0:9090"];
        let refused = Worker::try_parse_from(metrics).unwrap().flags;
        let error = refused.config(Registry::builtin()).unwrap_err().to_string();
        assert!(
            error.contains("metrics on 0.0.0.0:9090") && error.contains("--insecure"),
            "{error}"
        );
        let allowed = Worker::try_parse_from([&metrics[..], &["--insecure"]].concat()).unwrap();
        let config = allowed.flags.config(Registry::builtin()).unwrap();
        assert_eq!(config.metrics_listen, Some("0.0.0.0:9090".parse().unwrap()));
    }
}
