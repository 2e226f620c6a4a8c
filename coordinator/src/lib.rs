//! The fanfold coordinator: takes jobs, plans record-aligned chunks, fans them out to attached
//! workers with credit-based flow control, folds their partial results exactly once, and keeps
//! finished results for clients to fetch.
//!
//! [`run`] serves JobService, FleetService and the gRPC health service on its gRPC listener,
//! and the status pages, JSON API and metrics on its HTTP listener (if given), until
//! `shutdown` is cancelled. The `coordinator` binary and the tests call the same function.

mod api;
pub mod auth;
mod fleet;
mod intake;
mod job;
mod metrics;
mod output;
mod parts;
mod reader;
mod scheduler;
mod store;
mod web;
mod worker_files;

use std::path::PathBuf;
use std::time::Duration;

use fanfold_common::registry::Registry;
use fanfold_common::roots::Roots;
use fanfold_proto::v1::fleet_service_server::FleetServiceServer;
use fanfold_proto::v1::job_service_server::JobServiceServer;
use fanfold_proto::{MAX_MESSAGE_BYTES, transport};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tracing::info;

pub use job::BackupPolicy;
pub use scheduler::{Limits, Retention, Scheduling};
pub use store::StoreError;

/// Coordinator settings, validated by the binary (or a test) before [`run`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Chunk size for jobs that do not ask for one.
    pub default_chunk_size: u64,
    /// How workers and chunks are scheduled.
    pub scheduling: Scheduling,
    /// Where jobs, checkpoints and results are kept; `None` keeps them in memory only.
    pub state_dir: Option<PathBuf>,
    /// Operations jobs may name.
    pub registry: Registry,
    /// The HTTP port's URL as clients reach it (`http://host:port`), for the page URLs in
    /// statuses; `None` names the bound address.
    pub http_advertise: Option<String>,
    /// Dotted host names the HTTP port answers to besides IP addresses, `localhost` and
    /// single-label names (a proxy's or ingress's name); others are refused (DNS rebinding).
    pub http_allowed_hosts: Vec<String>,
    /// Who may call: the tokens file's principals, or everyone as admin.
    pub access: auth::Access,
    /// Directories inputs must lie beneath (none: anywhere).
    pub data_roots: Roots,
    /// Directories output directories must lie beneath (none: anywhere).
    pub output_roots: Roots,
    /// Most input files per job.
    pub max_inputs: usize,
    /// The gRPC port's certificate and key, if it serves TLS.
    pub tls: Option<transport::ServerTls>,
    /// Jobs that may be running or queued.
    pub limits: Limits,
    /// How long finished jobs and their results are kept.
    pub retention: Retention,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_chunk_size: fanfold_common::spec::DEFAULT_CHUNK_SIZE,
            scheduling: Scheduling::default(),
            state_dir: None,
            registry: Registry::builtin(),
            http_advertise: None,
            http_allowed_hosts: Vec::new(),
            access: auth::Access::Open,
            data_roots: Roots::default(),
            output_roots: Roots::default(),
            max_inputs: intake::DEFAULT_MAX_INPUTS,
            tls: None,
            limits: Limits::default(),
            retention: Retention::default(),
        }
    }
}

/// Submissions planned at once (planning reads the filesystem on the blocking pool).
const PLANNED_AT_ONCE: usize = 4;

/// Largest request a client may send (a job spec is small); the fleet stream, which carries
/// chunks, takes [`MAX_MESSAGE_BYTES`].
const MAX_CLIENT_REQUEST_BYTES: usize = 4 << 20;

/// Why the coordinator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

/// The sockets a coordinator serves on, bound by the caller (port 0 in tests).
pub struct Listeners {
    /// JobService, FleetService and the gRPC health service.
    pub grpc: TcpListener,
    /// The status pages, the JSON API, `/metrics`, `/healthz` and `/readyz`; none without.
    pub http: Option<TcpListener>,
}

impl Listeners {
    /// Binds the gRPC listener to `address`, and the HTTP listener to `http` if given.
    pub async fn bind(address: &str, http: Option<&str>) -> std::io::Result<Listeners> {
        Ok(Listeners {
            grpc: TcpListener::bind(address).await?,
            http: match http {
                Some(http) => Some(TcpListener::bind(http).await?),
                None => None,
            },
        })
    }
}

