//! One assignment to its outcome, as a domain [`Report`]: get the chunk's bytes (inline, or
//! read from shared or object storage), decompress them, map them (or, in skip mode, isolate the records
//! that fail), catching a panic as the chunk's failure. A partitioned job's map cuts its output
//! into sorted partitions and keeps them in the spill directory, reporting their sizes. Runs
//! on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use fanfold_common::chunker::ChunkRange;
use fanfold_common::fleet::{Assignment, ChunkOutput, MapOutput, Payload, Report};
use fanfold_common::location::Location;
use fanfold_common::operation::{self, Chunk, ChunkStats};
use fanfold_common::records;
use fanfold_common::{chunker, objects};
use tracing::{debug, warn};

use crate::jobs::Jobs;
use crate::spill::Spill;

/// A chunk's bytes as they arrive at the map: in memory, or a local file to stream (a
/// compressed file mapped block by block), checked to be as long as planned.
enum Input {
    Bytes(Bytes),
    File(std::io::Take<std::fs::File>),
}

impl Input {
    /// Reads `range` of `location` beneath `roots`: all of it now, or (`stream`, a local file)
    /// opened for reading as it is mapped. Objects are read now.
    fn read(
        location: &Location,
        range: ChunkRange,
        roots: &fanfold_common::roots::Roots,
        stream: bool,
    ) -> std::io::Result<Input> {
        if !stream || location.owner().is_none() && location.as_path().is_none() {
            return chunker::read(location, range, roots).map(|d| Input::Bytes(Bytes::from(d)));
        }
        let fanfold_common::location::Source::Local(mut file) = location.open(roots)? else {
            unreachable!("a local file opens as one");
        };
        if file.metadata()?.len() < range.end {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file is shorter than when the job was planned",
            ));
        }
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(range.start))?;
        Ok(Input::File(std::io::Read::take(file, range.len())))
    }
}

/// The rest of a reader, in memory.
fn read_all(mut reader: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    reader.read_to_end(&mut data)?;
    Ok(data)
}

/// Why a chunk was not mapped.
enum Failure {
    /// Its bytes could not be read by reference: the coordinator sends them inline instead.
    Unreadable(String),
    /// Decompressing or mapping it failed.
    Map(String),
    /// Its object is not the version the job planned (changed, shortened or gone), or its
    /// worker file cannot be read here: no attempt anywhere can read what was planned.
    Changed(String),
}

