//! What the status page and the JSON API show of a job beyond its status: a row per chunk and
//! per reduce task (state, attempts, worker, duration, records), and the straggler it waits on.
//! Worker ids become names through the caller's `name`, which knows the attached workers; a
//! restored timeline knows the names of workers long gone.

use fanfold_common::ids::{ChunkId, WorkerId};
use fanfold_common::spec::RunningChunk;
use serde::Serialize;
use tokio::time::Instant;

use super::Job;
use super::timeline::{Outcome, Span, Stage, now_ms};

/// One chunk, as `/api/v1/jobs/{id}/chunks` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChunkRow {
    pub chunk: u64,
    pub file: String,
    pub start: u64,
    pub end: u64,
    /// `pending`, `running`, `done`, or, once the job has ended, `failed`, `not_run` and
    /// `cancelled`.
    pub state: &'static str,
    /// Attempts made so far.
    pub attempts: u32,
    /// The worker of its latest attempt.
    pub worker: Option<String>,
    /// Its latest attempt's time, or how long it has run so far.
    pub duration_ms: Option<u64>,
    /// Records its folded attempt read.
    pub records: Option<u64>,
}

/// One reduce task of a partitioned job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReduceRow {
    pub partition: u32,
    pub state: &'static str,
    pub attempts: u32,
    pub worker: Option<String>,
    pub duration_ms: Option<u64>,
    /// Map-output bytes of the partition.
    pub bytes: u64,
    /// Rows of its part, once done.
    pub rows: Option<u64>,
}

/// A worker's name: a restored timeline's, else the caller's (attached or departed workers),
/// else its id.
pub type Names<'a> = &'a dyn Fn(WorkerId) -> Option<String>;

impl Job {
    fn name(&self, names: Names, id: u64) -> String {
        self.timeline
            .stored_name(id)
            .map(str::to_owned)
            .or_else(|| names(WorkerId(id)))
            .unwrap_or_else(|| format!("worker {id}"))
    }

    /// The state shown for a task whose table says `state` and whose latest attempt is
    /// `latest`: a job that succeeded did every task (a job restored after a restart has a
    /// fresh table).
    /// A job that failed or was cancelled shows each task as its latest attempt ended (its
    /// table is fresh after a restart, and a task out of attempts stays running in it).
    fn shown_with(&self, state: &'static str, latest: Option<&Span>) -> &'static str {
        if self.is_running() {
            return state;
        }
        if self.state() == fanfold_common::spec::JobState::Succeeded {
            return "done";
        }
        match (latest.map(|s| s.outcome), state) {
            (Some(Outcome::Done | Outcome::Lost), _) | (_, "done") => "done",
            (Some(Outcome::Failed), _) => "failed",
            (_, "pending") => "not_run",
            _ => "cancelled",
        }
    }

    /// `limit` chunks from `offset`, in chunk order.
    pub fn chunk_rows(&self, offset: u64, limit: u64, names: Names) -> Vec<ChunkRow> {
        let end = offset.saturating_add(limit).min(self.chunks.len());
        (offset.min(end)..end)
            .map(|i| self.chunk_row(ChunkId(i), names))
            .collect()
    }

    fn chunk_row(&self, chunk: ChunkId, names: Names) -> ChunkRow {
        let (location, range) = self.range(chunk);
        let (state, issued, live) = self.chunks.state_of(chunk);
        let latest = self.timeline.latest(Stage::Map, chunk.0);
        let (worker, duration_ms) = self.attempt_shown(latest, &live, names);
        ChunkRow {
            chunk: chunk.0,
            file: location.to_string(),
            start: range.start,
            end: range.end,
            state: self.shown_with(state, latest),
            attempts: issued.max(latest.map_or(0, |s| s.attempt)),
            worker,
            duration_ms,
            records: latest
                .filter(|s| matches!(s.outcome, Outcome::Done | Outcome::Lost))
                .map(|s| s.records),
        }
    }

    /// The worker and duration of a task's latest attempt, or of its live one.
    fn attempt_shown(
        &self,
        latest: Option<&Span>,
        live: &[(WorkerId, Instant)],
        names: Names,
    ) -> (Option<String>, Option<u64>) {
        match (latest, live.first()) {
            (Some(span), _) => (
                Some(self.name(names, span.worker)),
                Some(
                    span.end_ms
                        .unwrap_or_else(now_ms)
                        .saturating_sub(span.start_ms),
                ),
            ),
            (None, Some((worker, started))) => (
                Some(self.name(names, worker.0)),
                Some(started.elapsed().as_millis() as u64),
            ),
            (None, None) => (None, None),
        }
    }

    /// Every reduce task of a partitioned job, in partition order.
    pub fn reduce_rows(&self, names: Names) -> Vec<ReduceRow> {
        let Some(reduce) = self.reduce.as_ref() else {
            return Vec::new();
        };
        (0..reduce.reducers)
            .map(|partition| {
                let (state, issued, live, rows) = reduce.task_state(partition);
                let latest = self.timeline.latest(Stage::Reduce, u64::from(partition));
                let (worker, duration_ms) = self.attempt_shown(latest, &live, names);
                ReduceRow {
                    partition,
                    state: self.shown_with(state, latest),
                    attempts: issued.max(latest.map_or(0, |s| s.attempt)),
                    worker,
                    duration_ms,
                    bytes: reduce
                        .partition_bytes()
                        .get(partition as usize)
                        .copied()
                        .unwrap_or(0),
                    rows,
                }
            })
            .collect()
    }

    /// The `n` chunks whose latest attempts took (or have run) longest, longest first.
    pub fn slowest_chunks(&self, n: usize, names: Names) -> Vec<ChunkRow> {
        let now = now_ms();
        let mut longest: Vec<(u64, u64)> = Vec::new();
        for span in self.timeline.spans() {
            if span.stage == Stage::Map {
                let took = span.end_ms.unwrap_or(now).saturating_sub(span.start_ms);
                longest.push((took, span.task));
            }
        }
        longest.sort_unstable_by(|a, b| b.cmp(a));
        let mut seen = std::collections::HashSet::new();
        longest
            .into_iter()
            .filter(|(_, chunk)| seen.insert(*chunk))
            .take(n)
            .map(|(_, chunk)| self.chunk_row(ChunkId(chunk), names))
            .collect()
    }

    /// Notes the running chunk the job waits on, for its status (once nothing is pending).
    pub fn note_slowest(&mut self, names: Names) {
        let slowest = if self.is_running() {
            self.chunks.oldest_running()
        } else {
            None
        };
        let worker_name = slowest.map(|(_, worker, _)| self.name(names, worker.0));
        let unchanged = match (&self.slowest_running, slowest, &worker_name) {
            (Some(known), Some((chunk, _, _)), Some(name)) => {
                known.chunk == chunk.0 && known.worker == *name
            }
            _ => false,
        };
        if unchanged {
            return; // the same straggler: its start stays as first noted
        }
        self.slowest_running = slowest
            .zip(worker_name)
            .map(|((chunk, _, started), worker)| RunningChunk {
                chunk: chunk.0,
                description: self.describe(chunk),
                worker,
                since: std::time::SystemTime::now() - started.elapsed(),
            });
    }
}