/// Serves on `listeners` until `shutdown` is cancelled, then stops every task it started.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // Without a state directory nothing is kept: no journal, no checkpoints.
    let (store, restored) = match &config.state_dir {
        Some(dir) => {
            let store = store::Store::open(dir)?;
            let loading = store.clone();
            let restored = tokio::task::spawn_blocking(move || loading.load())
                .await
                .map_err(|e| StoreError::Database(e.to_string()))??;
            (Some(store), restored)
        }
        None => (None, Vec::new()),
    };
    if !restored.is_empty() {
        info!(
            jobs = restored.len(),
            "restored jobs from the state directory"
        );
    }
    // Part files of partitioned jobs: kept with the state when there is a state directory,
    // else this process's own, gone with it.
    let parts_dir = match &config.state_dir {
        Some(dir) => dir.join("parts"),
        None => std::env::temp_dir().join(format!("fanfold-parts-{}", std::process::id())),
    };
    let tasks = TaskTracker::new();
    let metrics = metrics::Metrics::new();
    let page_base = match (&listeners.http, &config.http_advertise) {
        (Some(_), Some(advertised)) => Some(advertised.trim_end_matches('/').to_owned()),
        (Some(http), None) => Some(web::base_url(http.local_addr().map_err(Error::Http)?)),
        (None, _) => None,
    };
    let scheduler = scheduler::spawn(
        scheduler::SchedulerConfig {
            scheduling: config.scheduling.clone(),
            tick: Duration::from_millis(250),
            quarantine_dir: match &config.state_dir {
                Some(dir) => dir.join("quarantine"),
                None => std::env::temp_dir().join("fanfold-quarantine"),
            },
            parts_dir: parts_dir.clone(),
            metrics: metrics.clone(),
            data_roots: config.data_roots.clone(),
            output_roots: config.output_roots.clone(),
            limits: config.limits,
            retention: config.retention,
        },
        store,
        restored,
        &config.registry,
        &tasks,
        shutdown.child_token(),
    );
    let listings = std::sync::Arc::new(worker_files::Listings::default());
    let api = api::Api {
        scheduler: scheduler.clone(),
        workers: worker_files::WorkerFiles {
            scheduler: scheduler.clone(),
            listings: listings.clone(),
        },
        metrics: metrics.clone(),
        page_base: page_base.as_deref().map(Into::into),
        planning: std::sync::Arc::new(tokio::sync::Semaphore::new(PLANNED_AT_ONCE)),
        tokens_required: config.access.required(),
        intake: intake::Rules {
            registry: config.registry,
            default_chunk_size: config.default_chunk_size,
            data_roots: config.data_roots.clone(),
            output_roots: config.output_roots.clone(),
            max_inputs: config.max_inputs,
            state_dir: config.state_dir.clone(),
        },
        tasks: tasks.clone(),
        shutdown: shutdown.clone(),
    };
    let fleet = fleet::Fleet {
        scheduler: scheduler.clone(),
        listings,
        metrics: metrics.clone(),
        parts_dir: parts_dir.clone(),
        prefetch: config.scheduling.prefetch,
        hello_timeout: config.scheduling.worker_timeout,
        data_roots: config.data_roots.clone(),
        require_worker_cert: config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca_pem.is_some()),
        shuffle_token: auth::shuffle_token().into(),
        tasks: tasks.clone(),
        shutdown: shutdown.clone(),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<JobServiceServer<api::Api>>().await;
    health
        .set_serving::<FleetServiceServer<fleet::Fleet>>()
        .await;

    if let Ok(addr) = listeners.grpc.local_addr() {
        info!(%addr, "coordinator listening");
    }
    let http = listeners.http.map(|listener| {
        let base = page_base.clone().unwrap_or_default();
        let mut allowed_hosts = config.http_allowed_hosts.clone();
        if let Some(advertised) = &config.http_advertise {
            let authority = advertised
                .split_once("://")
                .map_or(advertised.as_str(), |(_, rest)| rest);
            let authority = authority.split('/').next().unwrap_or_default();
            let name = authority
                .rsplit_once(':')
                .map_or(authority, |(name, _)| name);
            allowed_hosts.push(name.to_owned());
        }
        info!(url = %base, "status pages and metrics served");
        tokio::spawn(web::serve(
            listener,
            web::Web {
                scheduler,
                metrics,
                base: base.into(),
                allowed_hosts: allowed_hosts.into(),
                access: config.access.clone(),
                shutdown: shutdown.clone(),
            },
        ))
    });
    let authenticate = auth::Interceptor(config.access.clone());
    let served = transport::server(config.tls.as_ref())?
        .add_service(health_service)
        .add_service(InterceptedService::new(
            JobServiceServer::new(api)
                .max_decoding_message_size(MAX_CLIENT_REQUEST_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            authenticate.clone(),
        ))
        .add_service(InterceptedService::new(
            FleetServiceServer::new(fleet)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            authenticate,
        ))
        .serve_with_incoming_shutdown(transport::incoming(listeners.grpc), shutdown.cancelled())
        .await;
    // The HTTP port stops with the same token; wait for it before the scheduler's tasks.
    let http_served = match http {
        Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        None => Ok(()),
    };
    tasks.close();
    tasks.wait().await;
    if config.state_dir.is_none() {
        let _ = std::fs::remove_dir_all(&parts_dir);
    }
    info!("coordinator stopped");
    served?;
    http_served.map_err(Error::Http)
}
