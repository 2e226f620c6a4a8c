//! A job status as JSON: [`StatusView`], the object `submit-job status --json` prints and the
//! coordinator's HTTP API (`/api/v1/jobs`) serves, with stable snake_case names. The names are
//! a contract (README.md lists them): add fields, never rename or remove one.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::operation::Options;
use crate::partial::SortOrder;
use crate::spec::{Counters, JobStatus};

/// A job status as `status --json` prints it, with stable snake_case names.
#[derive(Debug, Serialize)]
pub struct StatusView<'a> {
    pub job_id: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: &'static str,
    /// A running job whose chunks are all folded and whose end is being made durable.
    pub finishing: bool,
    pub operation: &'a str,
    /// The principal that submitted the job (`anonymous` without tokens).
    pub owner: Option<&'a str>,
    pub options: &'a Options,
    pub inputs: &'a [String],
    /// The job's target chunk size in bytes: the coordinator's default if the job set none.
    pub chunk_size: Option<u64>,
    /// `key` or `value`, as `--sort` names them.
    pub sort: &'static str,
    pub limit: Option<u64>,
    pub whole_file: bool,
    pub skip_bad_records: bool,
    pub timeout_seconds: Option<f64>,
    pub output_dir: Option<OutputDirView<'a>>,
    pub chunks_total: u64,
    pub chunks_done: u64,
    pub chunks_running: u64,
    pub chunks_checkpointed: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub workers: u32,
    pub counters: CountersView<'a>,
    pub error: Option<&'a str>,
    /// RFC 3339, UTC, in milliseconds.
    pub submitted_at: Option<String>,
    pub finished_at: Option<String>,
    pub result_rows: u64,
    pub quarantine: Option<&'a str>,
    /// Partitions of a partitioned job (`--reducers`), else null.
    pub reducers: Option<u32>,
    /// A running partitioned job's stage: `map` or `reduce`; null otherwise.
    pub stage: Option<&'static str>,
    pub reduces_total: u64,
    pub reduces_done: u64,
    pub reduces_running: u64,
    /// Each partition's bytes of map output (skew shows here).
    pub partition_bytes: &'a [u64],
    /// The running chunk that has run longest, once no chunk waits for a worker; else null.
    pub slowest_running: Option<RunningChunkView<'a>>,
    /// The job's page on the coordinator's HTTP port; null if it serves none.
    pub page_url: Option<&'a str>,
}

/// The `slowest_running` of a [`StatusView`].
#[derive(Debug, Serialize)]
pub struct RunningChunkView<'a> {
    pub chunk: u64,
    pub description: &'a str,
    pub worker: &'a str,
    /// RFC 3339, UTC, in milliseconds.
    pub running_since: Option<String>,
}

/// The `output_dir` of a [`StatusView`].
#[derive(Debug, Serialize)]
pub struct OutputDirView<'a> {
    pub path: &'a str,
    /// `tsv`, `csv`, `jsonl` or `lines`.
    pub format: &'static str,
    pub overwrite: bool,
}

/// The `counters` of a [`StatusView`].
#[derive(Debug, Serialize)]
pub struct CountersView<'a> {
    pub records_in: u64,
    pub bytes_in: u64,
    pub bad_records: u64,
    pub keys_out: u64,
    pub attempts: u64,
    pub chunks_failed: u64,
    pub backups: u64,
    pub map_outputs_lost: u64,
    pub reduce_attempts: u64,
    pub shuffle_bytes: u64,
    /// `GROUP.NAME` -> amount.
    pub user: &'a std::collections::BTreeMap<String, u64>,
}

impl<'a> From<&'a JobStatus> for StatusView<'a> {
    fn from(s: &'a JobStatus) -> Self {
        let spec = &s.spec;
        StatusView {
            job_id: s.id.to_string(),
            state: s.state.as_str(),
            finishing: finishing(s),
            operation: &spec.operation,
            options: &spec.options,
            inputs: &spec.inputs,
            chunk_size: spec.chunk_size,
            sort: match spec.sort {
                SortOrder::Key => "key",
                SortOrder::ValueDesc => "value",
            },
            limit: spec.limit,
            whole_file: spec.whole_file,
            skip_bad_records: spec.skip_bad_records,
            timeout_seconds: spec.timeout.map(|t| t.as_secs_f64()),
            output_dir: spec.output.as_ref().map(|o| OutputDirView {
                path: &o.path,
                format: o.format.name(),
                overwrite: o.overwrite,
            }),
            chunks_total: s.chunks_total,
            chunks_done: s.chunks_done,
            chunks_running: s.chunks_running,
            chunks_checkpointed: s.chunks_checkpointed,
            bytes_total: s.bytes_total,
            bytes_done: s.bytes_done,
            workers: s.workers,
            counters: CountersView::from(&s.counters),
            error: s.error.as_deref(),
            submitted_at: rfc3339(s.submitted_at),
            finished_at: s.finished_at.and_then(rfc3339),
            result_rows: s.result_rows,
            quarantine: s.quarantine.as_deref(),
            reducers: spec.reducers,
            owner: spec.owner.as_deref(),
            stage: s.stage(),
            reduces_total: s.reduces_total,
            reduces_done: s.reduces_done,
            reduces_running: s.reduces_running,
            partition_bytes: &s.partition_bytes,
            slowest_running: s.slowest_running.as_ref().map(|r| RunningChunkView {
                chunk: r.chunk,
                description: &r.description,
                worker: &r.worker,
                running_since: rfc3339(r.since),
            }),
            page_url: s.page_url.as_deref(),
        }
    }
}

impl<'a> From<&'a Counters> for CountersView<'a> {
    fn from(c: &'a Counters) -> Self {
        CountersView {
            records_in: c.records_in,
            bytes_in: c.bytes_in,
            bad_records: c.bad_records,
            keys_out: c.keys_out,
            attempts: c.attempts,
            chunks_failed: c.chunks_failed,
            backups: c.backups,
            map_outputs_lost: c.map_outputs_lost,
            reduce_attempts: c.reduce_attempts,
            shuffle_bytes: c.shuffle_bytes,
            user: &c.user,
        }
    }
}

/// Finishing is shown only while the job runs: once final, its end is durable.
pub fn finishing(s: &JobStatus) -> bool {
    s.finishing && !s.state.is_final()
}

/// `time` in RFC 3339 (UTC, milliseconds); `None` outside years 1970 to 9999, which the
/// format's writer cannot spell.
pub fn rfc3339(time: SystemTime) -> Option<String> {
    const YEAR_10000: u64 = 253_402_300_800;
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    (since_epoch.as_secs() < YEAR_10000).then(|| humantime::format_rfc3339_millis(time).to_string())
}
