//! The end of a job, in the order that keeps what clients were told true after a crash:
//! finalize the folded partial off the scheduler task, make the rows durable, commit the output
//! directory, journal the end, and only then announce it (see the phase diagram in
//! `crate::job`). Failures and cancels also end here ([`Scheduler::ended`]).

use std::path::Path;
use std::sync::Arc;

use fanfold_common::fleet::ToWorker;
use fanfold_common::ids::JobId;
use fanfold_common::location::Location;
use fanfold_common::operation::{BadRecord, Finalized, Operation};
use fanfold_common::partial::{self, Folded, Row, SortOrder, Value};
use fanfold_common::spec::JobState;
use tracing::info;

use super::journal::Ack;
use super::{Command, Scheduler};
use crate::job::{JobResult, ToFinalize};
use crate::parts::{self, Part, PartReader, PartWriter};

impl Scheduler {
    /// Records that a job reached a final state and stops its work on every worker. The end
    /// is announced once the journal holds it ([`Scheduler::end_durable`]).
    pub(super) fn ended(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let partitioned = job.reducers() > 0;
        for worker in self.workers.iter() {
            // A partitioned job's map outputs are on every worker that mapped: all drop them.
            if partitioned || worker.holds_job(id) {
                worker.tell(ToWorker::Cancel(id));
            }
        }
        if partitioned && job.state() != JobState::Succeeded {
            let dir = self.config.parts_dir.clone();
            self.tasks
                .spawn_blocking(move || parts::remove_job(&dir, id));
        }
        // Without a journal nothing is stored: the record is not built.
        let timeline = if self.journal.keeps_chunks() {
            job.timeline
                .record(|w| self.workers.name_of(fanfold_common::ids::WorkerId(w)))
        } else {
            Default::default()
        };
        if self.journal.finished(job, timeline) == Ack::Now {
            self.end_durable(id);
        }
    }

    pub(super) fn persist_progress(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get(&id) {
            self.journal.progress(job);
        }
    }

    /// Finalizes (sorts, limits) a job whose chunks are all folded, off the scheduler task.
    pub(super) fn finalize_if_ready(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.ready_to_finalize() {
            return;
        }
        let ToFinalize {
            folded,
            parts,
            bad,
            operation,
        } = job.take_for_finalize();
        let Some(operation) = operation else {
            return; // restored without its operation: failed when restored
        };
        let (sort, limit) = (job.spec.sort, job.spec.limit);
        let quarantine_file = self.config.quarantine_dir.join(format!("{id}.tsv"));
        let parts_dir = parts::job_dir(&self.config.parts_dir, id);
        let commands = self.commands.clone();
        self.tasks.spawn(async move {
            let finalized = tokio::task::spawn_blocking(move || {
                let (keys, result) = match parts {
                    Some(parts) => {
                        let keys = parts.iter().map(|p| p.keys).sum();
                        let parts = match limit {
                            Some(limit) => merge_limited(&parts_dir, parts, sort, limit)
                                .map_err(|e| format!("cannot merge the parts: {e}"))?,
                            None => parts,
                        };
                        (keys, JobResult::Parts(Arc::new(parts)))
                    }
                    None => finalize_folded(operation.as_ref(), folded, sort, limit, &parts_dir)?,
                };
                let quarantine = if bad.is_empty() {
                    None
                } else {
                    write_quarantine(&quarantine_file, &bad)
                        .map_err(|e| format!("cannot write the quarantine file: {e}"))?;
                    Some(quarantine_file)
                };
                Ok((keys, result, quarantine))
            })
            .await;
            let result = finalized.unwrap_or_else(|e| Err(format!("finalize failed: {e}")));
            let _ = commands.send(Command::Finalized { job: id, result }).await;
        });
    }

    /// Makes a finalized job's rows durable before its output directory is committed, so a
    /// restart commits the same rows rather than finalizing again.
    pub(super) fn keep_rows(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let Some(result) = job.result() else {
            return;
        };
        if self.journal.rows(job, result) == Ack::Now {
            self.rows_durable(id);
        }
    }

    /// A job's rows are durable: its output directory is next.
    pub(super) fn rows_durable(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get_mut(&id)
            && job.rows_durable()
        {
            self.commit_if_ready(id);
        }
    }

    /// Commits the output directory of a job whose rows are durable, off the scheduler task;
    /// a job without one succeeds at once.
    pub(super) fn commit_if_ready(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if !job.ready_to_commit() {
            return;
        }
        let (Some(output), Some(result)) = (job.spec.output.clone(), job.result()) else {
            self.succeed(id);
            return;
        };
        let commands = self.commands.clone();
        let roots = self.config.output_roots.clone();
        self.tasks.spawn(async move {
            let committed = tokio::task::spawn_blocking(move || {
                crate::output::commit(&output, id, &result, &roots)
            })
            .await;
            let result = committed.unwrap_or_else(|e| Err(format!("output commit failed: {e}")));
            let _ = commands.send(Command::Committed { job: id, result }).await;
        });
    }

    /// The rows are durable and the output committed: the job has succeeded, announced once
    /// the journal holds it.
    pub(super) fn succeed(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get_mut(&id)
            && job.succeed()
        {
            info!(job_id = %id, keys = job.snapshot(0).counters.keys_out, "job succeeded");
            self.ended(id);
        }
    }

