//! One job's state: its plan, each chunk's lifecycle, the folded partial and its status.
//!
//! Owned by the scheduler task alone; every method is synchronous and does no I/O, so the
//! exactly-once rules are unit-tested here without sockets.
//!
//! A chunk's lifecycle:
//!
//! ```text
//!            assign                    complete (same attempt)
//! Pending ──────────> Running{attempt} ───────────────────────> Done
//!    ^                  │  fail (retryable, attempts left) / release (worker gone)
//!    └──────────────────┘
//!                       │  fail (not retryable, or out of attempts) ──> the job fails
//! ```

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use fanfold_common::chunker::ChunkRange;
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use fanfold_common::operation::{ChunkStats, Operation};
use fanfold_common::partial::{MergeError, Partial, Row};
use fanfold_common::spec::{Counters, JobSpec, JobState, JobStatus};
use tokio::sync::watch;

/// The chunks of a job, planned at submission, and the operation that finalizes its result.
pub struct Plan {
    pub files: Vec<PathBuf>,
    pub chunks: Vec<ChunkRange>,
    pub operation: Arc<dyn Operation>,
}

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(ChunkRange::len).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Waiting for a worker; `tried` attempts were made so far.
    Pending {
        tried: u32,
    },
    Running {
        worker: WorkerId,
        attempt: Attempt,
    },
    Done,
}

/// What a reported failure leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// Not the chunk's current attempt: ignored.
    Stale,
    /// Back in the queue for another attempt.
    Retry,
    /// The job has failed; the message names the chunk, its attempts and the last error.
    JobFailed,
}

pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    plan: Plan,
    chunks: Vec<ChunkState>,
    pending: VecDeque<ChunkId>,
    folded: Partial,
    state: JobState,
    /// All chunks are folded and the result is being finalized off the scheduler task.
    finalizing: bool,
    chunks_done: u64,
    running: u64,
    bytes_done: u64,
    counters: Counters,
    error: Option<String>,
    submitted_at: SystemTime,
    finished_at: Option<SystemTime>,
    rows: Option<Arc<Vec<Row>>>,
    status: watch::Sender<JobStatus>,
}

impl Job {
    pub fn new(id: JobId, spec: JobSpec, plan: Plan, workers: u32) -> Self {
        let n = plan.chunks.len();
        let job = Job {
            id,
            spec,
            chunks: vec![ChunkState::Pending { tried: 0 }; n],
            pending: (0..n as u64).map(ChunkId).collect(),
            plan,
            folded: Partial::new(),
            state: JobState::Running,
            finalizing: false,
            chunks_done: 0,
            running: 0,
            bytes_done: 0,
            counters: Counters::default(),
            error: None,
            submitted_at: SystemTime::now(),
            finished_at: None,
            rows: None,
            status: watch::Sender::new(placeholder_status(id)),
        };
        job.publish(workers);
        job
    }

    pub fn state(&self) -> JobState {
        self.state
    }

    pub fn is_running(&self) -> bool {
        self.state == JobState::Running
    }

    pub fn has_pending(&self) -> bool {
        self.is_running() && !self.pending.is_empty()
    }

    /// Every chunk is folded and nothing has started the finalize step yet.
    pub fn ready_to_finalize(&self) -> bool {
        self.is_running() && !self.finalizing && self.chunks_done == self.chunks.len() as u64
    }

    pub fn range(&self, chunk: ChunkId) -> (PathBuf, ChunkRange) {
        let range = self.plan.chunks[chunk.0 as usize];
        (self.plan.files[range.file as usize].clone(), range)
    }

    /// Where a chunk comes from, for messages: `path bytes start..end`.
    pub fn describe(&self, chunk: ChunkId) -> String {
        let (path, range) = self.range(chunk);
        format!(
            "chunk {chunk} ({} bytes {}..{})",
            path.display(),
            range.start,
            range.end
        )
    }

    /// Takes the next pending chunk and marks it running on `worker`.
    pub fn assign_next(&mut self, worker: WorkerId) -> Option<(ChunkId, Attempt)> {
        if !self.is_running() {
            return None;
        }
        let chunk = self.pending.pop_front()?;
        let state = &mut self.chunks[chunk.0 as usize];
        let ChunkState::Pending { tried } = *state else {
            unreachable!("queued chunk {chunk} is not pending: {state:?}");
        };
        let attempt = Attempt(tried + 1);
        *state = ChunkState::Running { worker, attempt };
        self.running += 1;
        self.counters.attempts += 1;
        Some((chunk, attempt))
    }

