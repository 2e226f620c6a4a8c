//! One job's state: its plan, its chunk table ([`chunks`]), the folded partial, its phase and
//! its status.
//!
//! Owned by the scheduler task alone; every method is synchronous and does no I/O, so the
//! exactly-once rules are unit-tested here without sockets.
//!
//! A job's phase and how it ends are in [`phase`]; a partitioned job's reduce stage in
//! [`reduce`].

mod chunks;
mod phase;
mod reduce;
pub mod timeline;
mod view;

use std::sync::Arc;
use std::time::SystemTime;

use fanfold_common::chunker::ChunkRange;
use fanfold_common::fleet::{ChunkOutput, MapSource, ReduceKey};
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use fanfold_common::location::Location;
use fanfold_common::operation::{BadRecord, ChunkStats, Operation};
use fanfold_common::partial::{Folded, MergeError, Row};
use fanfold_common::spec::{Counters, JobSpec, JobState, JobStatus};
use tokio::sync::watch;
use tokio::time::Instant;

pub use chunks::BackupPolicy;
use chunks::{ChunkTable, Failed};
use phase::Phase;
pub use reduce::ReduceFailed;
use reduce::{Kept, Reduce};
use timeline::{Outcome, Stage, Timeline};
pub use view::{ChunkRow, ReduceRow};

use crate::parts::Part;

/// A finished job's result: rows in memory, or a partitioned job's part files in partition
/// order.
#[derive(Clone, Debug)]
pub enum JobResult {
    Rows(Arc<Vec<Row>>),
    Parts(Arc<Vec<Part>>),
}

impl JobResult {
    pub fn rows(&self) -> u64 {
        match self {
            JobResult::Rows(rows) => rows.len() as u64,
            JobResult::Parts(parts) => parts.iter().map(|p| p.rows).sum(),
        }
    }
}

/// What a worker is handed next.
#[derive(Debug, PartialEq, Eq)]
pub enum Task {
    Map(ChunkId, Attempt),
    Reduce(ReduceKey),
}
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

    /// The workers whose own files the job reads, and each chunk's pool: 0 for a chunk any
    /// worker may run, `k` for one only the worker `owners[k - 1]` may.
    fn pools(&self) -> (Vec<String>, Vec<u32>) {
        let mut owners: Vec<String> = Vec::new();
        let of_file: Vec<u32> = self
            .files
            .iter()
            .map(|file| match file.owner() {
                None => 0,
                Some(name) => match owners.iter().position(|o| o == name) {
                    Some(i) => i as u32 + 1,
                    None => {
                        owners.push(name.to_owned());
                        owners.len() as u32
                    }
                },
            })
            .collect();
        let pools = self
            .chunks
            .iter()
            .map(|c| of_file[c.file as usize])
            .collect();
        (owners, pools)
    }
}

/// What the finalize step works from.
pub struct ToFinalize {
    pub folded: Folded,
    /// A partitioned job's parts, in partition order (then `folded` is empty).
    pub parts: Option<Vec<Part>>,
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
    folded: Folded,
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
    result: Option<JobResult>,
    /// A partitioned job's reduce stage.
    reduce: Option<Reduce>,
    /// Every attempt, for the status page.
    pub timeline: Timeline,
    /// The running chunk the job waits on, noted each scheduler tick ([`Job::note_slowest`]).
    slowest_running: Option<fanfold_common::spec::RunningChunk>,
    status: watch::Sender<JobStatus>,
    /// The workers whose own files it reads: pool `k` of its chunk table is `owners[k - 1]`'s.
    owners: Vec<String>,
    /// Since when each pool's worker, with chunks waiting for it, has been away.
    absent: std::collections::HashMap<u32, Instant>,
}

