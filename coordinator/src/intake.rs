//! Job intake: everything between a submitted spec and a planned job. Validates the spec,
//! builds the operation, checks the output directory, resolves the inputs, decides which files
//! are read whole, plans the record-aligned chunks and checks their sizes. Errors are typed
//! ([`IntakeError`]) and become a gRPC status in one place, the API adapter. Authorization of
//! inputs belongs here.
//!
//! Called by the JobService adapter for every submission, by the scheduler when it restores a
//! job after a restart ([`replan`]), and by the scheduler's tests.

use fanfold_common::chunker::{self, ChunkRange};
use fanfold_common::input::{self, InputError};
use fanfold_common::location::Location;
use fanfold_common::operation::SpecError;
use fanfold_common::records::Compression;
use fanfold_common::registry::Registry;
use fanfold_common::spec::{JobSpec, SpecInvalid};

use crate::job::Plan;

/// The largest chunk that can be assigned: a gRPC message, less room for the rest of it.
const MAX_CHUNK_BYTES: u64 = fanfold_proto::MAX_MESSAGE_BYTES as u64 - (1 << 20);

/// Why a submission was refused; each names what and where.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Spec(#[from] SpecInvalid),
    #[error(transparent)]
    Operation(#[from] SpecError),
    /// The output directory cannot be written (the message names it and why).
    #[error("{0}")]
    Output(String),
    #[error(transparent)]
    Input(#[from] InputError),
    /// Planning failed reading an input (the message names the file).
    #[error("{0}")]
    Plan(std::io::Error),
    /// A chunk that must stay whole is larger than a chunk may be.
    #[error("{0}")]
    TooLarge(String),
    #[error("planning stopped: {0}")]
    Interrupted(String),
}

/// Turns a submitted spec into a planned job; the spec comes back with its effective chunk
/// size set. Reads the filesystem, so it runs on the blocking pool.
pub async fn admit(
    mut spec: JobSpec,
    registry: &Registry,
    default_chunk_size: u64,
) -> Result<(JobSpec, Plan), IntakeError> {
    spec.validate()?;
    let operation = registry.build(&spec.operation, &spec.options)?;
    if let Some(output) = &spec.output {
        crate::output::check(output).map_err(IntakeError::Output)?;
    }
    let chunk_size = *spec.chunk_size.get_or_insert(default_chunk_size);
    let inputs = spec.inputs.clone();
    let whole_files = spec.whole_file;
    let plan = tokio::task::spawn_blocking(move || -> Result<Plan, IntakeError> {
        let files = input::resolve(&inputs)?;
        // Compressed files cannot be entered mid-stream; some formats cannot be cut.
        let whole_file = |location: &Location| {
            let name = location.to_string();
            whole_files
                || Compression::of(&name) != Compression::None
                || operation.whole_file(&name)
        };
        let chunks = chunker::plan(&files, chunk_size, whole_file).map_err(IntakeError::Plan)?;
        chunker::check_sizes(&files, &chunks, MAX_CHUNK_BYTES).map_err(IntakeError::TooLarge)?;
        Ok(Plan {
            files: files.into_iter().map(|f| f.location).collect(),
            chunks,
            operation: Some(operation),
        })
    })
    .await
    .map_err(|e| IntakeError::Interrupted(e.to_string()))??;
    Ok((spec, plan))
}

/// The plan of a job restored after a restart, as it was planned. Its operation is `None` if
/// this coordinator no longer knows it (the job then fails on restore).
pub fn replan(
    spec: &JobSpec,
    files: Vec<Location>,
    chunks: Vec<ChunkRange>,
    registry: &Registry,
) -> Plan {
    Plan {
        files,
        chunks,
        operation: registry.build(&spec.operation, &spec.options).ok(),
    }
}