    /// Folds a chunk's partial if `attempt` is its current one; returns whether it was folded.
    /// Any other result (stale attempt, chunk already done, job over) is dropped.
    pub fn complete(
        &mut self,
        chunk: ChunkId,
        attempt: Attempt,
        partial: Partial,
        stats: ChunkStats,
    ) -> Result<bool, MergeError> {
        if !self.is_running() || !self.is_current(chunk, attempt) {
            return Ok(false);
        }
        self.folded.merge(partial)?;
        self.chunks[chunk.0 as usize] = ChunkState::Done;
        self.running -= 1;
        self.chunks_done += 1;
        self.bytes_done += self.plan.chunks[chunk.0 as usize].len();
        self.counters.records_in += stats.records_in;
        self.counters.bytes_in += stats.bytes_in;
        self.counters.bad_records += stats.bad_records;
        for (name, amount) in stats.user {
            *self.counters.user.entry(name).or_default() += amount;
        }
        Ok(true)
    }

    /// Handles a failed attempt: retries it while attempts remain and the error is retryable.
    pub fn fail(
        &mut self,
        chunk: ChunkId,
        attempt: Attempt,
        error: &str,
        retryable: bool,
        max_attempts: u32,
    ) -> FailOutcome {
        if !self.is_running() || !self.is_current(chunk, attempt) {
            return FailOutcome::Stale;
        }
        self.running -= 1;
        self.counters.chunks_failed += 1;
        if retryable && attempt.0 < max_attempts {
            self.chunks[chunk.0 as usize] = ChunkState::Pending { tried: attempt.0 };
            self.pending.push_front(chunk);
            return FailOutcome::Retry;
        }
        let message = format!(
            "{} failed after {} attempt{}: {error}",
            self.describe(chunk),
            attempt.0,
            if attempt.0 == 1 { "" } else { "s" }
        );
        self.finish(JobState::Failed, Some(message));
        FailOutcome::JobFailed
    }

    /// Returns a chunk held by a worker that is gone to the front of the queue.
    pub fn release(&mut self, chunk: ChunkId, attempt: Attempt) {
        if self.is_running() && self.is_current(chunk, attempt) {
            self.chunks[chunk.0 as usize] = ChunkState::Pending { tried: attempt.0 };
            self.pending.push_front(chunk);
            self.running -= 1;
        }
    }

    fn is_current(&self, chunk: ChunkId, attempt: Attempt) -> bool {
        matches!(
            self.chunks.get(chunk.0 as usize),
            Some(ChunkState::Running { attempt: a, .. }) if *a == attempt
        )
    }

    /// Hands the folded partial, and the operation that finalizes it, to the finalize step.
    pub fn take_for_finalize(&mut self) -> (Partial, Arc<dyn Operation>) {
        self.finalizing = true;
        (
            std::mem::take(&mut self.folded),
            Arc::clone(&self.plan.operation),
        )
    }

    /// Keeps the finalized rows and marks the job succeeded.
    pub fn succeed(&mut self, keys: u64, rows: Vec<Row>) {
        if self.is_running() {
            self.counters.keys_out = keys;
            self.rows = Some(Arc::new(rows));
            self.finish(JobState::Succeeded, None);
        }
    }

    pub fn cancel(&mut self) {
        if self.is_running() {
            self.finish(JobState::Cancelled, Some("cancelled by request".into()));
        }
    }

    /// Fails a running job with a message, e.g. when a chunk cannot be read or merged.
    pub fn abort(&mut self, message: String) {
        if self.is_running() {
            self.finish(JobState::Failed, Some(message));
        }
    }

    fn finish(&mut self, state: JobState, error: Option<String>) {
        self.state = state;
        self.error = error;
        self.finished_at = Some(SystemTime::now());
        self.pending.clear();
        self.folded = Partial::new();
        self.running = 0;
    }

