//! What the container tests stand on: finding Docker (or skipping), building the image once,
//! starting a coordinator and worker containers on a private network, and printing their logs
//! when a test fails.
//!
//! Docker policy: with no reachable engine the tests skip with a message on stderr, unless
//! `FANFOLD_REQUIRE_DOCKER=1` (set by `.ci/run`), which turns that into a failure.
//!
//! Over 500 lines: the cluster guard, the image build and the old-engine relay are one
//! harness that every container test starts the same way.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testcontainers::bollard::API_DEFAULT_VERSION;
use testcontainers::bollard::models::HostConfig;
use testcontainers::core::{AccessMode, IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::support;

/// The coordinator's gRPC port inside its container.
const GRPC_PORT: u16 = 7077;
/// Where the coordinator keeps its state, on a named volume.
const STATE_DIR: &str = "/var/lib/fanfold";
/// Short enough that a partitioned worker is given up on quickly, long enough to survive a
/// busy CI machine (workers beat every 500 ms).
pub const WORKER_TIMEOUT: &str = "3s";

/// A reachable Docker engine and the image under test.
pub struct Docker {
    /// `repository:tag` of the fanfold image.
    pub image: String,
}

/// The Docker engine and the image, once per test binary; `None` means "skip this test".
pub fn docker() -> Option<&'static Docker> {
    static DOCKER: OnceLock<Option<Docker>> = OnceLock::new();
    DOCKER.get_or_init(find_docker).as_ref()
}

fn find_docker() -> Option<Docker> {
    let required = std::env::var("FANFOLD_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) => match host.strip_prefix("unix://") {
            Some(path) => PathBuf::from(path),
            // A TCP or TLS engine: use it as configured, with no version adapter.
            None => return Some(with_image(None)),
        },
        Err(_) => PathBuf::from("/var/run/docker.sock"),
    };
    let engine_api = match engine_api_version(&socket) {
        Ok(version) => version,
        Err(why) => {
            let message = format!("Docker unavailable ({}: {why})", socket.display());
            assert!(
                !required,
                "{message}, and FANFOLD_REQUIRE_DOCKER=1 requires it"
            );
            // Straight to stderr, past the test harness's capture, so a skip is visible.
            let _ = writeln!(
                std::io::stderr(),
                "skipping container tests: {message}; set FANFOLD_REQUIRE_DOCKER=1 to fail instead"
            );
            return None;
        }
    };
    let client_api = (
        API_DEFAULT_VERSION.major_version,
        API_DEFAULT_VERSION.minor_version,
    );
    let adapter = (engine_api < client_api).then(|| {
        let from = format!("{}.{}", client_api.0, client_api.1);
        let to = format!("{}.{}", engine_api.0, engine_api.1);
        start_api_adapter(socket, from, to)
    });
    Some(with_image(adapter))
}

fn with_image(adapter: Option<PathBuf>) -> Docker {
    if let Some(path) = adapter {
        // SAFETY: this runs inside the `OnceLock` that every container test enters before doing
        // anything else, so no other thread of this test binary reads the environment now.
        // testcontainers reads DOCKER_HOST when it first connects, which is after this.
        unsafe { std::env::set_var("DOCKER_HOST", format!("unix://{}", path.display())) };
    }
    let image = std::env::var("FANFOLD_IMAGE").unwrap_or_else(|_| "fanfold:dev".into());
    ensure_image(&image);
    Docker { image }
}

/// Builds the image with `deploy/build-image.sh` unless the tag exists. An existing tag is used
/// as is: run the script again to refresh a stale one (`.ci/run` always does).
fn ensure_image(image: &str) {
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/build-image.sh");
    let _ = writeln!(
        std::io::stderr(),
        "building image {image} with {}",
        script.display()
    );
    let status = std::process::Command::new(&script)
        .arg(image)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
}

/// The engine's API version, from `GET /version` on its socket (a version-less path, which
/// every engine answers).
fn engine_api_version(socket: &Path) -> Result<(usize, usize), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .ok_or("no HTTP response")?;
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("bad /version answer: {e}"))?;
    let version = json["ApiVersion"].as_str().ok_or("no ApiVersion")?;
    let (major, minor) = version.split_once('.').ok_or("bad ApiVersion")?;
    Ok((
        major.parse().map_err(|_| "bad ApiVersion")?,
        minor.parse().map_err(|_| "bad ApiVersion")?,
    ))
}

