//! A job's chunk table: each chunk's lifecycle, the queue of pending chunks, the live attempts
//! with their workers and start times, and the finished chunks' durations for straggler
//! detection. Owned by its [`super::Job`]; knows nothing of partials, counters or the job's
//! phase, so a second stage (reduce tasks) can have a table of its own beside it.
//!
//! ```text
//!            assign                   complete (a live attempt)
//! Pending ──────────> Running{live} ─────────────────────────> Done   (other live attempts
//!    ^                  │   │ backup: a second live attempt            are the losers)
//!    │                  │   └──────┘
//!    └──────────────────┘ fail (retryable, failures left) / release (worker gone, handed
//!                       │  back), when no other attempt is live
//!                       └─ fail (not retryable, or out of attempts) ──> Exhausted
//!
//! Done ──undo (a partitioned job's map output was lost)──> Pending, at the front
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use fanfold_common::ids::{Attempt, ChunkId, WorkerId};
use tokio::time::Instant;

/// One running attempt of a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Live {
    worker: WorkerId,
    attempt: Attempt,
    started: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Waiting for a worker. `issued` attempts were handed out so far, `failures` of them failed.
    Pending { issued: u32, failures: u32 },
    /// Assigned; usually one live attempt, two while a backup runs.
    Running {
        issued: u32,
        failures: u32,
        live: Vec<Live>,
    },
    /// Finished; `issued` attempts were made, so a chunk done again gets fresh attempt numbers.
    Done { issued: u32 },
}

/// When a running chunk counts as a straggler worth a backup attempt.
#[derive(Clone, Copy, Debug)]
pub struct BackupPolicy {
    /// A chunk must have run at least this long...
    pub min_age: Duration,
    /// ...and this many times the median time of the job's finished chunks.
    pub slowdown: u32,
}

/// What a failed attempt leads to, for the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Failed {
    /// Not a live attempt of the chunk.
    Stale,
    /// Another attempt of the chunk is still running.
    OtherAttemptRuns,
    /// Back in the queue.
    Retry,
    /// No more attempts: `issued` were made.
    Exhausted { issued: u32 },
}

pub struct ChunkTable {
    chunks: Vec<ChunkState>,
    /// Pending chunks by pool: any worker takes pool 0's; pool `k` holds chunks only one
    /// worker may run (its files are its own), the caller knowing whose.
    pending: Vec<VecDeque<ChunkId>>,
    /// Each chunk's pool; empty when every chunk is in pool 0.
    pools: Vec<u32>,
    running: u64,
    done: u64,
    /// How long each finished chunk's winning attempt took.
    durations: Vec<Duration>,
}

impl ChunkTable {
    /// `n` chunks, all pending, in order, any worker's to run.
    pub fn new(n: usize) -> Self {
        Self::with_pools(vec![0; n])
    }

    /// A chunk per entry of `pools`, all pending, in order, each in its pool.
    pub fn with_pools(pools: Vec<u32>) -> Self {
        let count = pools.iter().max().map_or(1, |&p| p as usize + 1);
        let mut pending = vec![VecDeque::new(); count];
        for (i, &pool) in pools.iter().enumerate() {
            pending[pool as usize].push_back(ChunkId(i as u64));
        }
        ChunkTable {
            chunks: vec![
                ChunkState::Pending {
                    issued: 0,
                    failures: 0
                };
                pools.len()
            ],
            pending,
            pools: if count == 1 { Vec::new() } else { pools },
            running: 0,
            done: 0,
            durations: Vec::new(),
        }
    }

    fn pool_of(&self, chunk: ChunkId) -> usize {
        self.pools.get(chunk.0 as usize).map_or(0, |&p| p as usize)
    }

    /// The queue a chunk waits in.
    fn queue_of(&mut self, chunk: ChunkId) -> &mut VecDeque<ChunkId> {
        let pool = self.pool_of(chunk);
        &mut self.pending[pool]
    }

