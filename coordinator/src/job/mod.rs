//! One job's state: its plan, its chunk table ([`chunks`]), the folded partial, its phase and
//! its status.
//!
//! Owned by the scheduler task alone; every method is synchronous and does no I/O, so the
//! exactly-once rules are unit-tested here without sockets.
//!
//! A job's phase and how it ends are in [`phase`].

mod chunks;
mod phase;

use std::sync::Arc;
use std::time::SystemTime;

use fanfold_common::chunker::ChunkRange;
use fanfold_common::fleet::ChunkOutput;
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use fanfold_common::location::Location;
use fanfold_common::operation::{BadRecord, ChunkStats, Operation};
use fanfold_common::partial::{MergeError, Partial, Row};
use fanfold_common::spec::{Counters, JobSpec, JobState, JobStatus};
use tokio::sync::watch;
use tokio::time::Instant;

pub use chunks::BackupPolicy;
use chunks::{ChunkTable, Failed};
use phase::Phase;

/// The chunks of a job, planned at submission, and the operation that finalizes its result.
pub struct Plan {
    pub files: Vec<Location>,
    pub chunks: Vec<ChunkRange>,
    /// `None` for a job restored after a restart whose operation this coordinator no longer
    /// knows: it cannot be finalized.
    pub operation: Option<Arc<dyn Operation>>,
}

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(ChunkRange::len).sum()
    }
}

/// What the finalize step works from.
pub struct ToFinalize {
    pub folded: Partial,
    /// Records skipped as bad, with their files.
    pub bad: Vec<(Location, BadRecord)>,
    pub operation: Option<Arc<dyn Operation>>,
}

/// What a reported failure leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// Not a live attempt of the chunk: ignored.
    Stale,
    /// Another attempt of the chunk is still running; it carries on.
    OtherAttemptRuns,
    /// Back in the queue for another attempt.
    Retry,
    /// The job has failed; the message names the chunk, its attempts and the last error.
    JobFailed,
}

/// What a result report leads to.
#[derive(Debug, PartialEq)]
pub enum Completion {
    /// Folded. `losers` are other live attempts of the chunk, now to be cancelled; `kept` is
    /// the chunk's output when the caller asked to keep it (for the journal).
    Folded {
        losers: Vec<(WorkerId, Attempt)>,
        kept: Option<Box<ChunkOutput>>,
    },
    /// Late, duplicate or for a job that is over: dropped.
    Stale,
}

pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    plan: Plan,
    chunks: ChunkTable,
    folded: Partial,
    phase: Phase,
    bytes_done: u64,
    chunks_checkpointed: u64,
    /// The plan's bytes, summed once: a status is taken after every report, and summing a
    /// plan of a million chunks each time made the scheduler quadratic in the chunk count.
    bytes_total: u64,
    /// Records skipped as bad by folded chunks (skip mode), with their files.
    bad: Vec<(Location, BadRecord)>,
    /// Where those records were written when the job finished.
    quarantine: Option<String>,
    counters: Counters,
    error: Option<String>,
    submitted_at: SystemTime,
    /// When the job (re)started in this process, for its timeout.
    started: Instant,
    finished_at: Option<SystemTime>,
    rows: Option<Arc<Vec<Row>>>,
    status: watch::Sender<JobStatus>,
}

impl Job {
    pub fn new(id: JobId, spec: JobSpec, plan: Plan, submitted_at: SystemTime) -> Self {
        let n = plan.chunks.len();
        let bytes_total = plan.bytes();
        Job {
            id,
            spec,
            chunks: ChunkTable::new(n),
            plan,
            folded: Partial::new(),
            phase: Phase::Mapping,
            bytes_done: 0,
            chunks_checkpointed: 0,
            bytes_total,
            bad: Vec::new(),
            quarantine: None,
            counters: Counters::default(),
            error: None,
            submitted_at,
            started: Instant::now(),
            finished_at: None,
            rows: None,
            status: watch::Sender::new(placeholder_status(id)),
        }
    }

    /// The job's state as decided, announced or not.
    pub fn state(&self) -> JobState {
        match self.phase {
            Phase::Ended { state, .. } => state,
            _ => JobState::Running,
        }
    }

    /// The state clients are told: a final state only once it is durable.
    fn announced(&self) -> JobState {
        match self.phase {
            Phase::Ended {
                state,
                durable: true,
            } => state,
            _ => JobState::Running,
        }
    }

