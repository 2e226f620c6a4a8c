//! A partitioned job's reduce stage: where each chunk's map output lives, the reduce tasks
//! (a [`ChunkTable`] of their own, one entry per partition), and the part each finished task
//! left on the coordinator.
//!
//! ```text
//!  map done on W ──> output kept on W ──────────────────────────> (job ends: W drops it)
//!                        │ W leaves, or a reducer cannot fetch it
//!                        └──> lost: the chunk is pending again, its counters taken back
//!  every chunk's output kept ──> reduce tasks run (Pending ─> Running ─> Done with a part)
//! ```
//!
//! Reduce tasks are handed out only while every map output is kept: a task's sources are
//! complete when it starts. A task whose source is lost fails with a typed loss and goes back
//! to the queue without counting as a failure; a part already done stays done (maps are
//! deterministic, so a re-run map's output holds the same rows).

use fanfold_common::fleet::{MapSource, ReduceKey};
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use fanfold_common::location::Location;
use fanfold_common::operation::{BadRecord, ChunkStats};

use super::chunks::{ChunkTable, Failed};
use crate::parts::Part;

/// A map output kept on a worker.
pub struct Kept {
    pub worker: WorkerId,
    pub attempt: Attempt,
    pub address: String,
    pub partition_bytes: Vec<u64>,
    /// The chunk's counters and bad records, taken back if the output is lost.
    pub stats: ChunkStats,
    pub bad: Vec<BadRecord>,
}

pub struct Reduce {
    pub reducers: u32,
    outputs: Vec<Option<Kept>>,
    tasks: ChunkTable,
    parts: Vec<Option<Part>>,
    /// Each partition's bytes over the kept outputs.
    partition_bytes: Vec<u64>,
}

/// What a failed reduce attempt leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum ReduceFailed {
    Stale,
    /// Back in the queue (a lost source, or failures left).
    Retry,
    /// Out of attempts: `issued` were made.
    Exhausted {
        issued: u32,
    },
}

impl Reduce {
    pub fn new(chunks: usize, reducers: u32) -> Self {
        Reduce {
            reducers,
            outputs: (0..chunks).map(|_| None).collect(),
            tasks: ChunkTable::new(reducers as usize),
            parts: vec![None; reducers as usize],
            partition_bytes: vec![0; reducers as usize],
        }
    }

    /// Every map output is kept.
    pub fn maps_kept(&self) -> bool {
        self.outputs.iter().all(Option::is_some)
    }

    pub fn tasks_total(&self) -> u64 {
        self.tasks.len()
    }

    pub fn tasks_done(&self) -> u64 {
        self.tasks.done()
    }

    pub fn tasks_running(&self) -> u64 {
        self.tasks.running()
    }

    /// A reduce task's state, as [`ChunkTable::state_of`] gives a chunk's, and its part's
    /// rows once done.
    pub fn task_state(
        &self,
        partition: u32,
    ) -> (
        &'static str,
        u32,
        Vec<(WorkerId, tokio::time::Instant)>,
        Option<u64>,
    ) {
        let (state, issued, live) = self.tasks.state_of(ChunkId(u64::from(partition)));
        let rows = self.parts[partition as usize].as_ref().map(|p| p.rows);
        (state, issued, live, rows)
    }

    pub fn partition_bytes(&self) -> &[u64] {
        &self.partition_bytes
    }

    pub fn all_done(&self) -> bool {
        self.tasks.done() == self.tasks.len()
    }

    /// A reduce task may be handed out now.
    pub fn has_pending(&self) -> bool {
        self.maps_kept() && self.tasks.has_pending()
    }

    pub fn keep(&mut self, chunk: ChunkId, kept: Kept) -> u64 {
        for (total, bytes) in self.partition_bytes.iter_mut().zip(&kept.partition_bytes) {
            *total += bytes;
        }
        let bytes = kept.partition_bytes.iter().sum();
        self.outputs[chunk.0 as usize] = Some(kept);
        bytes
    }

