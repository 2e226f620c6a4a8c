//! One reduce task to its outcome: fetch the task's partition from every map output (from
//! this worker's own spill directory when it keeps the output, else from the worker that
//! does), merge the key-sorted segments with the operation's merge (in key order when its
//! finalize is the default; else folded into a partial for its finalize), finalize the
//! partition once, and send its rows in batches, then the report. Runs in an executor slot;
//! CPU work on the blocking pool.
//!
//! A fetch that fails is retried a few times with backoff; after that the task fails with a
//! typed loss naming the map output, and the coordinator maps that chunk again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fanfold_common::fleet::{FromWorker, ReduceAssignment, ReduceReport};
use fanfold_common::operation::Finalized;
use fanfold_common::partial::Partial;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::jobs::Jobs;
use crate::spill::Spill;

/// Rows per `PartRows` message.
const ROWS_PER_BATCH: usize = 4096;
/// Fetch attempts per map output before it counts as lost.
const FETCH_TRIES: u32 = 3;
const FETCH_BACKOFF: Duration = Duration::from_millis(250);

/// What the task needs of its worker.
pub struct Context<'a> {
    pub jobs: &'a Jobs,
    pub spill: &'a Arc<Spill>,
    /// This worker's own shuffle address: map outputs there are read from disk.
    pub shuffle_address: &'a str,
    pub fetcher: &'a crate::shuffle::Fetcher,
    pub worker: &'a str,
    pub reports: &'a mpsc::Sender<FromWorker>,
    /// Bytes of fetched segments the task holds before it spills them to a sorted run.
    pub memory: u64,
    /// Counts the bytes it spills.
    pub spilled: &'a prometheus_client::metrics::counter::Counter,
}

