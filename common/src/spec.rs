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
    #[error("output directory '{0}' must be an absolute path")]
    RelativeOutput(String),
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
        {
            return Err(SpecInvalid::RelativeOutput(output.path.clone()));
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
    }
}
