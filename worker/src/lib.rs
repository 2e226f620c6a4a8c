//! The fanfold worker: dials the coordinator, advertises its slots, maps assigned chunks on a
//! bounded CPU pool off the async runtime, and reports each chunk's partial result.
//!
//! [`run`] keeps one attachment alive until `shutdown` is cancelled: it retries with capped
//! exponential backoff while the coordinator is unreachable and reattaches after a disconnect.
//!
//! The rooms: `attachment` (the Attach stream and the wire, hello and welcome, chunk pieces,
//! heartbeats: the only file that speaks `fanfold_proto`), `executor` (slots, queue, drain,
//! what is in flight), `task` (one assignment to its report: read, decompress, map or isolate
//! bad records, catch a panic; a partitioned job's map keeps its output), `reduce` (one reduce
//! task: fetch, merge, finalize, send the part), `spill` (the map outputs kept on disk),
//! `shuffle` (the ShuffleService this worker serves and the fetch from another's: with the
//! attachment, the only files that speak the wire), `stops` (cancelled jobs and attempts) and
//! `jobs` (what a job's chunks share on this worker, built once per job), `local` (listing and
//! cutting the worker's own files for `worker://` inputs). Heartbeats go out on
//! their own task, so CPU work never delays them.

mod attachment;
mod executor;
mod jobs;
mod local;
mod metrics;
mod reduce;
mod runs;
mod shuffle;
mod spill;
mod stops;
mod task;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use fanfold_common::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Worker settings, validated by the binary (or a test) before [`run`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Coordinator URL, e.g. `http://10.0.0.5:7077`.
    pub coordinator: String,
    /// Name shown in the coordinator's logs.
    pub name: String,
    /// Chunks mapped at once.
    pub slots: u32,
    /// Interval between heartbeats; the coordinator's worker timeout must be several of these.
    pub heartbeat: Duration,
    /// Longest wait between attempts to reach the coordinator.
    pub max_backoff: Duration,
    /// On shutdown, how long running chunks may take to finish before the worker detaches.
    pub drain_timeout: Duration,
    /// Operations this worker can run.
    pub registry: Registry,
    /// The worker reads input paths as the coordinator names them (the same machine, or a
    /// shared volume mounted at the same path), so chunks come as references, not bytes.
    pub shared_storage: bool,
    /// Where the ShuffleService listens (reducers fetch this worker's map outputs there).
    pub shuffle_listen: SocketAddr,
    /// The `host:port` other workers reach it at; the bound address by default.
    pub shuffle_advertise: Option<String>,
    /// Under which the worker keeps partitioned jobs' map outputs.
    pub spill_dir: PathBuf,
    /// The memory its tasks may hold (`--memory`): a reduce task spills sorted runs to the
    /// spill directory beyond its share.
    pub memory: u64,
    /// The directories whose files it offers as `worker://NAME/PATH` inputs; `None`: none.
    pub local_roots: Option<fanfold_common::roots::Roots>,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The token presented to the coordinator, and TLS for an `https://` coordinator.
    pub security: fanfold_proto::transport::ClientSecurity,
}

/// The shuffle as a worker's slots see it: where map outputs are kept, and the address
/// reducers fetch them from.
pub struct Shuffle {
    pub spill: Arc<spill::Spill>,
    pub address: String,
    pub fetcher: Arc<shuffle::Fetcher>,
    /// The token of the coordinator's latest welcome: presented to other workers' shuffle
    /// services and required of their fetches here.
    pub token: shuffle::Key,
    /// Bytes of fetched map output a reduce task holds before it spills them to a sorted run.
    pub reduce_memory: u64,
}

/// The least a reduce task holds before it spills.
const MIN_REDUCE_MEMORY: u64 = 64 << 10;

/// Memory a reduce task takes per byte of fetched map output it holds: the decoded segments,
/// then the merge's items and its rows (a key and a value each), about eight times the
/// encoded bytes for short keys (measured on a distinct over 20 M keys, bench/NOTES.md).
const REDUCE_EXPANSION: u64 = 8;