    /// All chunks are folded and the job is on its way to an end, or has ended but the
    /// journal does not hold it yet.
    pub fn is_finishing(&self) -> bool {
        matches!(
            self.phase,
            Phase::Finalizing | Phase::Committing { .. } | Phase::Ended { durable: false, .. }
        )
    }

    pub fn is_running(&self) -> bool {
        !matches!(self.phase, Phase::Ended { .. })
    }

    pub fn has_pending(&self) -> bool {
        self.phase == Phase::Mapping && self.chunks.has_pending()
    }

    /// Every chunk is folded and nothing has started the finalize step yet.
    pub fn ready_to_finalize(&self) -> bool {
        self.phase == Phase::Mapping && self.chunks.done() == self.chunks.len()
    }

    pub fn range(&self, chunk: ChunkId) -> (Location, ChunkRange) {
        let range = self.plan.chunks[chunk.0 as usize];
        (self.plan.files[range.file as usize].clone(), range)
    }

    /// Where a chunk comes from, for messages: `path bytes start..end`.
    pub fn describe(&self, chunk: ChunkId) -> String {
        let (location, range) = self.range(chunk);
        format!(
            "chunk {chunk} ({location} bytes {}..{})",
            range.start, range.end
        )
    }

    /// Takes the next pending chunk and marks it running on `worker`.
    pub fn assign_next(&mut self, worker: WorkerId) -> Option<(ChunkId, Attempt)> {
        if self.phase != Phase::Mapping {
            return None;
        }
        let assigned = self.chunks.assign_next(worker)?;
        self.counters.attempts += 1;
        Some(assigned)
    }

    /// The chunk most overdue for a backup attempt on `worker`, if any: only once nothing is
    /// pending, only chunks with a single live attempt elsewhere, only past the policy's bar.
    #[cfg(test)]
    pub fn straggler(&self, worker: WorkerId, policy: BackupPolicy) -> Option<ChunkId> {
        self.stragglers(policy)
            .into_iter()
            .find(|(_, runner)| *runner != worker)
            .map(|(chunk, _)| chunk)
    }

    /// Every chunk overdue for a backup attempt, most overdue first, with the worker running
    /// it (see [`ChunkTable::stragglers`]).
    pub fn stragglers(&self, policy: BackupPolicy) -> Vec<(ChunkId, WorkerId)> {
        if self.phase != Phase::Mapping {
            return Vec::new();
        }
        self.chunks.stragglers(policy)
    }

    /// Whether this coordinator can finalize the job (it knows its operation).
    pub fn has_operation(&self) -> bool {
        self.plan.operation.is_some()
    }

    /// Whether `attempt` of `chunk` is live: its result or its failure still counts.
    pub fn is_live(&self, chunk: ChunkId, attempt: Attempt) -> bool {
        self.phase == Phase::Mapping && self.chunks.is_live(chunk, attempt)
    }

    /// Starts a backup attempt of a running chunk on `worker`.
    pub fn assign_backup(&mut self, chunk: ChunkId, worker: WorkerId) -> Option<Attempt> {
        if self.phase != Phase::Mapping {
            return None;
        }
        let attempt = self.chunks.assign_backup(chunk, worker)?;
        self.counters.attempts += 1;
        self.counters.backups += 1;
        Some(attempt)
    }

    /// Folds a chunk's output if `attempt` is one of its live attempts; any other result
    /// (stale attempt, chunk already done, job over) is dropped. With `keep`, the output is
    /// folded by reference and handed back in the completion, for the journal.
    pub fn complete(
        &mut self,
        chunk: ChunkId,
        attempt: Attempt,
        output: ChunkOutput,
        keep: bool,
    ) -> Result<Completion, MergeError> {
        if self.phase != Phase::Mapping || !self.chunks.is_live(chunk, attempt) {
            return Ok(Completion::Stale);
        }
        let (stats, bad, kept) = if keep {
            self.folded.fold_ref(&output.partial)?;
            (
                output.stats.clone(),
                output.bad.clone(),
                Some(Box::new(output)),
            )
        } else {
            let ChunkOutput {
                partial,
                stats,
                bad,
            } = output;
            self.folded.fold(partial)?;
            (stats, bad, None)
        };
        self.keep_bad(chunk, bad);
        self.count_folded(chunk, stats);
        let losers = self
            .chunks
            .complete(chunk, attempt)
            .expect("checked live above");
        Ok(Completion::Folded { losers, kept })
    }

