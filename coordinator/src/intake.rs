//! Job intake: everything between a submitted spec and a planned job. Validates the spec,
//! builds the operation, checks the output directory, resolves the inputs, decides which files
//! are read whole, plans the record-aligned chunks and checks their sizes, and for a
//! range-partitioned job samples the input for its split keys. Errors are typed
//! ([`IntakeError`]) and become a gRPC status in one place, the API adapter. Inputs and the
//! output directory are confined here to the coordinator's data and output roots
//! (`fanfold_common::roots`), and their number bounded ([`Rules`]).
//!
//! Called by the JobService adapter for every submission, by the scheduler when it restores a
//! job after a restart ([`replan`]), and by the scheduler's tests.

use fanfold_common::chunker::{self, ChunkRange, Cut};
use fanfold_common::input::{self, InputError, InputFile};
use fanfold_common::location::Location;
use fanfold_common::operation::{Chunk, ChunkStats, Operation, SpecError};
use fanfold_common::records::Compression;
use fanfold_common::registry::Registry;
use fanfold_common::roots::Roots;
use fanfold_common::spec::{JobSpec, SpecInvalid, auto_reducers};

use crate::job::Plan;
use crate::worker_files::{self, WorkerFiles};

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

/// What submissions are checked against: the coordinator's settings.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Operations jobs may name.
    pub registry: Registry,
    /// Chunk size for jobs that do not ask for one.
    pub default_chunk_size: u64,
    /// Directories inputs must lie beneath; none means anywhere.
    pub data_roots: Roots,
    /// Directories output directories must lie beneath; none means anywhere.
    pub output_roots: Roots,
    /// Most input files one job may name.
    pub max_inputs: usize,
    /// The coordinator's state directory: no output directory may be it, in it or around it.
    pub state_dir: Option<std::path::PathBuf>,
}

#[cfg(test)]
impl Rules {
    /// The rules of a coordinator with no roots and the default limits.
    pub fn open(registry: Registry, default_chunk_size: u64) -> Rules {
        Rules {
            registry,
            default_chunk_size,
            data_roots: Roots::default(),
            output_roots: Roots::default(),
            max_inputs: DEFAULT_MAX_INPUTS,
            state_dir: None,
        }
    }
}

/// Input files a job may name unless the coordinator says otherwise.
pub const DEFAULT_MAX_INPUTS: usize = 100_000;