    /// The journal holds a job's end: announce it to watchers and to cancels waiting.
    pub(super) fn end_durable(&mut self, id: JobId) {
        let workers = self.worker_count();
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.end_durable();
        let status = job.snapshot(workers);
        for reply in self.cancels.remove(&id).unwrap_or_default() {
            let _ = reply.send(Ok(status.clone()));
        }
        self.publish(id);
    }
}

/// Writes skipped records as `path<TAB>offset<TAB>error<TAB>record` lines, atomically: under a
/// temporary name first, then renamed.
fn write_quarantine(path: &std::path::Path, bad: &[(Location, BadRecord)]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension("tsv.tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&temp)?);
    for (file, record) in bad {
        let error = record.error.replace(['\t', '\n', '\r'], " ");
        write!(out, "{file}\t{}\t{error}\t", record.offset)?;
        out.write_all(record.record.strip_suffix(b"\n").unwrap_or(&record.record))?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(temp, path)
}

/// A result held in memory (and in the state directory's result batches) is at most about
/// this big; a larger one is kept in a part file and streamed from there, as a partitioned
/// job's result is, so finished jobs do not hold their results in memory.
const RESULT_IN_MEMORY_BYTES: usize = 1 << 20;

/// About the memory `rows` hold: keys, and the bytes in their values.
fn result_bytes(rows: &[Row]) -> usize {
    use fanfold_common::partial::Value;
    let items = |items: &mut dyn Iterator<Item = &Vec<u8>>| items.map(|i| 24 + i.len()).sum();
    rows.iter()
        .map(|row| {
            let value: usize = match &row.value {
                Value::Distinct(set) | Value::Postings(set) => items(&mut set.iter()),
                Value::Collect(list) => items(&mut list.iter()),
                Value::TopK { counts, .. } => items(&mut counts.keys()),
                Value::Text(text) => text.len(),
                _ => 0,
            };
            std::mem::size_of::<Row>() + row.key.len() + value
        })
        .sum()
}

/// An unpartitioned job's result from its folded partial: kept in memory, or in a part file
/// in `dir` if it is large. A result of counts alone, from an operation that finalizes by key,
/// is ordered in the count table and its rows made one at a time as they are written, never
/// all held (a million-key count spent most of its end building, sorting, writing and then
/// freeing a million rows).
fn finalize_folded(
    operation: &dyn Operation,
    folded: Folded,
    sort: SortOrder,
    limit: Option<u64>,
    dir: &Path,
) -> Result<(u64, JobResult), String> {
    let folded = if !operation.finalizes_by_key() {
        folded
    } else {
        match folded.into_count_rows(sort, limit) {
            Ok(counts) => {
                let keys = counts.keys();
                let rows = counts.iter().map(|(key, n)| Row {
                    key: operation.row_key(key.to_vec()),
                    value: Value::Count(n),
                });
                let bytes = counts.len() * std::mem::size_of::<Row>() + counts.key_bytes();
                return keep(dir, rows, bytes, keys);
            }
            Err(folded) => folded,
        }
    };
    let Finalized { keys, rows } = operation
        .finalize(folded.into_partial(), sort, limit)
        .map_err(|e| format!("finalize failed: {e}"))?;
    let bytes = result_bytes(&rows);
    keep(dir, rows, bytes, keys)
}

/// A result of about `bytes` held in memory, or kept in a part file in `dir` if it is larger
/// than [`RESULT_IN_MEMORY_BYTES`].
fn keep(
    dir: &Path,
    rows: impl IntoIterator<Item = Row>,
    bytes: usize,
    keys: u64,
) -> Result<(u64, JobResult), String> {
    Ok(if bytes > RESULT_IN_MEMORY_BYTES {
        let part =
            keep_on_disk(dir, rows, keys).map_err(|e| format!("cannot keep the result: {e}"))?;
        (keys, JobResult::Parts(Arc::new(vec![part])))
    } else {
        (keys, JobResult::Rows(Arc::new(rows.into_iter().collect())))
    })
}

/// Writes a finalized result to one part file in `dir`.
fn keep_on_disk(
    dir: &Path,
    rows: impl IntoIterator<Item = Row>,
    keys: u64,
) -> std::io::Result<Part> {
    let mut writer = PartWriter::create(dir.join("part-result"))?;
    writer.append(rows)?;
    let (path, rows) = writer.finish()?;
    Ok(Part { path, rows, keys })
}

/// A limited partitioned job's result: each part holds its own first `limit` rows; the job's
/// are the first `limit` of them all, in the job's order (keys bytewise), written as one part.
fn merge_limited(
    dir: &Path,
    parts: Vec<Part>,
    sort: SortOrder,
    limit: u64,
) -> std::io::Result<Vec<Part>> {
    let mut rows = Vec::new();
    for part in &parts {
        rows.extend(PartReader::open(&part.path)?.rows()?);
    }
    let rows = partial::order(rows, sort, Some(limit), |a, b| a.key.cmp(&b.key));
    let mut writer = PartWriter::create(dir.join("part-limited"))?;
    writer.append(rows)?;
    let (path, rows) = writer.finish()?;
    let keys = parts.iter().map(|p| p.keys).sum();
    for part in parts {
        let _ = std::fs::remove_file(part.path);
    }
    Ok(vec![Part { path, rows, keys }])
}