    /// Handles a failed attempt: retries the chunk while attempts remain and the error is
    /// retryable, unless another attempt of it is still running.
    pub fn fail(
        &mut self,
        chunk: ChunkId,
        attempt: Attempt,
        error: &str,
        retryable: bool,
        max_attempts: u32,
    ) -> FailOutcome {
        if self.phase != Phase::Mapping {
            return FailOutcome::Stale;
        }
        let issued = match self.chunks.fail(chunk, attempt, retryable, max_attempts) {
            Failed::Stale => return FailOutcome::Stale,
            Failed::OtherAttemptRuns => {
                self.counters.chunks_failed += 1;
                return FailOutcome::OtherAttemptRuns;
            }
            Failed::Retry => {
                self.counters.chunks_failed += 1;
                return FailOutcome::Retry;
            }
            Failed::Exhausted { issued } => issued,
        };
        self.counters.chunks_failed += 1;
        let message = format!(
            "{} failed after {issued} attempt{}: {error}",
            self.describe(chunk),
            if issued == 1 { "" } else { "s" }
        );
        self.finish(JobState::Failed, Some(message));
        FailOutcome::JobFailed
    }

    /// Drops an attempt whose worker is gone or handed it back; with no other attempt left, the
    /// chunk returns to the front of the queue. Not a failure.
    pub fn release(&mut self, chunk: ChunkId, attempt: Attempt) {
        if self.phase == Phase::Mapping {
            self.chunks.release(chunk, attempt);
        }
    }

    /// Marks a chunk folded from a checkpoint taken before a restart.
    pub fn restore_chunk(&mut self, chunk: ChunkId, output: ChunkOutput) -> Result<(), MergeError> {
        if !self.chunks.restore(chunk) {
            return Ok(()); // unknown or already restored: never fold twice
        }
        self.folded.fold(output.partial)?;
        self.keep_bad(chunk, output.bad);
        self.chunks_checkpointed += 1;
        self.count_folded(chunk, output.stats);
        Ok(())
    }

    /// Adds a folded chunk's size and counters to the job's: once per chunk, whatever retried.
    fn count_folded(&mut self, chunk: ChunkId, stats: ChunkStats) {
        self.bytes_done += self.plan.chunks[chunk.0 as usize].len();
        self.counters.records_in += stats.records_in;
        self.counters.bytes_in += stats.bytes_in;
        self.counters.bad_records += stats.bad_records;
        for (name, amount) in stats.user {
            *self.counters.user.entry(name).or_default() += amount;
        }
    }

    fn keep_bad(&mut self, chunk: ChunkId, bad: Vec<BadRecord>) {
        if !bad.is_empty() {
            let (location, _) = self.range(chunk);
            self.bad
                .extend(bad.into_iter().map(|b| (location.clone(), b)));
        }
    }

    /// Counts folded chunks that are now durable.
    pub fn checkpointed(&mut self, chunks: u64) {
        self.chunks_checkpointed += chunks;
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
            state: self.announced(),
            finishing: self.is_finishing(),
            spec: self.spec.clone(),
            chunks_total: self.chunks.len(),
            chunks_done: self.chunks.done(),
            chunks_running: self.chunks.running(),
            chunks_checkpointed: self.chunks_checkpointed,
            bytes_total: self.bytes_total,
            bytes_done: self.bytes_done,
            workers,
            counters: self.counters.clone(),
            error: self.error.clone(),
            submitted_at: self.submitted_at,
            finished_at: self.finished_at,
            result_rows: self.rows.as_ref().map_or(0, |r| r.len() as u64),
            quarantine: self.quarantine.clone(),
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
        finishing: false,
        spec: JobSpec::default(),
        chunks_total: 0,
        chunks_done: 0,
        chunks_running: 0,
        chunks_checkpointed: 0,
        bytes_total: 0,
        bytes_done: 0,
        workers: 0,
        counters: Counters::default(),
        error: None,
        submitted_at: SystemTime::UNIX_EPOCH,
        finished_at: None,
        result_rows: 0,
        quarantine: None,
    }
}

#[cfg(test)]
mod tests;
