//! Durable coordinator state in an embedded database (redb) in the state directory, and the
//! journal task that writes it.
//!
//! What is kept: each job's spec and plan (once, at submission), its progress (state, error,
//! counters; rewritten at every checkpoint), each folded chunk's partial result until the job
//! ends, and a finished job's result rows and timeline (its attempts, JSON as the HTTP API
//! serves it, for the status page after a restart). The scheduler hands the journal batches of [`Op`]s in
//! the order it made its decisions; the journal commits whatever has queued up in one
//! transaction, so checkpoints come as fast as the disk allows and a chunk's partial is durable
//! together with the counters that include it. After a crash, [`Store::load`] gives back every
//! job: checkpointed chunks are folded again from their stored partials and not recomputed.
//!
//! Over 500 lines because the write side (`apply`) and the read side (`load`) of each table
//! must be read together: splitting them would put a record's two halves in two files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fanfold_common::chunker::ChunkRange;
use fanfold_common::fleet::ChunkOutput;
use fanfold_common::ids::{ChunkId, JobId};
use fanfold_common::location::Location;
use fanfold_common::partial::{ChunkPartial, Row};
use fanfold_common::spec::{Counters, JobSpec, JobState};
use fanfold_proto::store::v1 as record;
use fanfold_proto::v1 as pb;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, mpsc};
use tokio_util::task::TaskTracker;
use tracing::error;

use crate::job::timeline::TimelineRecord;
use crate::parts::Part;

const PLANS: TableDefinition<&str, &[u8]> = TableDefinition::new("job_plans");
const PROGRESS: TableDefinition<&str, &[u8]> = TableDefinition::new("job_progress");
const CHUNKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("chunk_results");
const RESULTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("result_batches");
const TIMELINES: TableDefinition<&str, &[u8]> = TableDefinition::new("timelines");

/// redb's page cache. Its default (1 GiB) lets the coordinator's memory grow with every
/// checkpointed chunk result until the job ends; the journal only appends and the store is
/// read back only at startup, so a small cache costs nothing measurable.
const CACHE_BYTES: usize = 4 << 20;

/// Rows per stored result batch.
const ROWS_PER_BATCH: usize = 4096;

/// The state database could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database {path} is in use by another coordinator")]
    InUse { path: PathBuf },
    #[error("state database: {0}")]
    Database(String),
    #[error("state database holds a malformed record: {0}")]
    Corrupt(String),
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Database(e.to_string())
}

fn corrupt<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// One change to durable state.
#[derive(Debug)]
pub enum Op {
    Submitted {
        job: JobId,
        spec: JobSpec,
        files: Vec<Location>,
        chunks: Vec<ChunkRange>,
        submitted_at: SystemTime,
    },
    /// A chunk's result was folded; kept (as a [`record::ChunkResult`]) until its job ends.
    ChunkFolded {
        job: JobId,
        chunk: ChunkId,
        output: ChunkOutput,
    },
    Progress {
        job: JobId,
        state: JobState,
        error: Option<String>,
        counters: Counters,
        finished_at: Option<SystemTime>,
        result_rows: u64,
        quarantine: Option<String>,
        /// The result rows are kept (see [`Op::Rows`]) while the job is still running.
        rows_kept: bool,
        /// A partitioned job's kept result: its part files.
        parts: Vec<Part>,
    },
    /// A job's finalized rows, kept before its output directory and success are committed;
    /// acknowledged through [`Checkpoints`] once durable.
    Rows { job: JobId, rows: Arc<Vec<Row>> },
    /// A finished job's attempts, for its status page after a restart.
    Timeline { job: JobId, record: TimelineRecord },
    /// The job ended: drop its chunk results, and its kept rows unless it `succeeded`.
    /// Acknowledged through [`Checkpoints`] once durable.
    Finished { job: JobId, succeeded: bool },
    /// The job's retention ran out: drop everything kept of it.
    Forget { job: JobId },
}

/// A step of a job's end that the journal has made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durable {
    /// Its rows ([`Op::Rows`]).
    Rows,
    /// Its end ([`Op::Finished`]).
    Ended,
}

/// What one commit made durable.
#[derive(Debug, Default)]
pub struct Applied {
    /// Folded chunks per job.
    pub folded: HashMap<JobId, u64>,
    /// Steps of jobs' ends, in the order they were journaled.
    pub durable: Vec<(JobId, Durable)>,
}

impl Op {
    /// The step of a job's end it makes durable, if any.
    fn durable(&self) -> Option<(JobId, Durable)> {
        match self {
            Op::Rows { job, .. } => Some((*job, Durable::Rows)),
            Op::Finished { job, .. } => Some((*job, Durable::Ended)),
            _ => None,
        }
    }

