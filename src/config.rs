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
    #[arg(long, env = "FANFOLD_AUTH_TOKENS", conflicts_with = "auth_token_lines")]
    pub auth_tokens: Option<PathBuf>,
    /// The tokens file's lines themselves, separated by `;` or newlines: for platforms that
    /// hand secrets to containers as variables (the lines hold only hashes of tokens).
    #[arg(long, env = "FANFOLD_AUTH_TOKEN_LINES", hide_env_values = true)]
    pub auth_token_lines: Option<String>,
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
    /// Jobs running or queued at once; a submission over it is refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "FANFOLD_MAX_ACTIVE_JOBS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_active_jobs: u64,
    /// Jobs one principal may have running or queued at once.
    #[arg(long, env = "FANFOLD_MAX_ACTIVE_JOBS_PER_PRINCIPAL", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_active_jobs_per_principal: u64,
    /// How long a finished job, its result and its state are kept after it ends (`forever`
    /// keeps them until --keep-jobs removes them).
    #[arg(long, env = "FANFOLD_KEEP_RESULTS", default_value = "24h", value_parser = flags::lifetime)]
    pub keep_results: flags::Lifetime,
    /// Finished jobs kept at most (the newest); older ones are removed with their results.
    #[arg(long, env = "FANFOLD_KEEP_JOBS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_jobs: u64,
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
    /// Name in the coordinator's logs, and in `worker://NAME/PATH` inputs [default:
    /// HOSTNAME-PID; HOSTNAME alone with --local-root, so the name outlives a restart].
    #[arg(long, env = "FANFOLD_WORKER_NAME")]
    pub name: Option<String>,
    /// A directory whose files this worker offers as inputs of its own (repeatable;
    /// comma-separated in the variable): `worker://NAME/PATH` names one on this worker,
    /// `worker://*/PATH` the same path on every worker that offers it. Chunks of them are
    /// read only here. Without one, the worker offers no files.
    #[arg(
        long = "local-root",
        env = "FANFOLD_LOCAL_ROOTS",
        value_delimiter = ','
    )]
    pub local_roots: Vec<PathBuf>,
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
    /// Memory this worker's tasks may hold, e.g. 2GiB [default: half of the machine's memory
    /// or of the container's limit, whichever is less]. Half of it is shared by the slots'
    /// reduce tasks: one that fetches more spills sorted runs to the spill directory and
    /// merges them at the end.
    #[arg(long, env = "FANFOLD_MEMORY", value_parser = flags::size)]
    pub memory: Option<u64>,
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
        env = "FANFOLD_TLS_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(
        long = "tls-key",
        global = true,
        env = "FANFOLD_TLS_CLIENT_KEY",
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
         (--auth-tokens or FANFOLD_AUTH_TOKEN_LINES, see `coordinator token new`), or pass \
         --insecure \
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
        } else if self.auth_tokens.is_some() || self.auth_token_lines.is_some() {
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
        let access = match (&self.auth_tokens, &self.auth_token_lines) {
            (Some(path), _) => fanfold_coordinator::auth::Access::load(path)?,
            (None, Some(lines)) => fanfold_coordinator::auth::Access::parse(
                &lines.replace(';', "\n"),
                "FANFOLD_AUTH_TOKEN_LINES",
            )?,
            (None, None) => fanfold_coordinator::auth::Access::Open,
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
            limits: fanfold_coordinator::Limits {
                active_jobs: usize::try_from(self.max_active_jobs).unwrap_or(usize::MAX),
                active_jobs_per_principal: usize::try_from(self.max_active_jobs_per_principal)
                    .unwrap_or(usize::MAX),
            },
            retention: fanfold_coordinator::Retention {
                keep_for: self.keep_results.0,
                keep_jobs: Some(usize::try_from(self.keep_jobs).unwrap_or(usize::MAX)),
            },
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
        let local_roots = match self.local_roots.as_slice() {
            [] => None,
            dirs => {
                if let Some(url) = dirs.iter().find(|d| {
                    d.to_str()
                        .is_some_and(|t| fanfold_common::location::scheme(t).is_some())
                }) {
                    return Err(FlagError::Root {
                        flag: "--local-root",
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!(
                                "{}: a local root is a directory on this machine",
                                url.display()
                            ),
                        ),
                    });
                }
                Some(
                    fanfold_common::roots::Roots::new(dirs).map_err(|source| FlagError::Root {
                        flag: "--local-root",
                        source,
                    })?,
                )
            }
        };
        let name = self.name.clone().unwrap_or_else(|| match local_roots {
            Some(_) => host_name(),
            None => default_worker_name(),
        });
        if local_roots.is_some() && !fanfold_common::location::is_worker_name(&name) {
            return Err(FlagError::Root {
                flag: "--local-root",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "worker name '{name}': with --local-root the name (--name) names this \
                         worker's files, worker://NAME/PATH, and may hold only letters, digits, \
                         '.', '_' and '-'"
                    ),
                ),
            });
        }
        let mut config = fanfold_worker::Config::new(&self.coordinator, name, slots);
        config.local_roots = local_roots;
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
        config.memory = self.memory.unwrap_or_else(default_memory);
        Ok(config)
    }
}

/// Half of the machine's memory or of this process's cgroup limit, whichever is less; 1 GiB
/// where neither can be read.
fn default_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|l| l.trim().parse::<u64>().ok());
    match (total, limit) {
        (Some(t), Some(l)) => t.min(l) / 2,
        (Some(t), None) => t / 2,
        (None, Some(l)) => l / 2,
        (None, None) => 1 << 30,
    }
}

/// `HOSTNAME-PID`, or `worker-PID` where the host name cannot be read.
fn default_worker_name() -> String {
    format!("{}-{}", host_name(), std::process::id())
}

/// This machine's host name, or `worker` where it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

#[cfg(test)]
mod tests;
