//! The validated job spec and the job status that clients see.

use std::time::{Duration, SystemTime};

use crate::ids::JobId;
use crate::operation::Options;
use crate::partial::SortOrder;
use crate::render::Format;

/// Default target chunk size: see docs/ARCHITECTURE.md ("Chunk size") for the measurement.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;
/// Smallest chunk size a job may ask for; smaller chunks cost more in scheduling than they gain.
pub const MIN_CHUNK_SIZE: u64 = 1 << 10;
/// Largest chunk size a job may ask for; a chunk travels in one gRPC message.
pub const MAX_CHUNK_SIZE: u64 = 256 << 20;

/// What to run over which inputs, and how to shape the result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobSpec {
    /// Files, directories or glob patterns on the coordinator's filesystem.
    pub inputs: Vec<String>,
    pub operation: String,
    pub options: Options,
    /// `None` means the coordinator's default.
    pub chunk_size: Option<u64>,
    pub sort: SortOrder,
    pub limit: Option<u64>,
    /// Fail the job if it has not finished this long after submission.
    pub timeout: Option<Duration>,
    /// Quarantine records that fail their map instead of failing the job.
    pub skip_bad_records: bool,
    /// One chunk per input file, for per-document jobs.
    pub whole_file: bool,
    /// Where the coordinator also writes the result, if anywhere.
    pub output: Option<OutputDir>,
    /// Reduce on the workers in this many partitions; `None` folds at the coordinator.
    pub reducers: Option<u32>,
    /// The coordinator picks `reducers` when it plans the job ([`auto_reducers`]); a planned
    /// job's spec holds its choice instead.
    pub reducers_auto: bool,
    /// The principal that submitted the job. The coordinator sets it from the caller's
    /// token; whatever a client sends is replaced.
    pub owner: Option<String>,
}

/// Most partitions a job may ask for: each map output has an index entry per partition, and
/// each reduce task fetches from every map output.
pub const MAX_REDUCERS: u32 = 4096;

/// Input bytes per partition that `--reducers auto` aims at.
pub const AUTO_BYTES_PER_REDUCER: u64 = 256 << 20;

/// The partitions `--reducers auto` picks for `input_bytes` on a fleet of `slots` map slots:
/// one per [`AUTO_BYTES_PER_REDUCER`] of input, at most two per slot (so every slot reduces
/// and no reduce task is tiny), at most [`MAX_REDUCERS`]; `None`, folding at the coordinator,
/// where that is one partition. A range-partitioned job (`sort`) gets at least one partition
/// per slot, so its output is spread over the fleet.
pub fn auto_reducers(input_bytes: u64, slots: u32, range_partitioned: bool) -> Option<u32> {
    let slots = u64::from(slots.max(1));
    let by_size = input_bytes.div_ceil(AUTO_BYTES_PER_REDUCER);
    let floor = if range_partitioned { slots } else { 1 };
    let r = by_size
        .max(floor)
        .min(2 * slots)
        .min(u64::from(MAX_REDUCERS));
    (r > 1).then_some(r as u32)
}

/// A result directory on the coordinator's filesystem, written as part files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputDir {
    /// An absolute path.
    pub path: String,
    pub format: Format,
    /// Replace the directory if it exists (otherwise such a job is refused).
    pub overwrite: bool,
}

/// A spec that cannot run, whatever the inputs hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecInvalid {
    #[error("no input given")]
    NoInput,
    #[error("no operation given")]
    NoOperation,
    #[error("chunk size {0} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes")]
    ChunkSize(u64),
    #[error("output directory '{0}' must be an absolute path or an object-store URL")]
    RelativeOutput(String),
    #[error("--reducers {0} is outside 1..={MAX_REDUCERS}")]
    Reducers(u32),
    #[error(
        "--sort value needs --limit in a partitioned job (--reducers): each part is sorted on \
         its own, so only a top N can be merged across parts"
    )]
    UnlimitedValueSort,
    #[error("--reducers is either a number or auto")]
    AutoAndCount,
}

impl JobSpec {
    /// Checks what can be checked without the filesystem or the operation registry.
    pub fn validate(&self) -> Result<(), SpecInvalid> {
        if self.inputs.is_empty() {
            return Err(SpecInvalid::NoInput);
        }
        if self.operation.is_empty() {
            return Err(SpecInvalid::NoOperation);
        }
        if let Some(output) = &self.output
            && !std::path::Path::new(&output.path).is_absolute()
            && crate::objects::ObjectUrl::parse(&output.path).is_none()
        {
            return Err(SpecInvalid::RelativeOutput(output.path.clone()));
        }
        if self.reducers_auto && self.reducers.is_some() {
            return Err(SpecInvalid::AutoAndCount);
        }
        if let Some(r) = self.reducers {
            if !(1..=MAX_REDUCERS).contains(&r) {
                return Err(SpecInvalid::Reducers(r));
            }
            if self.sort == SortOrder::ValueDesc && self.limit.is_none() {
                return Err(SpecInvalid::UnlimitedValueSort);
            }
        }
        self.chunk_size.map_or(Ok(()), check_chunk_size)
    }
}

/// Fails if `size` is outside the allowed chunk sizes.
pub fn check_chunk_size(size: u64) -> Result<(), SpecInvalid> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(SpecInvalid::ChunkSize(size))
    }
}