impl Job {
    pub fn new(id: JobId, spec: JobSpec, plan: Plan, submitted_at: SystemTime) -> Self {
        let n = plan.chunks.len();
        let bytes_total = plan.bytes();
        let reduce = spec.reducers.map(|r| Reduce::new(n, r));
        let (owners, pools) = plan.pools();
        Job {
            reduce,
            id,
            spec,
            chunks: ChunkTable::with_pools(pools),
            owners,
            absent: Default::default(),
            plan,
            folded: Folded::new(),
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
            result: None,
            timeline: Timeline::default(),
            slowest_running: None,
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

    /// When the job ended, once its end is durable (announced); `None` before.
    pub fn ended_at(&self) -> Option<SystemTime> {
        match self.phase {
            Phase::Ended { durable: true, .. } => self.finished_at,
            _ => None,
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
        self.phase == Phase::Mapping
            && (self.chunks.has_pending() || self.reduce.as_ref().is_some_and(Reduce::has_pending))
    }

    /// Every chunk is folded (and, partitioned, every partition reduced) and nothing has
    /// started the finalize step yet.
    pub fn ready_to_finalize(&self) -> bool {
        self.phase == Phase::Mapping
            && self.chunks.done() == self.chunks.len()
            && self.reduce.as_ref().is_none_or(Reduce::all_done)
    }

    /// Partitions of a partitioned job (its maps keep their output on the workers); 0 for a
    /// job folded at the coordinator.
    pub fn reducers(&self) -> u32 {
        self.reduce.as_ref().map_or(0, |r| r.reducers)
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

    /// The chunk pool of the worker named `name`: its own files' chunks, if the job reads any.
    fn pool_of(&self, name: &str) -> Option<u32> {
        self.owners
            .iter()
            .position(|o| o == name)
            .map(|i| i as u32 + 1)
    }

    /// Whether a worker would be given a task; `own` is its name if it offers files of its
    /// own (only such a worker may run a worker file's chunks).
    pub fn has_pending_for(&self, own: Option<&str>) -> bool {
        self.phase == Phase::Mapping
            && (self
                .chunks
                .has_pending_for(own.and_then(|n| self.pool_of(n)))
                || self.reduce.as_ref().is_some_and(Reduce::has_pending))
    }

    /// Whether a worker (`own` as for [`Job::has_pending_for`]) may run `chunk`: it is
    /// nobody's file, or the worker's own.
    pub fn may_run(&self, chunk: ChunkId, own: Option<&str>) -> bool {
        match self.chunks.pool(chunk) {
            0 => true,
            pool => own.and_then(|n| self.pool_of(n)) == Some(pool),
        }
    }

    /// Takes the next pending chunk any worker may run and marks it running on `worker`.
    #[cfg(test)]
    pub fn assign_next(&mut self, worker: WorkerId) -> Option<(ChunkId, Attempt)> {
        self.assign_next_for(worker, None)
    }

    /// Takes the next pending chunk for a worker (`name` as `own` of
    /// [`Job::has_pending_for`]; its own files' first) and marks it running on `worker`.
    fn assign_next_for(
        &mut self,
        worker: WorkerId,
        name: Option<&str>,
    ) -> Option<(ChunkId, Attempt)> {
        if self.phase != Phase::Mapping {
            return None;
        }
        let own = name.and_then(|n| self.pool_of(n));
        let assigned = self.chunks.assign_next_for(worker, own)?;
        self.counters.attempts += 1;
        self.timeline
            .start(Stage::Map, assigned.0.0, assigned.1, worker, false);
        Some(assigned)
    }

    /// Takes the next pending chunk or, once every map output is kept, reduce task, and marks
    /// it running on `worker`.
    pub fn assign_task(&mut self, worker: WorkerId, own: Option<&str>) -> Option<Task> {
        if let Some((chunk, attempt)) = self.assign_next_for(worker, own) {
            return Some(Task::Map(chunk, attempt));
        }
        if self.phase != Phase::Mapping {
            return None;
        }
        let key = self.reduce.as_mut()?.assign_next(self.id, worker)?;
        self.counters.reduce_attempts += 1;
        self.timeline.start(
            Stage::Reduce,
            u64::from(key.partition),
            key.attempt,
            worker,
            false,
        );
        Some(Task::Reduce(key))
    }

    /// Every map output, for a reduce task.
    pub fn sources(&self) -> Vec<MapSource> {
        self.reduce
            .as_ref()
            .map(Reduce::sources)
            .unwrap_or_default()
    }

    /// Keeps a finished reduce attempt's part; `false` if the attempt is stale (its part is
    /// then not used).
    pub fn complete_reduce(&mut self, key: ReduceKey, part: Part) -> bool {
        if self.phase != Phase::Mapping {
            return false;
        }
        let rows = part.rows;
        let kept = self
            .reduce
            .as_mut()
            .is_some_and(|r| r.complete(key.partition, key.attempt, part));
        if kept {
            let task = u64::from(key.partition);
            self.timeline
                .end_with(Stage::Reduce, task, key.attempt, Outcome::Done, rows, None);
        }
        kept
    }

    /// A failed reduce attempt. A lost source (`lost`, if it is the output in use) is mapped
    /// again and the task waits for it without counting a failure; other failures retry
    /// while attempts remain, then fail the job.
    pub fn fail_reduce(
        &mut self,
        key: ReduceKey,
        error: &str,
        retryable: bool,
        lost: Option<(ChunkId, Attempt)>,
        max_attempts: u32,
    ) -> ReduceFailed {
        if self.phase != Phase::Mapping {
            return ReduceFailed::Stale;
        }
        let Some(reduce) = self.reduce.as_mut() else {
            return ReduceFailed::Stale;
        };
        if !reduce.is_live(key.partition, key.attempt) {
            return ReduceFailed::Stale;
        }
        let outcome = if lost.is_some() {
            Outcome::Released
        } else {
            Outcome::Failed
        };
        let task = u64::from(key.partition);
        self.timeline
            .end_with(Stage::Reduce, task, key.attempt, outcome, 0, Some(error));
        if let Some((chunk, attempt)) = lost {
            reduce.release(key.partition, key.attempt);
            self.lose_output(chunk, Some(attempt));
            return ReduceFailed::Retry;
        }
        self.counters.chunks_failed += 1;
        match reduce.fail(key.partition, key.attempt, retryable, max_attempts) {
            ReduceFailed::Exhausted { issued } => {
                let message = format!(
                    "reduce task of partition {} failed after {issued} attempt{}: {error}",
                    key.partition,
                    if issued == 1 { "" } else { "s" }
                );
                self.finish(JobState::Failed, Some(message));
                ReduceFailed::Exhausted { issued }
            }
            other => other,
        }
    }

    /// Drops a reduce attempt whose worker left: not a failure.
    pub fn release_reduce(&mut self, key: ReduceKey) {
        if self.phase == Phase::Mapping
            && let Some(reduce) = self.reduce.as_mut()
            && reduce.is_live(key.partition, key.attempt)
        {
            reduce.release(key.partition, key.attempt);
            let task = u64::from(key.partition);
            self.timeline
                .end(Stage::Reduce, task, key.attempt, Outcome::Released);
        }
    }

    /// `worker` is gone with the map outputs it kept: the chunks still needed are mapped
    /// again. Returns how many.
    pub fn worker_lost(&mut self, worker: WorkerId) -> usize {
        if self.phase != Phase::Mapping {
            return 0;
        }
        let lost = self
            .reduce
            .as_ref()
            .map(|r| r.kept_on(worker))
            .unwrap_or_default();
        for &chunk in &lost {
            self.lose_output(chunk, None);
        }
        lost.len()
    }

    /// Forgets a kept map output (of `attempt`, if given) and puts its chunk back in the
    /// queue, taking back what it counted.
    fn lose_output(&mut self, chunk: ChunkId, attempt: Option<Attempt>) {
        let Some(kept) = self.reduce.as_mut().and_then(|r| r.lose(chunk, attempt)) else {
            return;
        };
        if !self.chunks.undo(chunk) {
            return;
        }
        self.timeline.lost(chunk.0, Some(kept.attempt));
        self.counters.map_outputs_lost += 1;
        self.counters.shuffle_bytes -= kept.partition_bytes.iter().sum::<u64>();
        self.bytes_done -= self.plan.chunks[chunk.0 as usize].len();
        let stats = kept.stats;
        self.counters.records_in -= stats.records_in;
        self.counters.bytes_in -= stats.bytes_in;
        self.counters.bad_records -= stats.bad_records;
        for (name, amount) in stats.user {
            if let Some(total) = self.counters.user.get_mut(&name) {
                *total -= amount;
            }
        }
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

    /// When a live attempt of a chunk started.
    pub fn attempt_started(&self, chunk: ChunkId, attempt: Attempt) -> Option<Instant> {
        self.chunks.started(chunk, attempt)
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
        self.timeline
            .start(Stage::Map, chunk.0, attempt, worker, true);
        Some(attempt)
    }

    /// Folds a chunk's output if `attempt` is one of its live attempts; any other result
    /// (stale attempt, chunk already done, job over) is dropped. With `keep`, the output is
    /// folded by reference and handed back in the completion, for the journal. A partitioned
    /// job's map output is not folded: see [`Job::keep_map_output`].
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
        if self.reduce.is_some() {
            return Err(MergeError {
                left: "partial",
                right: "partitioned job",
            });
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
                ..
            } = output;
            self.folded.fold(partial)?;
            (stats, bad, None)
        };
        self.keep_bad(chunk, bad);
        let records = stats.records_in;
        self.count_folded(chunk, stats);
        let losers = self
            .chunks
            .complete(chunk, attempt)
            .expect("checked live above");
        self.timeline_done(chunk, attempt, records, &losers);
        Ok(Completion::Folded { losers, kept })
    }

    /// Notes a partitioned job's map output as kept on `worker`, at `address`, if `attempt`
    /// is live (else it is dropped like a stale result). It is not journaled: it is lost
    /// with its worker anyway.
    pub fn keep_map_output(
        &mut self,
        chunk: ChunkId,
        attempt: Attempt,
        output: ChunkOutput,
        (worker, address): (WorkerId, &str),
    ) -> Result<Completion, MergeError> {
        if self.phase != Phase::Mapping || !self.chunks.is_live(chunk, attempt) {
            return Ok(Completion::Stale);
        }
        let Some(reduce) = self.reduce.as_mut() else {
            return Err(MergeError {
                left: "partitioned map output",
                right: "job folded at the coordinator",
            });
        };
        let Some(map_output) = output.map_output else {
            return Err(MergeError {
                left: "partial",
                right: "partitioned job",
            });
        };
        let stats = output.stats.clone();
        let bytes = reduce.keep(
            chunk,
            Kept {
                worker,
                attempt,
                address: address.to_owned(),
                partition_bytes: map_output.partition_bytes,
                stats: output.stats,
                bad: output.bad,
            },
        );
        self.counters.shuffle_bytes += bytes;
        let records = stats.records_in;
        self.count_folded(chunk, stats);
        let losers = self
            .chunks
            .complete(chunk, attempt)
            .expect("checked live above");
        self.timeline_done(chunk, attempt, records, &losers);
        Ok(Completion::Folded { losers, kept: None })
    }

    fn timeline_done(
        &mut self,
        chunk: ChunkId,
        attempt: Attempt,
        records: u64,
        losers: &[(WorkerId, Attempt)],
    ) {
        self.timeline
            .end_with(Stage::Map, chunk.0, attempt, Outcome::Done, records, None);
        for &(_, loser) in losers {
            self.timeline
                .end(Stage::Map, chunk.0, loser, Outcome::Superseded);
        }
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
        let failed = self.chunks.fail(chunk, attempt, retryable, max_attempts);
        if failed != Failed::Stale {
            self.timeline.end_with(
                Stage::Map,
                chunk.0,
                attempt,
                Outcome::Failed,
                0,
                Some(error),
            );
        }
        let issued = match failed {
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
        if self.phase == Phase::Mapping && self.chunks.is_live(chunk, attempt) {
            self.chunks.release(chunk, attempt);
            self.timeline
                .end(Stage::Map, chunk.0, attempt, Outcome::Released);
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

    pub fn result(&self) -> Option<JobResult> {
        self.result.clone()
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
            result_rows: self.result.as_ref().map_or(0, JobResult::rows),
            quarantine: self.quarantine.clone(),
            reduces_total: self.reduce.as_ref().map_or(0, Reduce::tasks_total),
            reduces_done: self.reduce.as_ref().map_or(0, Reduce::tasks_done),
            reduces_running: self.reduce.as_ref().map_or(0, Reduce::tasks_running),
            partition_bytes: self
                .reduce
                .as_ref()
                .map(|r| r.partition_bytes().to_vec())
                .unwrap_or_default(),
            slowest_running: self.slowest_running.clone(),
            page_url: None,
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

/// A running job's status with nothing in it yet.
pub(crate) fn placeholder_status(id: JobId) -> JobStatus {
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
        reduces_total: 0,
        reduces_done: 0,
        reduces_running: 0,
        partition_bytes: Vec::new(),
        slowest_running: None,
        page_url: None,
    }
}

#[cfg(test)]
mod tests;
