//! The worker's Prometheus metrics, served on `--metrics-listen` when it is given: slots and
//! how many are busy, chunks mapped, map time, bytes read, reduce tasks and resident memory.
//! An explicit registry (no global recorder), names prefixed `fanfold_worker_`.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub busy: Gauge,
    pub chunks_mapped: Counter,
    pub map_seconds: Histogram,
    pub bytes_read: Counter,
    pub reduce_tasks: Counter,
    pub reduce_spilled_bytes: Counter,
    resident: Gauge,
}

impl Metrics {
    pub fn new(slots: u32) -> Self {
        let mut registry = Registry::with_prefix("fanfold_worker");
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let slots_gauge = gauge(&mut registry, "slots", "Chunks this worker maps at once");
        slots_gauge.set(i64::from(slots));
        let busy = gauge(
            &mut registry,
            "slots_busy",
            "Slots running a map or reduce task now",
        );
        let chunks_mapped = counter(&mut registry, "chunks_mapped", "Chunks mapped to a result");
        let map_seconds = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        registry.register(
            "map_seconds",
            "Time to read, decompress and map one chunk",
            map_seconds.clone(),
        );
        let bytes_read = counter(&mut registry, "bytes_read", "Input bytes of chunks mapped");
        let reduce_tasks = counter(&mut registry, "reduce_tasks", "Reduce tasks finished");
        let reduce_spilled_bytes = counter(
            &mut registry,
            "reduce_spilled_bytes",
            "Bytes of sorted runs reduce tasks wrote to disk beyond their memory",
        );
        let resident = gauge(
            &mut registry,
            "resident_bytes",
            "Resident memory of this process",
        );
        Metrics {
            registry: Arc::new(registry),
            busy,
            chunks_mapped,
            map_seconds,
            bytes_read,
            reduce_tasks,
            reduce_spilled_bytes,
            resident,
        }
    }

    /// The OpenMetrics text, with resident memory read now.
    pub fn render(&self) -> String {
        self.resident.set(resident_bytes().unwrap_or(0) as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Resident memory from `/proc/self/statm` (its second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "metrics port stopped");
    }
}