/// Where a job is in its life.
///
/// ```text
/// Running ──all chunks folded──> Succeeded
///    │──a chunk failed for good──> Failed
///    └──cancel──> Cancelled
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// Built-in job counters. Only the folded attempt of a chunk contributes its records and bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub records_in: u64,
    pub bytes_in: u64,
    pub bad_records: u64,
    pub keys_out: u64,
    pub attempts: u64,
    pub chunks_failed: u64,
    pub backups: u64,
    /// Counters the job defines itself (`GROUP.NAME`), from folded chunks only.
    pub user: std::collections::BTreeMap<String, u64>,
    /// Partitioned jobs: map outputs lost (their worker left, or a reducer could not fetch
    /// them) and mapped again.
    pub map_outputs_lost: u64,
    /// Partitioned jobs: reduce task attempts made.
    pub reduce_attempts: u64,
    /// Partitioned jobs: bytes of map output kept for the reducers (the shuffle), of the map
    /// outputs in use.
    pub shuffle_bytes: u64,
}

/// A snapshot of a job, as `GetJob` and `WatchJob` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub id: JobId,
    pub state: JobState,
    /// Every chunk is folded and the job is being finalized, its output committed or its end
    /// made durable; `state` turns final once that is done.
    pub finishing: bool,
    pub spec: JobSpec,
    pub chunks_total: u64,
    pub chunks_done: u64,
    pub chunks_running: u64,
    /// Folded chunks whose results are durable; they are not recomputed after a restart.
    pub chunks_checkpointed: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub workers: u32,
    pub counters: Counters,
    pub error: Option<String>,
    pub submitted_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    pub result_rows: u64,
    /// The file holding records skipped as bad, on the coordinator's filesystem.
    pub quarantine: Option<String>,
    /// Partitioned jobs: reduce tasks in all, done and running (all 0 otherwise).
    pub reduces_total: u64,
    pub reduces_done: u64,
    pub reduces_running: u64,
    /// Partitioned jobs: each partition's bytes of map output so far (skew shows here).
    pub partition_bytes: Vec<u64>,
    /// The running chunk that has run longest, once no chunk waits for a worker (the job is
    /// waiting on stragglers); `None` otherwise.
    pub slowest_running: Option<RunningChunk>,
    /// The job's page on the coordinator's HTTP port, when it serves one (a host of 0.0.0.0
    /// or `[::]` stands for the address the client dialled).
    pub page_url: Option<String>,
}

/// A running chunk, as the status names a straggler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningChunk {
    pub chunk: u64,
    /// `chunk N (path bytes a..b)`.
    pub description: String,
    pub worker: String,
    pub since: SystemTime,
}

impl JobStatus {
    /// The stage a running partitioned job is in: `map` until every chunk is mapped, then
    /// `reduce`; `None` for other jobs and once the job has ended.
    pub fn stage(&self) -> Option<&'static str> {
        if self.reduces_total == 0 || self.state.is_final() {
            None
        } else if self.chunks_done < self.chunks_total {
            Some("map")
        } else {
            Some("reduce")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        let ok = JobSpec {
            inputs: vec!["x".into()],
            operation: "wordcount".into(),
            ..Default::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let small = JobSpec {
            chunk_size: Some(10),
            ..ok.clone()
        };
        assert_eq!(small.validate(), Err(SpecInvalid::ChunkSize(10)));
        let none = JobSpec {
            inputs: vec![],
            ..ok
        };
        assert_eq!(none.validate(), Err(SpecInvalid::NoInput));
        let partitioned = JobSpec {
            inputs: vec!["x".into()],
            operation: "wordcount".into(),
            reducers: Some(3),
            ..Default::default()
        };
        assert_eq!(partitioned.validate(), Ok(()));
        let zero = JobSpec {
            reducers: Some(0),
            ..partitioned.clone()
        };
        assert_eq!(zero.validate(), Err(SpecInvalid::Reducers(0)));
        let by_value = JobSpec {
            sort: SortOrder::ValueDesc,
            ..partitioned.clone()
        };
        assert_eq!(by_value.validate(), Err(SpecInvalid::UnlimitedValueSort));
        let top = JobSpec {
            limit: Some(10),
            ..by_value
        };
        assert_eq!(top.validate(), Ok(()));
        let both = JobSpec {
            reducers_auto: true,
            ..partitioned
        };
        assert_eq!(both.validate(), Err(SpecInvalid::AutoAndCount));
    }

    #[test]
    fn auto_reducers_follow_the_input_size_within_the_fleet() {
        const MIB: u64 = 1 << 20;
        // Small inputs fold at the coordinator, as without --reducers.
        assert_eq!(auto_reducers(100 * MIB, 4, false), None);
        assert_eq!(auto_reducers(256 * MIB, 4, false), None);
        assert_eq!(auto_reducers(257 * MIB, 4, false), Some(2));
        // One per 256 MiB, at most two per slot.
        assert_eq!(auto_reducers(1024 * MIB, 4, false), Some(4));
        assert_eq!(auto_reducers(100 * 1024 * MIB, 4, false), Some(8));
        assert_eq!(
            auto_reducers(100 * 1024 * MIB, 0, false),
            Some(2),
            "no fleet yet: one slot"
        );
        // A sort spreads over every slot however small its input.
        assert_eq!(auto_reducers(MIB, 3, true), Some(3));
        assert_eq!(auto_reducers(MIB, 1, true), None);
        assert_eq!(auto_reducers(u64::MAX, u32::MAX, false), Some(MAX_REDUCERS));
    }
}