    /// About the bytes of chunk results it writes.
    fn bytes(&self) -> usize {
        match self {
            Op::ChunkFolded { output, .. } => {
                let counts = &output.partial.counts;
                counts.key_bytes() + 12 * counts.len() + 48 * output.partial.entries.len()
            }
            _ => 0,
        }
    }
}

/// A folded chunk's output as its stored record.
fn chunk_record(output: ChunkOutput) -> Vec<u8> {
    record::ChunkResult {
        partial: Some(output.partial.into()),
        counters: Some(output.stats.into()),
        bad_records: output.bad.into_iter().map(Into::into).collect(),
    }
    .encode_to_vec()
}

/// A job as it was at the last checkpoint.
pub struct Restored {
    pub job: JobId,
    pub spec: JobSpec,
    pub files: Vec<Location>,
    pub chunks_planned: Vec<ChunkRange>,
    pub submitted_at: SystemTime,
    pub state: JobState,
    pub error: Option<String>,
    pub counters: Counters,
    pub finished_at: Option<SystemTime>,
    pub chunks: Vec<(ChunkId, ChunkOutput)>,
    pub quarantine: Option<String>,
    pub rows: Option<Vec<Row>>,
    /// A partitioned job's kept result, instead of rows.
    pub parts: Option<Vec<Part>>,
    /// A finished job's attempts.
    pub timeline: Option<TimelineRecord>,
}

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) `fanfold.redb` in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("fanfold.redb");
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::InUse { path: path.clone() }
                }
                redb::DatabaseError::Storage(redb::StorageError::Io(source)) => {
                    StoreError::Directory {
                        path: path.clone(),
                        source,
                    }
                }
                other => db(other),
            })?;
        Store::with(db)
    }

    /// A store that lives only as long as the process, for tests of the journal.
    #[cfg(test)]
    pub fn in_memory() -> Result<Store, StoreError> {
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db)?;
        Store::with(db)
    }

    fn with(database: Database) -> Result<Store, StoreError> {
        let txn = database.begin_write().map_err(db)?;
        for table in [PLANS, PROGRESS, TIMELINES] {
            txn.open_table(table).map_err(db)?;
        }
        for table in [CHUNKS, RESULTS] {
            txn.open_table(table).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(Store {
            db: Arc::new(database),
        })
    }

    /// Applies `ops` in order, in one durable transaction.
    /// Returns the chunks folded per job it made durable.
    pub fn apply(&self, ops: Vec<Op>) -> Result<HashMap<JobId, u64>, StoreError> {
        let mut folded: HashMap<JobId, u64> = HashMap::new();
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut plans = txn.open_table(PLANS).map_err(db)?;
            let mut progress = txn.open_table(PROGRESS).map_err(db)?;
            let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
            let mut results = txn.open_table(RESULTS).map_err(db)?;
            let mut timelines = txn.open_table(TIMELINES).map_err(db)?;
            for op in ops {
                match op {
                    Op::Submitted {
                        job,
                        spec,
                        files,
                        chunks: ranges,
                        submitted_at,
                    } => {
                        let plan = record::JobPlan {
                            spec: Some((&spec).into()),
                            files: files.iter().map(Location::encoded).collect(),
                            chunks: ranges
                                .iter()
                                .flat_map(|r| [u64::from(r.file), r.start, r.end])
                                .collect(),
                            headers: match ranges.iter().any(|r| r.header > 0) {
                                true => ranges.iter().map(|r| r.header).collect(),
                                false => Vec::new(),
                            },
                            submitted_at: Some(submitted_at.into()),
                        };
                        let id = job.to_string();
                        plans
                            .insert(id.as_str(), plan.encode_to_vec().as_slice())
                            .map_err(db)?;
                    }
                    Op::ChunkFolded { job, chunk, output } => {
                        let id = job.to_string();
                        chunks
                            .insert((id.as_str(), chunk.0), chunk_record(output).as_slice())
                            .map_err(db)?;
                        *folded.entry(job).or_default() += 1;
                    }
                    Op::Progress {
                        job,
                        state,
                        error,
                        counters,
                        finished_at,
                        result_rows,
                        quarantine,
                        rows_kept,
                        parts,
                    } => {
                        let value = record::JobProgress {
                            rows_kept,
                            parts: parts
                                .into_iter()
                                .map(|p| record::PartFile {
                                    path: p.path.display().to_string(),
                                    rows: p.rows,
                                    keys: p.keys,
                                })
                                .collect(),
                            state: pb::JobState::from(state) as i32,
                            error: error.unwrap_or_default(),
                            counters: Some(counters.into()),
                            finished_at: finished_at.map(Into::into),
                            result_rows,
                            quarantine: quarantine.unwrap_or_default(),
                        };
                        let id = job.to_string();
                        progress
                            .insert(id.as_str(), value.encode_to_vec().as_slice())
                            .map_err(db)?;
                    }
                    Op::Timeline { job, record } => {
                        let json = serde_json::to_vec(&record).map_err(db)?;
                        timelines
                            .insert(job.to_string().as_str(), json.as_slice())
                            .map_err(db)?;
                    }
                    Op::Finished { job, succeeded } => {
                        let id = job.to_string();
                        let id = id.as_str();
                        chunks
                            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                            .map_err(db)?;
                        if !succeeded {
                            results
                                .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                                .map_err(db)?;
                        }
                    }
                    Op::Forget { job } => {
                        let id = job.to_string();
                        let id = id.as_str();
                        plans.remove(id).map_err(db)?;
                        progress.remove(id).map_err(db)?;
                        timelines.remove(id).map_err(db)?;
                        chunks
                            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                            .map_err(db)?;
                        results
                            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                            .map_err(db)?;
                    }
                    Op::Rows { job, rows } => {
                        let id = job.to_string();
                        let id = id.as_str();
                        // A job finalized again after a restart replaces what it kept before.
                        results
                            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                            .map_err(db)?;
                        for (i, batch) in rows.chunks(ROWS_PER_BATCH).enumerate() {
                            let batch = pb::ResultBatch {
                                rows: batch.iter().cloned().map(Into::into).collect(),
                            };
                            results
                                .insert((id, i as u64), batch.encode_to_vec().as_slice())
                                .map_err(db)?;
                        }
                    }
                }
            }
        }
        txn.commit().map_err(db)?;
        Ok(folded)
    }

    /// Every job kept, as of the last checkpoint, oldest first.
    pub fn load(&self) -> Result<Vec<Restored>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let plans = txn.open_table(PLANS).map_err(db)?;
        let progress = txn.open_table(PROGRESS).map_err(db)?;
        let chunks = txn.open_table(CHUNKS).map_err(db)?;
        let results = txn.open_table(RESULTS).map_err(db)?;
        let timelines = txn.open_table(TIMELINES).map_err(db)?;
        let mut jobs = Vec::new();
        for entry in plans.iter().map_err(db)? {
            let (key, value) = entry.map_err(db)?;
            let id = key.value().to_owned();
            let job: JobId = id.parse().map_err(corrupt)?;
            let plan = record::JobPlan::decode(value.value()).map_err(corrupt)?;
            let spec: JobSpec = plan
                .spec
                .ok_or_else(|| corrupt("job plan without spec"))?
                .try_into()
                .map_err(corrupt)?;
            let ranges = plan
                .chunks
                .chunks_exact(3)
                .enumerate()
                .map(|(i, t)| {
                    Ok(ChunkRange {
                        file: u32::try_from(t[0]).map_err(corrupt)?,
                        start: t[1],
                        end: t[2],
                        header: plan.headers.get(i).copied().unwrap_or(0),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let submitted_at = plan
                .submitted_at
                .map(SystemTime::try_from)
                .transpose()
                .map_err(corrupt)?
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let state = match progress.get(id.as_str()).map_err(db)? {
                Some(v) => record::JobProgress::decode(v.value()).map_err(corrupt)?,
                None => record::JobProgress::default(),
            };
            let job_state = match pb::JobState::try_from(state.state) {
                Ok(pb::JobState::Succeeded) => JobState::Succeeded,
                Ok(pb::JobState::Failed) => JobState::Failed,
                Ok(pb::JobState::Cancelled) => JobState::Cancelled,
                _ => JobState::Running,
            };
            let mut restored_chunks = Vec::new();
            if job_state == JobState::Running && !state.rows_kept {
                for entry in chunks
                    .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                    .map_err(db)?
                {
                    let (key, value) = entry.map_err(db)?;
                    let result = record::ChunkResult::decode(value.value()).map_err(corrupt)?;
                    let partial: ChunkPartial = result
                        .partial
                        .unwrap_or_default()
                        .try_into()
                        .map_err(corrupt)?;
                    let output = ChunkOutput {
                        partial,
                        stats: result.counters.unwrap_or_default().into(),
                        bad: result.bad_records.into_iter().map(Into::into).collect(),
                        map_output: None,
                    };
                    restored_chunks.push((ChunkId(key.value().1), output));
                }
            }
            let rows = if job_state == JobState::Succeeded || state.rows_kept {
                let mut rows = Vec::new();
                for entry in results
                    .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                    .map_err(db)?
                {
                    let (_, value) = entry.map_err(db)?;
                    let batch = pb::ResultBatch::decode(value.value()).map_err(corrupt)?;
                    for entry in batch.rows {
                        rows.push(Row::try_from(entry).map_err(corrupt)?);
                    }
                }
                Some(rows)
            } else {
                None
            };
            // Only the pages read a timeline: one that cannot be read is dropped, not fatal.
            let timeline = match timelines.get(id.as_str()).map_err(db)? {
                Some(v) => match serde_json::from_slice(v.value()) {
                    Ok(timeline) => Some(timeline),
                    Err(e) => {
                        tracing::warn!(job_id = %job, error = %e, "dropped an unreadable timeline");
                        None
                    }
                },
                None => None,
            };
            jobs.push(Restored {
                timeline,
                job,
                spec,
                files: plan
                    .files
                    .iter()
                    .map(|f| Location::parse(f).map_err(corrupt))
                    .collect::<Result<_, _>>()?,
                chunks_planned: ranges,
                submitted_at,
                state: job_state,
                error: (!state.error.is_empty()).then_some(state.error),
                counters: state.counters.unwrap_or_default().into(),
                finished_at: state
                    .finished_at
                    .map(SystemTime::try_from)
                    .transpose()
                    .map_err(corrupt)?,
                chunks: restored_chunks,
                quarantine: (!state.quarantine.is_empty()).then_some(state.quarantine),
                rows,
                parts: (!state.parts.is_empty()).then(|| {
                    state
                        .parts
                        .iter()
                        .map(|p| Part {
                            path: PathBuf::from(&p.path),
                            rows: p.rows,
                            keys: p.keys,
                        })
                        .collect()
                }),
            });
        }
        jobs.sort_by_key(|j| j.submitted_at);
        Ok(jobs)
    }
}

/// What the journal made durable since the scheduler last looked.
#[derive(Clone, Default)]
pub struct Checkpoints {
    committed: Arc<Mutex<Applied>>,
    pub notify: Arc<Notify>,
}

impl Checkpoints {
    /// Takes what was gathered so far.
    pub fn take(&self) -> Applied {
        std::mem::take(&mut *self.committed.lock().expect("checkpoints"))
    }

    fn add(&self, applied: Applied) {
        let mut committed = self.committed.lock().expect("checkpoints");
        for (job, n) in applied.folded {
            *committed.folded.entry(job).or_default() += n;
        }
        committed.durable.extend(applied.durable);
        drop(committed);
        self.notify.notify_one();
    }
}

/// Chunk records per commit, at most. redb keeps a transaction's new pages in memory until it
/// commits, so committing everything queued made memory grow with how far the journal had
/// fallen behind, which grew with the input.
const COMMIT_BYTES: usize = 4 << 20;

/// Starts the journal task: it commits queued batches of ops together and reports what became
/// durable through `checkpoints`. It ends, after writing everything queued, when every sender
/// is dropped.
pub fn spawn_journal(
    store: Store,
    tasks: &TaskTracker,
    checkpoints: Checkpoints,
    commit_seconds: prometheus_client::metrics::histogram::Histogram,
) -> mpsc::Sender<Vec<Op>> {
    let (tx, mut rx) = mpsc::channel::<Vec<Op>>(64);
    tasks.spawn(async move {
        while let Some(mut ops) = rx.recv().await {
            // Whatever queued while the last commit ran goes into this one, up to a bound.
            let mut bytes: usize = ops.iter().map(Op::bytes).sum();
            while bytes < COMMIT_BYTES && ops.len() <= 4096 {
                let Ok(more) = rx.try_recv() else { break };
                bytes += more.iter().map(Op::bytes).sum::<usize>();
                ops.extend(more);
            }
            // Steps of jobs' ends are acknowledged even when the commit failed: the state is
            // then not durable (and said so), but the jobs still end rather than hang.
            let durable = ops.iter().filter_map(Op::durable).collect();
            let store = store.clone();
            let committing = std::time::Instant::now();
            let applied = tokio::task::spawn_blocking(move || store.apply(ops)).await;
            commit_seconds.observe(committing.elapsed().as_secs_f64());
            let folded = match applied {
                Ok(Ok(folded)) => folded,
                Ok(Err(e)) => {
                    error!(error = %e, "checkpoint failed; state is not durable");
                    HashMap::new()
                }
                Err(e) => {
                    error!(error = %e, "checkpoint task failed");
                    HashMap::new()
                }
            };
            checkpoints.add(Applied { folded, durable });
        }
    });
    tx
}