/// Runs a reduce task, sending its rows to `reports` as it goes; returns the report to send
/// after them (`None` if the reports channel closed: the attachment is gone).
pub async fn run(
    context: Context<'_>,
    task: ReduceAssignment,
    stop: Arc<AtomicBool>,
) -> Option<ReduceReport> {
    let failed = |error: String, retryable: bool| ReduceReport::Failed {
        error: format!(
            "worker {}: reduce of partition {}: {error}",
            context.worker, task.key.partition
        ),
        retryable,
        lost: None,
    };
    let operation = match context
        .jobs
        .operation(task.key.job, &task.operation, &task.options)
    {
        Ok(op) => op,
        Err(e) => return Some(failed(e.to_string(), false)),
    };
    let key = task.key;
    // Folded as fetched, or (an operation whose finalize is the default) kept sorted and
    // merged in key order at the end.
    let mut folded = Partial::new();
    let mut sorted: Vec<fanfold_common::shuffle::Segment> = Vec::new();
    let mut fetched_bytes = 0u64;
    // Sorted segments held, by their fetched size, and the runs spilled beyond the budget.
    let mut held = 0u64;
    let mut runs = crate::runs::Runs::default();
    for source in &task.sources {
        if stop.load(Ordering::Relaxed) {
            return Some(failed(
                "stopped (job cancelled or worker stopping)".into(),
                true,
            ));
        }
        let data = if source.address == context.shuffle_address {
            let spill = Arc::clone(context.spill);
            let (chunk, attempt) = (source.chunk, source.attempt);
            match tokio::task::spawn_blocking(move || {
                spill.read(key.job, chunk, attempt, key.partition)
            })
            .await
            {
                Ok(Ok(data)) => data,
                Ok(Err(e)) => {
                    return Some(ReduceReport::Failed {
                        error: format!(
                            "worker {}: chunk {chunk}'s map output (attempt {attempt}) is gone \
                             from this worker: {e}",
                            context.worker
                        ),
                        retryable: true,
                        lost: Some((chunk, attempt)),
                    });
                }
                Err(e) => return Some(failed(e.to_string(), true)),
            }
        } else {
            let mut tries = 0;
            loop {
                tries += 1;
                match context.fetcher.fetch(source, key).await {
                    Ok(data) => break data,
                    Err(e) if tries < FETCH_TRIES => {
                        debug!(job_id = %key.job, partition = key.partition, error = %e, "fetch failed; retrying");
                        tokio::time::sleep(FETCH_BACKOFF * 2u32.pow(tries - 1)).await;
                    }
                    Err(e) => {
                        warn!(job_id = %key.job, partition = key.partition, error = %e, "map output lost");
                        return Some(ReduceReport::Failed {
                            error: format!("worker {}: {e}", context.worker),
                            retryable: true,
                            lost: Some((e.chunk, e.attempt)),
                        });
                    }
                }
            }
        };
        fetched_bytes += data.len() as u64;
        held += data.len() as u64;
        let by_key = operation.finalizes_by_key();
        let merged = tokio::task::spawn_blocking(move || {
            let corrupt = |e| format!("a corrupt map output: {e}");
            if by_key {
                // Kept in key order, to be merged at the end.
                let segment =
                    fanfold_common::convert::decode_sorted_segment(&data).map_err(corrupt)?;
                sorted.push(segment);
            } else {
                let segment = fanfold_common::convert::decode_segment(&data).map_err(corrupt)?;
                folded.fold(segment).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>((folded, sorted))
        })
        .await;
        (folded, sorted) = match merged {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => return Some(failed(e, false)),
            Err(e) => return Some(failed(e.to_string(), true)),
        };
        if by_key && held > context.memory {
            // Beyond the budget: what is held goes to disk as one sorted run.
            let path = context.spill.root().join(key.job.to_string()).join(format!(
                "reduce-{}-{}-{}.run",
                key.partition,
                key.attempt,
                runs.len()
            ));
            let segments = std::mem::take(&mut sorted);
            let spilled = tokio::task::spawn_blocking(move || {
                let before = runs.bytes;
                runs.spill(path, |put| {
                    let mut error = None;
                    fanfold_common::shuffle::merge_runs(segments, |key, value| {
                        if error.is_none()
                            && let Err(e) = put(key, value)
                        {
                            error = Some(e);
                        }
                        Ok(())
                    })
                    .map_err(|e| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                    })?;
                    error.map_or(Ok(()), Err)
                })?;
                let wrote = runs.bytes - before;
                Ok::<_, std::io::Error>((runs, wrote))
            })
            .await;
            match spilled {
                Ok(Ok((kept, wrote))) => {
                    runs = kept;
                    context.spilled.inc_by(wrote);
                    held = 0;
                }
                // Values that do not merge fail every attempt; a disk that fails may not.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Some(failed(format!("finalize failed: {e}"), false));
                }
                Ok(Err(e)) => return Some(failed(format!("cannot spill a sorted run: {e}"), true)),
                Err(e) => return Some(failed(e.to_string(), true)),
            }
        }
    }
    if !runs.is_empty() {
        let merged = merge_spilled(
            &context,
            key,
            (runs, sorted),
            Arc::clone(&operation),
            (task.sort, task.limit),
            fetched_bytes,
            &stop,
        )
        .await;
        return merged.map(|done| done.unwrap_or_else(|(e, retryable)| failed(e, retryable)));
    }
    let (sort, limit) = (task.sort, task.limit);
    let finalized = tokio::task::spawn_blocking(move || {
        if operation.finalizes_by_key() {
            let (keys, mut rows) = fanfold_common::shuffle::merge_sorted(sorted, sort, limit)?;
            for row in &mut rows {
                row.key = operation.row_key(std::mem::take(&mut row.key));
            }
            Ok(Finalized { keys, rows })
        } else {
            operation.finalize(folded, sort, limit)
        }
    })
    .await;
    let Finalized { keys, rows } = match finalized {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Some(failed(format!("finalize failed: {e}"), false)),
        Err(e) => return Some(failed(format!("finalize failed: {e}"), true)),
    };
    let total = rows.len() as u64;
    let mut rows = rows.into_iter();
    loop {
        let batch: Vec<_> = rows.by_ref().take(ROWS_PER_BATCH).collect();
        if batch.is_empty() {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            return Some(failed(
                "stopped (job cancelled or worker stopping)".into(),
                true,
            ));
        }
        let sent = context
            .reports
            .send(FromWorker::PartRows { key, rows: batch })
            .await;
        if sent.is_err() {
            return None;
        }
    }
    debug!(job_id = %key.job, partition = key.partition, keys, rows = total, fetched_bytes, "partition reduced");
    Some(ReduceReport::Done {
        keys,
        rows: total,
        fetched_bytes,
    })
}

/// Why the end of a spilled task did not finish.
enum Unfinished {
    /// The reports channel closed: the attachment is gone.
    Closed,
    /// The error, and whether another attempt may succeed.
    Failed(String, bool),
}

/// Keys merged between checks of the stop flag.
const STOP_EVERY: u64 = 4096;

