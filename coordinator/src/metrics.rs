//! The coordinator's Prometheus metrics: an explicit registry (no global recorder), names
//! prefixed `fanfold_`, no per-job labels. Counters and histograms are updated where things
//! happen (the scheduler, the journal, the gRPC adapters); gauges that describe the present
//! (jobs, chunks and workers by state, slots, the queue) are set from one scheduler snapshot
//! when `/metrics` is scraped.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

/// The present state, as one scheduler snapshot gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Jobs by state (`running`, `succeeded`, `failed`, `cancelled`).
    pub jobs: Vec<(&'static str, i64)>,
    /// Chunks of running jobs by state (`pending`, `running`, `done`).
    pub chunks: Vec<(&'static str, i64)>,
    pub workers_attached: i64,
    pub workers_draining: i64,
    pub slots: i64,
    /// Tasks waiting for a worker, over running jobs.
    pub queue_depth: i64,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub jobs_submitted: Counter,
    pub jobs_refused: Counter,
    pub jobs_expired: Counter,
    pub attempts: Counter,
    pub retries: Counter,
    pub failures: Counter,
    pub backups: Counter,
    pub bytes_mapped: Counter,
    pub chunk_bytes_sent: Counter,
    pub records_mapped: Counter,
    pub bytes_folded: Counter,
    pub records_folded: Counter,
    pub result_rows: Counter,
    pub map_seconds: Histogram,
    pub fold_seconds: Histogram,
    pub journal_commit_seconds: Histogram,
    pub grpc_requests: Family<GrpcLabels, Counter>,
    jobs: Family<StateLabel, Gauge>,
    chunks: Family<StateLabel, Gauge>,
    workers: Family<StateLabel, Gauge>,
    slots: Gauge,
    queue_depth: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fanfold");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let jobs_submitted = counter(&mut registry, "jobs_submitted", "Jobs accepted");
        let jobs_refused = counter(
            &mut registry,
            "jobs_refused",
            "Submissions refused over the limits on jobs not yet ended",
        );
        let jobs_expired = counter(
            &mut registry,
            "jobs_expired",
            "Finished jobs removed by retention, with their results",
        );
        let attempts = counter(
            &mut registry,
            "chunk_attempts",
            "Chunk attempts handed to workers, retries and backups included",
        );
        let retries = counter(
            &mut registry,
            "chunk_retries",
            "Failed chunk attempts put back in the queue for another attempt",
        );
        let failures = counter(
            &mut registry,
            "chunk_failures",
            "Chunk and reduce attempts that failed",
        );
        let backups = counter(
            &mut registry,
            "chunk_backups",
            "Backup attempts started for straggling chunks",
        );
        let bytes_mapped = counter(
            &mut registry,
            "bytes_mapped",
            "Input bytes of chunk attempts that reported a result, stale or duplicate ones included",
        );
        let chunk_bytes_sent = counter(
            &mut registry,
            "chunk_bytes_sent",
            "Input bytes the coordinator read and sent to workers inline (a worker on shared or \
             object storage reads its chunks itself)",
        );
        let records_mapped = counter(
            &mut registry,
            "records_mapped",
            "Records read by chunk attempts that reported a result",
        );
        let bytes_folded = counter(
            &mut registry,
            "bytes_folded",
            "Input bytes of folded chunk results (a chunk mapped again after its map output was lost counts again)",
        );
        let records_folded = counter(
            &mut registry,
            "records_folded",
            "Records of folded chunk results (a chunk mapped again after its map output was lost counts again)",
        );
        let result_rows = counter(&mut registry, "result_rows", "Rows of finalized results");
        let histogram = |registry: &mut Registry, name: &str, help: &str, start: f64| {
            let h = Histogram::new(exponential_buckets(start, 4.0, 10));
            registry.register(name, help, h.clone());
            h
        };
        let map_seconds = histogram(
            &mut registry,
            "chunk_map_seconds",
            "Time from handing a chunk to a worker to its result, as the coordinator sees it",
            0.001,
        );
        let fold_seconds = histogram(
            &mut registry,
            "chunk_fold_seconds",
            "Time the scheduler took to fold one chunk's result",
            0.000_01,
        );
        let journal_commit_seconds = histogram(
            &mut registry,
            "journal_commit_seconds",
            "Time one journal commit to the state directory took",
            0.0001,
        );
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC requests answered, by method and status code",
            grpc_requests.clone(),
        );
        let jobs = Family::<StateLabel, Gauge>::default();
        registry.register("jobs", "Jobs the coordinator keeps, by state", jobs.clone());
        let chunks = Family::<StateLabel, Gauge>::default();
        registry.register("chunks", "Chunks of running jobs, by state", chunks.clone());
        let workers = Family::<StateLabel, Gauge>::default();
        registry.register(
            "workers",
            "Workers attached (state=attached) and, of them, draining (state=draining)",
            workers.clone(),
        );
        let slots = Gauge::default();
        registry.register(
            "slots",
            "Slots of the attached workers, summed",
            slots.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Chunks and reduce tasks of running jobs waiting for a worker",
            queue_depth.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            jobs_submitted,
            jobs_refused,
            jobs_expired,
            attempts,
            retries,
            failures,
            backups,
            bytes_mapped,
            chunk_bytes_sent,
            records_mapped,
            bytes_folded,
            records_folded,
            result_rows,
            map_seconds,
            fold_seconds,
            journal_commit_seconds,
            grpc_requests,
            jobs,
            chunks,
            workers,
            slots,
            queue_depth,
        }
    }

    /// Counts one answered gRPC request.
    pub fn grpc<T>(&self, method: &'static str, answer: &Result<T, tonic::Status>) {
        let code = match answer {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                method,
                code: code_name(code),
            })
            .inc();
    }

    /// The OpenMetrics text of every metric, with the gauges set from `gauges`.
    pub fn render(&self, gauges: &Gauges) -> String {
        for (state, n) in &gauges.jobs {
            self.jobs.get_or_create(&StateLabel { state }).set(*n);
        }
        for (state, n) in &gauges.chunks {
            self.chunks.get_or_create(&StateLabel { state }).set(*n);
        }
        self.workers
            .get_or_create(&StateLabel { state: "attached" })
            .set(gauges.workers_attached);
        self.workers
            .get_or_create(&StateLabel { state: "draining" })
            .set(gauges.workers_draining);
        self.slots.set(gauges.slots);
        self.queue_depth.set(gauges.queue_depth);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The gRPC code's name as the gRPC spec spells it (`OK`, `NOT_FOUND`, ...).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