/// Starts a relay in front of an engine older than testcontainers' Docker client, which pins
/// its API version and does not negotiate: the relay rewrites the version in request lines
/// (`/v1.53/containers/...` to `/v1.41/containers/...`) and passes everything else through.
/// Returns the relay's socket path. Only the requests these tests make need to work.
fn start_api_adapter(engine: PathBuf, from: String, to: String) -> PathBuf {
    // In the temp dir (socket paths must be short); sockets of finished runs are removed here,
    // as nothing runs when a test binary exits.
    let dir = std::env::temp_dir();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("fanfold-docker-api-"))
            .and_then(|n| n.strip_suffix(".sock"));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let path = dir.join(format!("fanfold-docker-api-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .unwrap_or_else(|e| panic!("cannot bind {}: {e}", path.display()));
    listener.set_nonblocking(true).unwrap();
    let from = format!(" /v{from}/").into_bytes();
    let to = format!(" /v{to}/").into_bytes();
    // Its own thread and runtime: each test's runtime ends with the test, the relay must not.
    std::thread::Builder::new()
        .name("docker-api-adapter".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                loop {
                    if let Ok((client, _)) = listener.accept().await {
                        tokio::spawn(relay(client, engine.clone(), from.clone(), to.clone()));
                    }
                }
            });
        })
        .unwrap();
    path
}

async fn relay(client: tokio::net::UnixStream, engine: PathBuf, from: Vec<u8>, to: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(server) = tokio::net::UnixStream::connect(&engine).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let mut buf = vec![0; 64 << 10];
        let mut pending = Vec::new();
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                server_write.write_all(&pending).await?;
                return server_write.shutdown().await;
            }
            pending.extend_from_slice(&buf[..n]);
            let out = rewrite(&mut pending, &from, &to);
            server_write.write_all(&out).await?;
        }
    };
    let responses = async {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    let _: (std::io::Result<()>, std::io::Result<()>) = tokio::join!(requests, responses);
}