    /// Forgets a chunk's output if `attempt` (any, if `None`) is the one kept; returns it.
    pub fn lose(&mut self, chunk: ChunkId, attempt: Option<Attempt>) -> Option<Kept> {
        let slot = self.outputs.get_mut(chunk.0 as usize)?;
        if attempt.is_some_and(|a| slot.as_ref().is_none_or(|k| k.attempt != a)) {
            return None;
        }
        let kept = slot.take()?;
        for (total, bytes) in self.partition_bytes.iter_mut().zip(&kept.partition_bytes) {
            *total -= bytes;
        }
        Some(kept)
    }

    /// The chunks whose outputs `worker` keeps, while some reduce task still needs them.
    pub fn kept_on(&self, worker: WorkerId) -> Vec<ChunkId> {
        if self.all_done() {
            return Vec::new();
        }
        self.outputs
            .iter()
            .enumerate()
            .filter(|(_, k)| k.as_ref().is_some_and(|k| k.worker == worker))
            .map(|(i, _)| ChunkId(i as u64))
            .collect()
    }

    /// Every map output, by chunk, for a reduce task (all are kept when one is handed out).
    pub fn sources(&self) -> Vec<MapSource> {
        self.outputs
            .iter()
            .enumerate()
            .filter_map(|(i, k)| {
                k.as_ref().map(|k| MapSource {
                    chunk: ChunkId(i as u64),
                    attempt: k.attempt,
                    address: k.address.clone(),
                })
            })
            .collect()
    }

    pub fn assign_next(&mut self, job: JobId, worker: WorkerId) -> Option<ReduceKey> {
        if !self.maps_kept() {
            return None;
        }
        let (partition, attempt) = self.tasks.assign_next(worker)?;
        Some(ReduceKey {
            job,
            partition: partition.0 as u32,
            attempt,
        })
    }

    pub fn is_live(&self, partition: u32, attempt: Attempt) -> bool {
        self.tasks.is_live(ChunkId(u64::from(partition)), attempt)
    }

    /// Keeps a finished attempt's part; `false` (the part is not used) if it is not live.
    pub fn complete(&mut self, partition: u32, attempt: Attempt, part: Part) -> bool {
        if self
            .tasks
            .complete(ChunkId(u64::from(partition)), attempt)
            .is_none()
        {
            return false;
        }
        self.parts[partition as usize] = Some(part);
        true
    }

    pub fn fail(
        &mut self,
        partition: u32,
        attempt: Attempt,
        retryable: bool,
        max_attempts: u32,
    ) -> ReduceFailed {
        match self.tasks.fail(
            ChunkId(u64::from(partition)),
            attempt,
            retryable,
            max_attempts,
        ) {
            Failed::Stale => ReduceFailed::Stale,
            Failed::OtherAttemptRuns | Failed::Retry => ReduceFailed::Retry,
            Failed::Exhausted { issued } => ReduceFailed::Exhausted { issued },
        }
    }

    /// Drops an attempt whose worker left or whose source was lost: not a failure.
    pub fn release(&mut self, partition: u32, attempt: Attempt) {
        self.tasks.release(ChunkId(u64::from(partition)), attempt);
    }

    /// The parts, in partition order, once every task is done.
    pub fn parts(&self) -> Option<Vec<Part>> {
        self.parts.iter().cloned().collect()
    }

    /// The bad records of the kept outputs, with their files.
    pub fn take_bad(
        &mut self,
        file_of: impl Fn(ChunkId) -> Location,
    ) -> Vec<(Location, BadRecord)> {
        let mut bad = Vec::new();
        for (i, kept) in self.outputs.iter_mut().enumerate() {
            if let Some(kept) = kept
                && !kept.bad.is_empty()
            {
                let location = file_of(ChunkId(i as u64));
                bad.extend(
                    std::mem::take(&mut kept.bad)
                        .into_iter()
                        .map(|b| (location.clone(), b)),
                );
            }
        }
        bad
    }

    /// Nothing more runs (the job is over).
    pub fn stop(&mut self) {
        self.tasks.stop();
    }
}