    /// Pools other than 0 with pending chunks: whose worker the job waits for.
    pub fn waiting_pools(&self) -> impl Iterator<Item = u32> + '_ {
        (1..self.pending.len())
            .filter(|&p| !self.pending[p].is_empty())
            .map(|p| p as u32)
    }

    /// Whether a worker of pool `own` (if any) would be given a chunk.
    pub fn has_pending_for(&self, own: Option<u32>) -> bool {
        !self.pending[0].is_empty()
            || own.is_some_and(|p| self.pending.get(p as usize).is_some_and(|q| !q.is_empty()))
    }

    /// The pool a chunk is in.
    pub fn pool(&self, chunk: ChunkId) -> u32 {
        self.pool_of(chunk) as u32
    }

    pub fn len(&self) -> u64 {
        self.chunks.len() as u64
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn running(&self) -> u64 {
        self.running
    }

    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|q| !q.is_empty())
    }

    /// Every chunk counts as done (a job whose result was kept before a restart).
    pub fn all_done(&mut self) {
        self.chunks.fill(ChunkState::Done { issued: 0 });
        self.pending.iter_mut().for_each(VecDeque::clear);
        self.running = 0;
        self.done = self.len();
    }

    /// Nothing more runs or waits (the job is over).
    pub fn stop(&mut self) {
        self.pending.iter_mut().for_each(VecDeque::clear);
        self.durations = Vec::new();
        self.running = 0;
    }

    /// Takes the next pending chunk of pool 0 and marks it running on `worker`.
    pub fn assign_next(&mut self, worker: WorkerId) -> Option<(ChunkId, Attempt)> {
        self.assign_next_for(worker, None)
    }

    /// Takes the next pending chunk for a worker of pool `own` (its own first, then pool
    /// 0's) and marks it running on `worker`.
    pub fn assign_next_for(
        &mut self,
        worker: WorkerId,
        own: Option<u32>,
    ) -> Option<(ChunkId, Attempt)> {
        let own = own.and_then(|p| self.pending.get_mut(p as usize)?.pop_front());
        let chunk = own.or_else(|| self.pending[0].pop_front())?;
        let state = &mut self.chunks[chunk.0 as usize];
        let ChunkState::Pending { issued, failures } = *state else {
            unreachable!("queued chunk {chunk} is not pending: {state:?}");
        };
        let attempt = Attempt(issued + 1);
        *state = ChunkState::Running {
            issued: attempt.0,
            failures,
            live: vec![Live {
                worker,
                attempt,
                started: Instant::now(),
            }],
        };
        self.running += 1;
        Some((chunk, attempt))
    }

    /// Every chunk overdue for a backup attempt, most overdue first, with the worker running
    /// it: only once no chunk any worker may take is pending (chunks waiting for their own
    /// worker do not count), only chunks with a single live attempt, only past the
    /// policy's bar. One pass over the chunks, so the scheduler asks once per tick, not once
    /// per idle worker.
    pub fn stragglers(&self, policy: BackupPolicy) -> Vec<(ChunkId, WorkerId)> {
        // Chunks waiting for their own worker do not hold back backups of the rest.
        if !self.pending[0].is_empty() || self.running == 0 || self.durations.is_empty() {
            return Vec::new();
        }
        let mut durations = self.durations.clone();
        let middle = durations.len() / 2;
        let median = *durations.select_nth_unstable(middle).1;
        let bar = policy.min_age.max(median * policy.slowdown);
        let mut found: Vec<(Duration, ChunkId, WorkerId)> = self
            .chunks
            .iter()
            .enumerate()
            .filter_map(|(i, state)| match state {
                ChunkState::Running { live, .. } if live.len() == 1 => {
                    let age = live[0].started.elapsed();
                    (age >= bar).then_some((age, ChunkId(i as u64), live[0].worker))
                }
                _ => None,
            })
            .collect();
        found.sort_unstable_by(|a, b| b.cmp(a));
        found
            .into_iter()
            .map(|(_, chunk, worker)| (chunk, worker))
            .collect()
    }

    /// Starts a backup attempt of a running chunk on `worker`.
    pub fn assign_backup(&mut self, chunk: ChunkId, worker: WorkerId) -> Option<Attempt> {
        let ChunkState::Running { issued, live, .. } = &mut self.chunks[chunk.0 as usize] else {
            return None;
        };
        *issued += 1;
        let attempt = Attempt(*issued);
        live.push(Live {
            worker,
            attempt,
            started: Instant::now(),
        });
        Some(attempt)
    }

    /// Whether `attempt` is a live attempt of `chunk`.
    pub fn is_live(&self, chunk: ChunkId, attempt: Attempt) -> bool {
        self.live(chunk, attempt).is_some()
    }

    /// Marks a chunk done by its live `attempt`; returns the other live attempts (the losers,
    /// to cancel), or `None` if `attempt` is not live.
    pub fn complete(
        &mut self,
        chunk: ChunkId,
        attempt: Attempt,
    ) -> Option<Vec<(WorkerId, Attempt)>> {
        let started = self.live(chunk, attempt)?.started;
        let state = &mut self.chunks[chunk.0 as usize];
        let issued = match state {
            ChunkState::Running { issued, .. } => *issued,
            _ => 0,
        };
        let ChunkState::Running { live, .. } =
            std::mem::replace(state, ChunkState::Done { issued })
        else {
            unreachable!("a live attempt belongs to a running chunk");
        };
        self.durations.push(started.elapsed());
        self.running -= 1;
        self.done += 1;
        Some(
            live.into_iter()
                .filter(|l| l.attempt != attempt)
                .map(|l| (l.worker, l.attempt))
                .collect(),
        )
    }

    /// A failed attempt: retried while attempts remain and the error is retryable, unless
    /// another attempt of it still runs.
    pub fn fail(
        &mut self,
        chunk: ChunkId,
        attempt: Attempt,
        retryable: bool,
        max_attempts: u32,
    ) -> Failed {
        let Some((issued, failures, others_run)) = self.end_attempt(chunk, attempt, true) else {
            return Failed::Stale;
        };
        if others_run && retryable {
            return Failed::OtherAttemptRuns;
        }
        if retryable && failures < max_attempts {
            self.requeue(chunk, issued, failures);
            return Failed::Retry;
        }
        Failed::Exhausted { issued }
    }

    /// Drops an attempt whose worker is gone or handed it back; with no other attempt left, the
    /// chunk returns to the front of the queue. Not a failure.
    pub fn release(&mut self, chunk: ChunkId, attempt: Attempt) {
        if let Some((issued, failures, false)) = self.end_attempt(chunk, attempt, false) {
            self.requeue(chunk, issued, failures);
        }
    }

    /// A done chunk is to be done again (its map output was lost with its worker): pending at
    /// the front of the queue, its failures forgotten. `false` if it was not done.
    pub fn undo(&mut self, chunk: ChunkId) -> bool {
        let Some(state) = self.chunks.get_mut(chunk.0 as usize) else {
            return false;
        };
        let ChunkState::Done { issued } = *state else {
            return false;
        };
        *state = ChunkState::Pending {
            issued,
            failures: 0,
        };
        self.queue_of(chunk).push_front(chunk);
        self.done -= 1;
        true
    }

    /// Marks a pending chunk done (restored from a checkpoint); `false` if it is unknown or
    /// not pending, so a chunk is never restored twice.
    pub fn restore(&mut self, chunk: ChunkId) -> bool {
        let Some(state @ ChunkState::Pending { .. }) = self.chunks.get_mut(chunk.0 as usize) else {
            return false;
        };
        *state = ChunkState::Done { issued: 0 };
        self.queue_of(chunk).retain(|c| *c != chunk);
        self.done += 1;
        true
    }

    /// Removes a live attempt, counting it as a failure if `failed`. Returns the chunk's issued
    /// attempts, its failures, and whether another attempt still runs; `None` if the attempt
    /// is not live.
    fn end_attempt(
        &mut self,
        chunk: ChunkId,
        attempt: Attempt,
        failed: bool,
    ) -> Option<(u32, u32, bool)> {
        self.live(chunk, attempt)?;
        let ChunkState::Running {
            issued,
            failures,
            live,
        } = &mut self.chunks[chunk.0 as usize]
        else {
            unreachable!("a live attempt belongs to a running chunk");
        };
        *failures += u32::from(failed);
        live.retain(|l| l.attempt != attempt);
        Some((*issued, *failures, !live.is_empty()))
    }

    /// Puts a chunk with no live attempt back at the front of the queue.
    fn requeue(&mut self, chunk: ChunkId, issued: u32, failures: u32) {
        self.chunks[chunk.0 as usize] = ChunkState::Pending { issued, failures };
        self.queue_of(chunk).push_front(chunk);
        self.running -= 1;
    }

    /// A chunk's state for the status page: its name, the attempts issued, and its live
    /// attempts' workers with their start.
    pub fn state_of(&self, chunk: ChunkId) -> (&'static str, u32, Vec<(WorkerId, Instant)>) {
        match self.chunks.get(chunk.0 as usize) {
            Some(ChunkState::Pending { issued, .. }) => ("pending", *issued, Vec::new()),
            Some(ChunkState::Running { issued, live, .. }) => (
                "running",
                *issued,
                live.iter().map(|l| (l.worker, l.started)).collect(),
            ),
            Some(ChunkState::Done { issued }) => ("done", *issued, Vec::new()),
            None => ("unknown", 0, Vec::new()),
        }
    }

    /// The running attempt that started first, once nothing is pending: what the job waits
    /// on. One pass over the chunks, asked once per scheduler tick.
    pub fn oldest_running(&self) -> Option<(ChunkId, WorkerId, Instant)> {
        if self.has_pending() || self.running == 0 {
            return None;
        }
        self.chunks
            .iter()
            .enumerate()
            .filter_map(|(i, state)| match state {
                ChunkState::Running { live, .. } => live
                    .iter()
                    .min_by_key(|l| l.started)
                    .map(|l| (ChunkId(i as u64), l.worker, l.started)),
                _ => None,
            })
            .min_by_key(|(_, _, started)| *started)
    }

    /// When a live attempt started.
    pub fn started(&self, chunk: ChunkId, attempt: Attempt) -> Option<Instant> {
        self.live(chunk, attempt).map(|l| l.started)
    }

    fn live(&self, chunk: ChunkId, attempt: Attempt) -> Option<&Live> {
        match self.chunks.get(chunk.0 as usize) {
            Some(ChunkState::Running { live, .. }) => live.iter().find(|l| l.attempt == attempt),
            _ => None,
        }
    }
}