impl Shuffle {
    fn set_token(&self, token: fanfold_proto::transport::Token) {
        self.token.set(token);
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for shuffle fetches on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Config {
    pub fn new(coordinator: impl Into<String>, name: impl Into<String>, slots: u32) -> Self {
        Config {
            coordinator: coordinator.into(),
            name: name.into(),
            slots,
            heartbeat: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            registry: Registry::builtin(),
            shared_storage: false,
            shuffle_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shuffle_advertise: None,
            spill_dir: std::env::temp_dir(),
            memory: 1 << 30,
            local_roots: None,
            metrics_listen: None,
            security: Default::default(),
        }
    }
}

/// Attaches to the coordinator and works until `shutdown` is cancelled, then drains: it takes
/// no more chunks, hands back queued ones, and finishes running ones within the drain timeout.
/// Serves its map outputs on the shuffle address meanwhile; fails at once if it cannot.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let spill = Arc::new(spill::Spill::open(&config.spill_dir));
    let listen = |source| StartError::Listen {
        address: config.shuffle_listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.shuffle_listen)
        .await
        .map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    let address = match &config.shuffle_advertise {
        Some(address) => address.clone(),
        None if bound.ip().is_unspecified() => {
            // Listening everywhere: the address other machines see is the one this machine
            // reaches the coordinator from.
            let ip = route_to(&config.coordinator).await.unwrap_or(bound.ip());
            SocketAddr::new(ip, bound.port()).to_string()
        }
        None => bound.to_string(),
    };
    let key = shuffle::Key::default();
    let shuffle = Shuffle {
        spill: Arc::clone(&spill),
        address,
        fetcher: Arc::new(shuffle::Fetcher::new(key.clone())),
        token: key.clone(),
        // Half the budget for the slots' maps, half for their reduce tasks.
        reduce_memory: (config.memory / (2 * u64::from(config.slots.max(1))) / REDUCE_EXPANSION)
            .max(MIN_REDUCE_MEMORY),
    };
    info!(shuffle = %shuffle.address, spill_dir = %spill.root().display(), "serving map outputs");
    let serving = shuffle::serve(listener, Arc::clone(&spill), key, shutdown.child_token());
    let serving = tokio::spawn(serving);
    let metrics = metrics::Metrics::new(config.slots);
    let metrics_serving = match config.metrics_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Metrics { address, source })?;
            let bound = listener.local_addr().unwrap_or(address);
            info!(%bound, "serving metrics");
            Some(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                shutdown.child_token(),
            )))
        }
        None => None,
    };
    let first_backoff = Duration::from_millis(100);
    let mut backoff = first_backoff;
    // Job contexts outlive an attachment: a coordinator that comes back resumes its jobs.
    let jobs = Arc::new(jobs::Jobs::new(
        config.registry.clone(),
        config.local_roots.clone(),
    ));
    while !shutdown.is_cancelled() {
        match attachment::attach(&config, &jobs, &shuffle, &metrics, &shutdown).await {
            Ok(attachment::End::Shutdown) => break,
            Ok(attachment::End::Detached { worked }) => {
                info!(coordinator = %config.coordinator, "detached from coordinator; reattaching");
                if worked {
                    backoff = first_backoff;
                }
            }
            Err(e) => {
                let error = fanfold_common::error_chain(&e);
                warn!(coordinator = %config.coordinator, %error, retry_in = ?backoff,
                    "cannot attach to coordinator");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
    let _ = serving.await;
    if let Some(metrics_serving) = metrics_serving {
        let _ = metrics_serving.await;
    }
    drop(shuffle);
    info!("worker stopped");
    Ok(())
}

/// This machine's address on the route to `coordinator` (a URL): a UDP socket "connected" to
/// it sends nothing but learns the local address the kernel would use.
async fn route_to(coordinator: &str) -> Option<std::net::IpAddr> {
    let host = coordinator
        .split_once("://")
        .map_or(coordinator, |(_, rest)| rest)
        .trim_end_matches('/');
    let target = tokio::net::lookup_host(host).await.ok()?.next()?;
    let local = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = tokio::net::UdpSocket::bind(local).await.ok()?;
    socket.connect(target).await.ok()?;
    Some(socket.local_addr().ok()?.ip())
}