/// The end of a task that spilled: its runs and the segments it still holds merged a key at a
/// time, rows settled and sent in batches as they come (key order), or the best `limit` kept
/// as they come and sent at the end (`--sort value`, which a partitioned job only has with a
/// limit). `None` if the reports channel closed.
async fn merge_spilled(
    context: &Context<'_>,
    key: fanfold_common::fleet::ReduceKey,
    (mut runs, held): (crate::runs::Runs, Vec<fanfold_common::shuffle::Segment>),
    operation: Arc<dyn fanfold_common::operation::Operation>,
    (sort, limit): (fanfold_common::partial::SortOrder, Option<u64>),
    fetched_bytes: u64,
    stop: &Arc<AtomicBool>,
) -> Option<Result<ReduceReport, (String, bool)>> {
    use fanfold_common::partial::{Row, SortOrder, key_order};
    let reports = context.reports.clone();
    let stop = Arc::clone(stop);
    let spilled = context.spilled.clone();
    let merged = tokio::task::spawn_blocking(move || {
        let stopped =
            || Unfinished::Failed("stopped (job cancelled or worker stopping)".into(), true);
        let send = |rows: Vec<Row>| {
            if stop.load(Ordering::Relaxed) {
                return Err(stopped());
            }
            reports
                .blocking_send(FromWorker::PartRows { key, rows })
                .map_err(|_| Unfinished::Closed)
        };
        let mut last = Vec::new();
        fanfold_common::shuffle::merge_runs(held, |k, v| {
            last.push((k.to_vec(), v));
            Ok(())
        })
        .map_err(|e| Unfinished::Failed(e.to_string(), false))?;
        let cap = usize::try_from(limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
        let by_value = |a: &Row, b: &Row| {
            b.value
                .cmp_value(&a.value)
                .then_with(|| key_order(&a.key, &b.key))
        };
        let (mut keys, mut sent) = (0u64, 0u64);
        let mut batch: Vec<Row> = Vec::new();
        let mut best: Vec<Row> = Vec::new();
        let mut ending = None;
        let before = runs.bytes;
        let merged = runs.merge(last, |k, v| {
            keys += 1;
            if keys % STOP_EVERY == 0 && stop.load(Ordering::Relaxed) {
                ending = Some(stopped());
                return Err(String::new());
            }
            let row = Row {
                key: k,
                value: v.settle(),
            };
            match sort {
                SortOrder::ValueDesc => {
                    best.push(row);
                    // Only the best `limit` rows can be the part's: drop the rest as we go.
                    if best.len() >= cap.saturating_mul(2).max(ROWS_PER_BATCH) {
                        let nth = cap.min(best.len() - 1);
                        best.select_nth_unstable_by(nth, by_value);
                        best.truncate(cap);
                    }
                }
                SortOrder::Key if (sent as usize).saturating_add(batch.len()) < cap => {
                    batch.push(Row {
                        key: operation.row_key(row.key),
                        value: row.value,
                    })
                }
                SortOrder::Key => {}
            }
            if batch.len() == ROWS_PER_BATCH {
                sent += batch.len() as u64;
                if let Err(e) = send(std::mem::take(&mut batch)) {
                    ending = Some(e);
                    return Err(String::new());
                }
            }
            Ok(())
        });
        // Runs of runs written by merge passes.
        spilled.inc_by(runs.bytes - before);
        if let Some(ending) = ending {
            return Err(ending);
        }
        // A run that cannot be read back is this disk's trouble: another attempt may do.
        merged.map_err(|e| Unfinished::Failed(e, true))?;
        if sort == SortOrder::ValueDesc {
            let (_, rows) = fanfold_common::shuffle::finish(best, sort, limit);
            batch = rows
                .into_iter()
                .map(|row| Row {
                    key: operation.row_key(row.key),
                    value: row.value,
                })
                .collect();
        }
        for rows in batch.chunks(ROWS_PER_BATCH) {
            sent += rows.len() as u64;
            send(rows.to_vec())?;
        }
        Ok((keys, sent, runs.bytes))
    })
    .await;
    match merged {
        Ok(Ok((keys, rows, spilled))) => {
            debug!(job_id = %key.job, partition = key.partition, keys, rows, fetched_bytes,
                spilled, "partition reduced from spilled runs");
            Some(Ok(ReduceReport::Done {
                keys,
                rows,
                fetched_bytes,
            }))
        }
        Ok(Err(Unfinished::Closed)) => None,
        Ok(Err(Unfinished::Failed(e, retryable))) => Some(Err((e, retryable))),
        Err(e) => Some(Err((e.to_string(), true))),
    }
}