/// Turns a submitted spec into a planned job; the spec comes back with its effective chunk
/// size set. Reads the filesystem, so it runs on the blocking pool; worker files
/// (`worker://`) are listed and cut by their workers, reached through `workers` (without it
/// such inputs are refused).
/// `hold` (a planning permit) is kept until planning ends, even if the caller goes away.
pub async fn admit(
    mut spec: JobSpec,
    rules: &Rules,
    workers: Option<&WorkerFiles>,
    hold: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<(JobSpec, Plan), IntakeError> {
    spec.validate()?;
    let registry = &rules.registry;
    let operation = registry.build(&spec.operation, &spec.options)?;
    if let Some(output) = spec.output.clone() {
        // An object-store output is checked by listing it: off the async runtime.
        let (roots, state) = (rules.output_roots.clone(), rules.state_dir.clone());
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            crate::output::check(&output, &roots)?;
            if let Some(state) = &state {
                crate::output::apart_from(&output, state)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| IntakeError::Interrupted(e.to_string()))?
        .map_err(IntakeError::Output)?;
    }
    let chunk_size = *spec.chunk_size.get_or_insert(rules.default_chunk_size);
    let (named, inputs) = worker_files::split(&spec.inputs)?;
    let on_workers = match (named.is_empty(), workers) {
        (true, _) => Vec::new(),
        (false, Some(workers)) => {
            worker_files::list(workers, &named, chunk_size, rules.max_inputs).await?
        }
        (false, None) => {
            return Err(IntakeError::Input(InputError::OnAWorker {
                input: named[0].text.to_owned(),
            }));
        }
    };
    let whole_files = spec.whole_file;
    // `--reducers auto` is decided once the input's size is known, from the fleet's slots now.
    let auto_slots = match (spec.reducers_auto, workers) {
        (true, Some(workers)) => Some(
            workers
                .scheduler
                .workers()
                .await
                .map_err(|e| IntakeError::Interrupted(e.to_string()))?
                .iter()
                .map(|w| w.slots)
                .sum::<u32>(),
        ),
        (true, None) => Some(0),
        (false, _) => None,
    };
    // A partitioned job cannot sort by value without a limit: auto folds it instead.
    let may_partition =
        spec.sort != fanfold_common::partial::SortOrder::ValueDesc || spec.limit.is_some();
    let asked = spec.reducers;
    let (roots, max_inputs) = (rules.data_roots.clone(), rules.max_inputs);
    let sampled = tokio::task::spawn_blocking(move || -> Result<Planned, IntakeError> {
        let _hold = hold;
        let mut files = match (inputs.is_empty(), on_workers.is_empty()) {
            (true, false) => Vec::new(),
            _ => input::resolve(&inputs, &roots, max_inputs)?,
        };
        if files.len() + on_workers.len() > max_inputs {
            return Err(InputError::TooMany(max_inputs).into());
        }
        // Compressed files cannot be entered mid-stream; CSV is cut outside its quotes.
        let cut = |location: &Location| {
            let name = location.to_string();
            if whole_files || Compression::of(&name) != Compression::None {
                Cut::Whole
            } else {
                operation.cut(&name)
            }
        };
        let mut chunks =
            chunker::plan(&files, chunk_size, cut, &roots).map_err(IntakeError::Plan)?;
        // Worker files come cut at newlines by their workers; the rest are one chunk (a
        // worker does not scan its CSV files' quotes).
        for (file, ends) in on_workers {
            let index = u32::try_from(files.len())
                .map_err(|_| IntakeError::Input(InputError::TooMany(max_inputs)))?;
            let ends = match cut(&file.location) {
                Cut::Lines => ends,
                Cut::Csv { .. } | Cut::Whole if file.len > 0 => vec![file.len],
                Cut::Csv { .. } | Cut::Whole => Vec::new(),
            };
            let mut start = 0;
            for end in ends {
                chunks.push(ChunkRange {
                    file: index,
                    start,
                    end,
                    header: 0,
                });
                start = end;
            }
            files.push(file);
        }
        // A worker's own compressed file is read where it is and mapped as it is
        // decompressed: it has no size bound. Everything else travels or is held whole.
        let streamed = |location: &Location| {
            location.owner().is_some()
                && fanfold_common::compression::streams(
                    &location.to_string(),
                    whole_files,
                    operation.as_ref(),
                )
        };
        chunker::check_sizes(&files, &chunks, MAX_CHUNK_BYTES, streamed)
            .map_err(IntakeError::TooLarge)?;
        let reducers = match auto_slots {
            Some(slots) if may_partition => {
                let bytes = chunks.iter().map(ChunkRange::len).sum();
                auto_reducers(bytes, slots, operation.range_partitioned())
            }
            Some(_) => None,
            None => asked,
        };
        let splits = reducers
            .filter(|&r| r > 1 && operation.range_partitioned())
            .map(|reducers| sample_splits(operation.as_ref(), &files, &chunks, reducers, &roots))
            .transpose()
            .map_err(IntakeError::Plan)?;
        Ok((
            Plan {
                files: files.into_iter().map(|f| f.location).collect(),
                chunks,
                operation: Some(operation),
            },
            splits.map(|s| fanfold_common::shuffle::splits_option(&s)),
            reducers,
        ))
    })
    .await
    .map_err(|e| IntakeError::Interrupted(e.to_string()))??;
    let (mut plan, splits, reducers) = sampled;
    // The planned spec holds the partitions chosen, `auto` or not.
    spec.reducers = reducers;
    spec.reducers_auto = false;
    if let Some(splits) = splits {
        // Every worker builds the operation with the same split keys, from the spec.
        spec.options.insert("splits".into(), splits);
        plan.operation = Some(registry.build(&spec.operation, &spec.options)?);
    }
    Ok((spec, plan))
}

/// A plan, a range-partitioned job's split keys, and its partitions.
type Planned = (Plan, Option<String>, Option<u32>);

/// Bytes read at the start of each sampled chunk.
const SAMPLE_BYTES: u64 = 64 << 10;
/// Chunks sampled at most, spread evenly over the plan.
const SAMPLED_CHUNKS: usize = 256;

/// Split keys for a range-partitioned job: the keys at every 1/`reducers` of a sample of the
/// input (the whole records at the start of up to [`SAMPLED_CHUNKS`] chunks, spread over the
/// plan, mapped by the operation and weighted by their counts), so the parts come out about
/// equal however the keys are skewed (Hadoop's InputSampler). Compressed files and worker
/// files are not sampled; with no sample every key goes to the first part.
fn sample_splits(
    operation: &dyn Operation,
    files: &[InputFile],
    chunks: &[ChunkRange],
    reducers: u32,
    roots: &Roots,
) -> std::io::Result<Vec<Vec<u8>>> {
    let step = chunks.len().div_ceil(SAMPLED_CHUNKS).max(1);
    let mut keys: Vec<(Vec<u8>, u64)> = Vec::new();
    for chunk in chunks.iter().step_by(step) {
        let location = &files[chunk.file as usize].location;
        let name = location.to_string();
        // Compressed files cannot be entered mid-stream; worker files are not read here.
        if Compression::of(&name) != Compression::None || location.owner().is_some() {
            continue;
        }
        let sampled = ChunkRange {
            end: chunk.end.min(chunk.start + SAMPLE_BYTES),
            ..*chunk
        };
        let mut data = chunker::read(location, sampled, roots)?;
        if sampled.end < chunk.end {
            // Whole records only: up to the last newline read.
            let whole = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            data.truncate(whole);
        }
        let mut stats = ChunkStats::default();
        let sample = Chunk::of_range(&data, &name, sampled);
        if let Ok(partial) = operation.map(&sample, &mut stats) {
            keys.extend(partial.into_entries().map(|(key, value)| {
                let weight = match value {
                    fanfold_common::partial::Value::Count(n) => n,
                    _ => 1,
                };
                (key, weight)
            }));
        }
    }
    keys.sort_unstable();
    let total: u64 = keys.iter().map(|(_, n)| n).sum();
    let mut splits: Vec<Vec<u8>> = Vec::new();
    let mut seen = 0u64;
    let mut next = 1u64;
    for (key, n) in keys {
        seen += n;
        // The first key past each 1/reducers of the sample starts the next part.
        while next < u64::from(reducers) && seen * u64::from(reducers) > next * total {
            if splits.last() != Some(&key) {
                splits.push(key.clone());
            }
            next += 1;
        }
    }
    Ok(splits)
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