/// Runs `assignment` and says how it went. `stop` is set when the result is no longer
/// wanted; a map stopped that way fails as retryable (the coordinator drops the report if the
/// job was cancelled). `worker` names this worker in errors.
pub async fn run(
    jobs: &Jobs,
    spill: &Arc<Spill>,
    worker: &str,
    mut assignment: Assignment,
    stop: Arc<AtomicBool>,
) -> Report {
    let context = match jobs.context(&assignment) {
        Ok(context) => context,
        Err(e) => return failed(format!("worker {worker}: {e}"), false),
    };
    let payload = std::mem::replace(&mut assignment.payload, Payload::Unread);
    let started = std::time::Instant::now();
    let flag = Arc::clone(&stop);
    let (location, range, skip) = (
        assignment.location.clone(),
        assignment.range,
        assignment.skip_bad_records,
    );
    let name = location.to_string();
    // Decompressed and mapped a block at a time, so memory does not grow with the file.
    let streamed = fanfold_common::compression::streams(
        &name,
        assignment.whole_file,
        context.operation.as_ref(),
    );
    let (job, chunk_id, attempt, reducers) = (
        assignment.job,
        assignment.chunk,
        assignment.attempt,
        assignment.reducers,
    );
    let spill = Arc::clone(spill);
    let roots = jobs.roots();
    let local = jobs.local_roots().cloned();
    let me = worker.to_owned();
    let mapped = tokio::task::spawn_blocking(move || {
        let data = match payload {
            Payload::Inline(data) => Input::Bytes(data),
            // A file of this worker's own: no other can read it, so no error is retried
            // elsewhere.
            Payload::Shared(shared @ Location::Worker(_)) => {
                let read = match (&local, shared.owner()) {
                    (Some(local), Some(owner)) if owner == me => {
                        Input::read(&shared, range, local, streamed)
                    }
                    (None, _) => Err(std::io::Error::other(
                        "this worker offers no files of its own",
                    )),
                    (_, owner) => Err(std::io::Error::other(format!(
                        "the file belongs to worker {}",
                        owner.unwrap_or_default()
                    ))),
                };
                // Gone or shortened is final; anything else may pass (retried, here).
                read.map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::Other => Failure::Changed(format!("{shared}: {e}")),
                    _ => Failure::Map(format!("{shared}: {e}")),
                })?
            }
            Payload::Shared(shared) => {
                let Some(roots) = roots else {
                    return Err(Failure::Unreadable(format!(
                        "{shared}: the coordinator's data roots are not open here"
                    )));
                };
                match Input::read(&shared, range, &roots, streamed) {
                    Ok(input) => input,
                    Err(e) if shared.as_path().is_none() && objects::is_changed(&e) => {
                        return Err(Failure::Changed(e.to_string()));
                    }
                    // An object's error names it already.
                    Err(e) if shared.as_path().is_none() => {
                        return Err(Failure::Unreadable(e.to_string()));
                    }
                    Err(e) => return Err(Failure::Unreadable(format!("{shared}: {e}"))),
                }
            }
            Payload::Unread => return Err(Failure::Map("an assignment without its bytes".into())),
        };
        let mut stats = ChunkStats::default();
        let operation = context.operation.as_ref();
        // A streamed chunk's blocks carry their own offsets; any other is mapped as read,
        // its file's first record in front if it carries one.
        let map = |data: &[u8], range: ChunkRange, stats: &mut ChunkStats| {
            let chunk = Chunk::of_range(data, &name, range).with_stop(&flag);
            if skip {
                let (partial, bad) = operation::map_isolating(operation, &chunk, stats)
                    .map_err(|e| e.to_string())?;
                Ok((partial.into_columns(), bad))
            } else {
                let partial = operation
                    .map_columns(&chunk, stats)
                    .map_err(|e| e.to_string())?;
                Ok((partial, Vec::new()))
            }
        };
        let (partial, bad) = if streamed {
            // Block by block, each block's partial folded into the chunk's.
            let mut partial = fanfold_common::partial::Partial::new();
            let mut bad = Vec::new();
            let each = |block: &[u8], offset: u64| {
                if flag.load(Ordering::Relaxed) {
                    return Err("stopped".to_owned());
                }
                let block_range = ChunkRange {
                    start: offset,
                    ..ChunkRange::default()
                };
                let (part, skipped) = map(block, block_range, &mut stats)?;
                partial.fold(part).map_err(|e| e.to_string())?;
                bad.extend(skipped);
                Ok(())
            };
            let block = records::DECOMPRESSED_BLOCK;
            match data {
                Input::Bytes(bytes) => records::for_each_block(&name, &bytes[..], block, each),
                Input::File(file) => records::for_each_block(&name, file, block, each),
            }
            .map_err(Failure::Map)?;
            (partial.into_columns(), bad)
        } else {
            let bytes = match data {
                Input::Bytes(bytes) => bytes,
                Input::File(file) => {
                    Bytes::from(read_all(file).map_err(|e| Failure::Map(format!("{name}: {e}")))?)
                }
            };
            let data = records::decompress(&name, &bytes).map_err(Failure::Map)?;
            map(&data, range, &mut stats).map_err(Failure::Map)?
        };
        if reducers == 0 {
            return Ok(ChunkOutput {
                partial,
                stats,
                bad,
                map_output: None,
            });
        }
        let segments: Vec<Vec<u8>> =
            fanfold_common::shuffle::partition_chunk(partial, reducers, |k| {
                operation.partition(k, reducers)
            })
            .map_err(|e| Failure::Map(e.to_string()))?
            .into_iter()
            .map(fanfold_common::convert::encode_segment)
            .collect();
        let partition_bytes = spill
            .write(job, chunk_id, attempt, &segments)
            .map_err(|e| Failure::Map(format!("cannot keep the map output: {e}")))?;
        Ok(ChunkOutput {
            partial: Default::default(),
            stats,
            bad,
            map_output: Some(MapOutput { partition_bytes }),
        })
    })
    .await;
    debug!(job_id = %assignment.job, chunk_id = %assignment.chunk, attempt = %assignment.attempt,
        elapsed = ?started.elapsed(), "chunk mapped");
    if stop.load(Ordering::Relaxed) {
        // Stopped on purpose, not by its input: another attempt may run it.
        return failed(
            format!("worker {worker}: stopped (job cancelled or worker stopping)"),
            true,
        );
    }
    match mapped {
        Ok(Ok(output)) => Report::Done(output),
        // Retried, on another worker where possible: the cause may be local to this one.
        Ok(Err(Failure::Map(e))) => failed(format!("worker {worker}: {e}"), true),
        Ok(Err(Failure::Changed(e))) => failed(format!("worker {worker}: {e}"), false),
        Ok(Err(Failure::Unreadable(e))) => {
            warn!(job_id = %assignment.job, chunk_id = %assignment.chunk, error = %e,
                "cannot read a chunk by reference (shared or object storage); handing it back");
            Report::Released {
                unreadable: Some(format!("worker {worker}: cannot read {e}")),
            }
        }
        Err(join) => {
            let why = match join.try_into_panic() {
                Ok(panic) => operation::panic_message(panic.as_ref()),
                Err(e) => e.to_string(),
            };
            failed(format!("worker {worker}: map panicked: {why}"), true)
        }
    }
}

pub fn failed(error: String, retryable: bool) -> Report {
    Report::Failed { error, retryable }
}