/// Replaces every `from` in `pending` with `to` and returns what can be sent; keeps back only a
/// tail that may be the start of a `from` split across reads.
fn rewrite(pending: &mut Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pending.len());
    let mut i = 0;
    while i < pending.len() {
        let rest = &pending[i..];
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else if from.starts_with(rest) {
            break;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    pending.drain(..i);
    out
}

/// A fanfold cluster in containers on its own network: one coordinator with a named volume for
/// its state directory, any number of workers. Dropping it removes every container, the network
/// and the volume; if the test is failing, it first prints every container's logs.
/// Use it from a multi-thread runtime (testcontainers and the log printing block in `Drop`).
pub struct Cluster {
    test: String,
    network: String,
    image: String,
    state_volume: String,
    /// The coordinator's gRPC address on the host, for `submit-job`.
    pub address: String,
    /// Always `Some` until the cluster is dropped.
    coordinator: Option<ContainerAsync<GenericImage>>,
    workers: Vec<(String, ContainerAsync<GenericImage>)>,
    /// The host folder the coordinator sees at `/data`.
    data: PathBuf,
    /// Tokens: the workers' and an admin's, which `submit-job` presents.
    worker_token: String,
    admin_token: String,
    /// With TLS: the host folder with `ca.pem`, `cert.pem` and `key.pem`, mounted at `/tls`.
    tls: Option<PathBuf>,
}

/// How a worker container is started.
#[derive(Clone, Copy)]
pub struct WorkerSpec {
    /// CPU share of the container, in thousandths of a core: keeps jobs long enough to break.
    pub millicores: i64,
    /// Log every mapped chunk (debug level).
    pub debug_log: bool,
    /// Started with `FANFOLD_SHARED_STORAGE=true`: it reads its chunks by reference.
    pub shared_storage: bool,
    /// Sees the coordinator's `/data` at `/data` (read-only), as a shared volume.
    pub mount_data: bool,
}

impl Cluster {
    /// Starts a coordinator that sees `data` (a host folder) read-only at `/data`, with
    /// tokens (one for the workers, an admin's for `submit-job`) and `/data` its data root.
    pub async fn start(docker: &Docker, test: &str, data: &Path) -> Cluster {
        Cluster::start_with(docker, test, data, None).await
    }

    /// Starts a cluster like [`Cluster::start`] whose coordinator serves TLS, with a
    /// certificate for its name on the network and for 127.0.0.1; `tls` is a host folder for
    /// the PEM files.
    pub async fn start_tls(docker: &Docker, test: &str, data: &Path, tls: &Path) -> Cluster {
        Cluster::start_with(docker, test, data, Some(tls)).await
    }

    async fn start_with(docker: &Docker, test: &str, data: &Path, tls: Option<&Path>) -> Cluster {
        let network = format!("fanfold-test-{test}-{}", std::process::id());
        let name = format!("{network}-coordinator");
        let state_volume = format!("{network}-state");
        let (repository, tag) = docker.image.rsplit_once(':').expect("image has a tag");
        let (worker_token, worker_line) = support::auth::new_token("fleet", "worker").await;
        let (admin_token, admin_line) = support::auth::new_token("tests", "admin").await;
        let mut coordinator = GenericImage::new(repository, tag)
            .with_exposed_port(GRPC_PORT.tcp())
            .with_wait_for(WaitFor::message_on_stdout("coordinator listening"))
            .with_cmd(["coordinator"])
            .with_network(&network)
            .with_container_name(&name)
            // Reached by workers on the test network, each presenting a token.
            .with_env_var("FANFOLD_LISTEN", "0.0.0.0:7077")
            .with_env_var(
                "FANFOLD_AUTH_TOKEN_LINES",
                format!("{worker_line};{admin_line}"),
            )
            .with_env_var("FANFOLD_DATA_ROOTS", "/data")
            .with_env_var("FANFOLD_WORKER_TIMEOUT", WORKER_TIMEOUT)
            // Attempts then count only what the tests break: no straggler backups.
            .with_env_var("FANFOLD_NO_BACKUPS", "true")
            .with_env_var("RUST_LOG", "info")
            .with_env_var("FANFOLD_STATE_DIR", STATE_DIR)
            .with_mount(Mount::volume_mount(&state_volume, STATE_DIR))
            .with_mount(
                Mount::bind_mount(data.to_str().unwrap(), "/data")
                    .with_access_mode(AccessMode::ReadOnly),
            )
            // Locked down as on Kubernetes: only the volumes are writable, no capabilities.
            .with_readonly_rootfs(true)
            .with_cap_drop("ALL")
            .with_startup_timeout(Duration::from_secs(60));
        if let Some(dir) = tls {
            let (ca, cert, key) = support::auth::certificates(&[&name, "127.0.0.1"]);
            std::fs::create_dir_all(dir).unwrap();
            for (file, pem) in [("ca.pem", ca), ("cert.pem", cert), ("key.pem", key)] {
                std::fs::write(dir.join(file), pem).unwrap();
                // The container runs as an unprivileged user (a test key, readable).
                std::fs::set_permissions(
                    dir.join(file),
                    std::os::unix::fs::PermissionsExt::from_mode(0o644),
                )
                .unwrap();
            }
            coordinator = coordinator
                .with_mount(
                    Mount::bind_mount(dir.to_str().unwrap(), "/tls")
                        .with_access_mode(AccessMode::ReadOnly),
                )
                .with_env_var("FANFOLD_TLS_CERT", "/tls/cert.pem")
                .with_env_var("FANFOLD_TLS_KEY", "/tls/key.pem");
        }
        let coordinator = coordinator
            .start()
            .await
            .unwrap_or_else(|e| panic!("cannot start the coordinator container {name}: {e}"));
        let mut cluster = Cluster {
            test: test.to_owned(),
            image: docker.image.clone(),
            address: String::new(),
            network,
            state_volume,
            data: data.to_owned(),
            coordinator: Some(coordinator),
            workers: Vec::new(),
            worker_token,
            admin_token,
            tls: tls.map(Path::to_path_buf),
        };
        cluster.address = cluster.published_address().await;
        cluster
    }

    fn coordinator(&self) -> &ContainerAsync<GenericImage> {
        self.coordinator.as_ref().expect("coordinator is running")
    }

    async fn published_address(&self) -> String {
        let port = self
            .coordinator()
            .get_host_port_ipv4(GRPC_PORT.tcp())
            .await
            .expect("coordinator port is published");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// Stops the coordinator container and starts it again: same container, same volume, same
    /// name on the network. `grace` is how long it gets after SIGTERM before SIGKILL (0: killed
    /// at once). Returns once it listens again.
    pub async fn restart_coordinator(&mut self, grace: Duration) {
        let coordinator = self.coordinator();
        let starts = |out: &[u8]| {
            String::from_utf8_lossy(out)
                .matches("coordinator listening")
                .count()
        };
        let before = starts(&coordinator.stdout_to_vec().await.unwrap());
        let grace = i32::try_from(grace.as_secs()).unwrap();
        coordinator.stop_with_timeout(Some(grace)).await.unwrap();
        coordinator.start().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while starts(&coordinator.stdout_to_vec().await.unwrap()) <= before {
            assert!(
                Instant::now() < deadline,
                "[{}] the coordinator did not listen again after a restart",
                self.test
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The host port is assigned again at start.
        self.address = self.published_address().await;
    }

    /// Starts a worker container (1 slot) and waits until it has attached; returns its name,
    /// which is also its name in the coordinator's logs.
    pub async fn add_worker(&mut self, spec: WorkerSpec) -> String {
        let name = format!("{}-worker-{}", self.network, self.workers.len() + 1);
        let (repository, tag) = self.image.rsplit_once(':').unwrap();
        let nano_cpus = spec.millicores * 1_000_000;
        let log = if spec.debug_log {
            "info,fanfold_worker=debug"
        } else {
            "info"
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut worker = GenericImage::new(repository, tag)
            .with_wait_for(WaitFor::message_on_stderr("attached to coordinator"))
            .with_cmd(["worker"])
            .with_network(&self.network)
            .with_container_name(&name)
            .with_env_var(
                "FANFOLD_COORDINATOR",
                format!("{scheme}://{}-coordinator:{GRPC_PORT}", self.network),
            )
            .with_env_var("FANFOLD_TOKEN", &self.worker_token)
            .with_env_var("FANFOLD_WORKER_NAME", &name)
            .with_env_var("FANFOLD_SLOTS", "1")
            .with_env_var("FANFOLD_HEARTBEAT", "500ms")
            .with_env_var("FANFOLD_SHARED_STORAGE", spec.shared_storage.to_string())
            .with_env_var("RUST_LOG", log)
            .with_host_config_modifier(move |config: &mut HostConfig| {
                config.nano_cpus = Some(nano_cpus);
            })
            .with_readonly_rootfs(true)
            .with_cap_drop("ALL")
            .with_startup_timeout(Duration::from_secs(60));
        if let Some(dir) = &self.tls {
            worker = worker
                .with_mount(
                    Mount::bind_mount(dir.to_str().unwrap(), "/tls")
                        .with_access_mode(AccessMode::ReadOnly),
                )
                .with_env_var("FANFOLD_TLS_CA", "/tls/ca.pem");
        }
        if spec.mount_data {
            worker = worker.with_mount(
                Mount::bind_mount(self.data.to_str().unwrap(), "/data")
                    .with_access_mode(AccessMode::ReadOnly),
            );
        }
        let worker = worker
            .start()
            .await
            .unwrap_or_else(|e| panic!("cannot start the worker container {name}: {e}"));
        self.workers.push((name.clone(), worker));
        name
    }

    /// The worker container called `name`.
    pub fn worker(&self, name: &str) -> &ContainerAsync<GenericImage> {
        self.workers
            .iter()
            .find_map(|(n, c)| (n == name).then_some(c))
            .unwrap_or_else(|| panic!("no worker {name}"))
    }

    /// The coordinator's log (stderr) so far.
    pub async fn coordinator_log(&self) -> String {
        log_text(self.coordinator()).await
    }

    /// The log (stderr) so far of the worker called `name`.
    pub async fn worker_log(&self, name: &str) -> String {
        log_text(self.worker(name)).await
    }

    /// Runs `submit-job` against the coordinator.
    /// Runs `submit-job` against the coordinator as the admin (over TLS if it serves it).
    pub async fn submit_job(&self, args: &[&str]) -> std::process::Output {
        let mut command = tokio::process::Command::new(support::SUBMIT_JOB);
        command
            .args(["--coordinator", &self.address])
            .args(args)
            .env("FANFOLD_TOKEN", &self.admin_token)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = &self.tls {
            command.env("FANFOLD_TLS_CA", dir.join("ca.pem"));
        }
        tokio::time::timeout(support::COMMAND_TIMEOUT, command.output())
            .await
            .expect("submit-job finished in time")
            .expect("run submit-job")
    }

    /// `status --json` of `job`, parsed; `None` if the coordinator does not answer.
    pub async fn job_status(&self, job: &str) -> Option<support::Status> {
        let out = self.submit_job(&["status", job, "--json"]).await;
        (!out.stdout.is_empty()).then(|| support::parse_json(&out))
    }

    /// Polls `status --json` until `ready` holds for the job's status, or fails after `limit`.
    pub async fn wait_for_status(
        &self,
        job: &str,
        limit: Duration,
        what: &str,
        ready: impl Fn(&support::Status) -> bool,
    ) -> support::Status {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.submit_job(&["status", job, "--json"]).await;
            let status: support::Status = support::parse_json(&out);
            if ready(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] waited {limit:?} for {what}; last status:\n{status:?}{}",
                self.test,
                support::stderr(&out)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the coordinator's log until it has a line with every one of `needles`.
    pub async fn wait_for_coordinator_line(&self, needles: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.coordinator_log().await;
            if let Some(line) = log
                .lines()
                .find(|line| needles.iter().all(|n| line.contains(n)))
            {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "[{}] no coordinator log line with {needles:?} after {limit:?}",
                self.test
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the coordinator's log shows the worker called `name` attached `times` times
    /// (the log spans restarts of the coordinator container).
    pub async fn wait_until_attached(&self, name: &str, times: usize, limit: Duration) {
        let field = format!("name={name} ");
        let deadline = Instant::now() + limit;
        loop {
            let log = self.coordinator_log().await;
            let attached = log
                .lines()
                .filter(|l| l.contains("worker attached") && l.contains(&field))
                .count();
            if attached >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] worker {name} attached {attached} times, not {times}, after {limit:?}",
                self.test
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn print_logs(&self) {
        let mut report = String::new();
        let containers = self
            .coordinator
            .iter()
            .map(|c| ("coordinator", c))
            .chain(self.workers.iter().map(|(n, c)| (n.as_str(), c)));
        for (name, container) in containers {
            let out = container.stdout_to_vec().await.unwrap_or_default();
            let err = log_text(container).await;
            let lines: Vec<&str> = err.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            report.push_str(&format!(
                "===== [{}] {name}: stdout\n{}===== stderr (last {} of {} lines)\n{}\n",
                self.test,
                String::from_utf8_lossy(&out),
                tail.len(),
                lines.len(),
                tail.join("\n")
            ));
        }
        let _ = std::io::stderr().write_all(report.as_bytes());
    }
}

async fn log_text(container: &ContainerAsync<GenericImage>) -> String {
    let bytes = container.stderr_to_vec().await.unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let handle = tokio::runtime::Handle::current();
            tokio::task::block_in_place(|| handle.block_on(self.print_logs()));
        }
        // Containers first (testcontainers removes them on drop), then the named volume, which
        // Docker keeps when a container is removed.
        self.workers.clear();
        self.coordinator.take();
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "--force", &self.state_volume])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn the_api_adapter_rewrites_versions_split_across_reads() {
        let (from, to) = (b" /v1.53/".as_slice(), b" /v1.41/".as_slice());
        let request = b"GET /v1.53/containers/json HTTP/1.1\r\n\r\nPOST /v1.53/x HTTP/1.1\r\n\r\n";
        for split in 0..request.len() {
            let mut pending = request[..split].to_vec();
            let mut sent = rewrite(&mut pending, from, to);
            pending.extend_from_slice(&request[split..]);
            sent.extend(rewrite(&mut pending, from, to));
            assert!(pending.is_empty(), "nothing held back at a request's end");
            assert_eq!(
                sent,
                b"GET /v1.41/containers/json HTTP/1.1\r\n\r\nPOST /v1.41/x HTTP/1.1\r\n\r\n"
            );
        }
    }
}