    pub fn rows(&self) -> Option<Arc<Vec<Row>>> {
        self.rows.clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<JobStatus> {
        self.status.subscribe()
    }

    pub fn snapshot(&self, workers: u32) -> JobStatus {
        JobStatus {
            id: self.id,
            state: self.state,
            spec: self.spec.clone(),
            chunks_total: self.chunks.len() as u64,
            chunks_done: self.chunks_done,
            chunks_running: self.running,
            bytes_total: self.plan.bytes(),
            bytes_done: self.bytes_done,
            workers,
            counters: self.counters.clone(),
            error: self.error.clone(),
            submitted_at: self.submitted_at,
            finished_at: self.finished_at,
            result_rows: self.rows.as_ref().map_or(0, |r| r.len() as u64),
        }
    }

    /// Sends the current status to watchers, if it changed.
    pub fn publish(&self, workers: u32) {
        let status = self.snapshot(workers);
        self.status.send_if_modified(|old| {
            if *old == status {
                false
            } else {
                *old = status;
                true
            }
        });
    }
}

fn placeholder_status(id: JobId) -> JobStatus {
    JobStatus {
        id,
        state: JobState::Running,
        spec: JobSpec::default(),
        chunks_total: 0,
        chunks_done: 0,
        chunks_running: 0,
        bytes_total: 0,
        bytes_done: 0,
        workers: 0,
        counters: Counters::default(),
        error: None,
        submitted_at: SystemTime::UNIX_EPOCH,
        finished_at: None,
        result_rows: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanfold_common::operation::Registry;
    use fanfold_common::partial::Value;

    fn job(chunks: u64) -> Job {
        let plan = Plan {
            files: vec![PathBuf::from("in.txt")],
            chunks: (0..chunks)
                .map(|i| ChunkRange {
                    file: 0,
                    start: i * 10,
                    end: i * 10 + 10,
                })
                .collect(),
            operation: Registry::builtin()
                .build("wordcount", &Default::default())
                .unwrap(),
        };
        Job::new(JobId::new(), JobSpec::default(), plan, 0)
    }

    fn one(key: &str) -> Partial {
        Partial::from_entries([(key.as_bytes().to_vec(), Value::Count(1))]).unwrap()
    }

    const W1: WorkerId = WorkerId(1);
    const W2: WorkerId = WorkerId(2);

    #[test]
    fn a_chunk_folds_exactly_once_and_stale_attempts_are_dropped() {
        let mut job = job(1);
        let (chunk, first) = job.assign_next(W1).unwrap();
        job.release(chunk, first); // W1 vanished
        let (again, second) = job.assign_next(W2).unwrap();
        assert_eq!((again, second), (chunk, Attempt(2)));
        // W1's late result for attempt 1 must not fold.
        assert!(
            !job.complete(chunk, first, one("late"), ChunkStats::default())
                .unwrap()
        );
        assert!(
            job.complete(chunk, second, one("x"), ChunkStats::default())
                .unwrap()
        );
        // A duplicate of the winning result must not fold either.
        assert!(
            !job.complete(chunk, second, one("x"), ChunkStats::default())
                .unwrap()
        );
        assert!(job.ready_to_finalize());
        let (folded, _) = job.take_for_finalize();
        assert_eq!(folded.get(b"x"), Some(&Value::Count(1)));
        assert_eq!(folded.get(b"late"), None);
    }

    #[test]
    fn failures_retry_until_the_limit_then_name_the_chunk() {
        let mut job = job(2);
        let (chunk, a1) = job.assign_next(W1).unwrap();
        assert_eq!(job.fail(chunk, a1, "boom", true, 2), FailOutcome::Retry);
        let (same, a2) = job.assign_next(W2).unwrap();
        assert_eq!(same, chunk, "a retried chunk goes first");
        assert_eq!(job.fail(chunk, a1, "stale", true, 2), FailOutcome::Stale);
        assert_eq!(
            job.fail(chunk, a2, "boom again", true, 2),
            FailOutcome::JobFailed
        );
        let status = job.snapshot(0);
        assert_eq!(status.state, JobState::Failed);
        assert_eq!(
            status.error.as_deref(),
            Some("chunk 0 (in.txt bytes 0..10) failed after 2 attempts: boom again")
        );
        assert_eq!(status.counters.attempts, 2);
        assert!(
            job.assign_next(W1).is_none(),
            "a failed job hands out nothing"
        );
    }

    #[test]
    fn a_non_retryable_failure_fails_at_once() {
        let mut job = job(1);
        let (chunk, a1) = job.assign_next(W1).unwrap();
        assert_eq!(
            job.fail(chunk, a1, "unknown op", false, 5),
            FailOutcome::JobFailed
        );
    }

    #[test]
    fn a_job_without_chunks_is_ready_at_once() {
        assert!(job(0).ready_to_finalize());
    }
}
