//! A job's phase, and the moves that end it.
//!
//! ```text
//!          all chunks folded          rows computed             output committed,
//! Mapping ─────────────────> Finalizing ──────────> Committing ──────────────────> Ended
//!    │                           │                      │        success journaled   ▲
//!    └───────────────────────────┴──────────────────────┴── fail, cancel, timeout ───┘
//! ```
//!
//! A job ends first internally (no more work, reports are stale) and is *announced* only once
//! the journal holds the end ([`Job::end_durable`]): until then its status says `running`,
//! finishing. So a client that heard a job succeed (or fail) hears the same after a crash.
//! A success is journaled only after the rows are durable and the output directory committed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use fanfold_common::partial::Folded;
use fanfold_common::spec::{Counters, JobState};
use tokio::time::Instant;

use super::{Job, JobResult, ToFinalize};

/// Where a job is in its life; see the module's diagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Chunks are mapped and folded (a partitioned job's map outputs kept on the workers and
    /// its partitions reduced there: see `super::reduce`).
    Mapping,
    /// Every chunk is folded; the result is being finalized off the scheduler task.
    Finalizing,
    /// The rows are known (in `Job::result`): they are being made durable, then the output
    /// directory is committed, then the success journaled.
    Committing { keys: u64, rows_durable: bool },
    /// Over. `durable` once the journal holds the end (or there is no journal); only then is
    /// the end announced.
    Ended { state: JobState, durable: bool },
}

impl Job {
    /// Restores what a checkpoint said of a job beyond its chunks. A running job whose rows
    /// were kept (`rows` given) had folded every chunk: it resumes committing them.
    pub fn restore_progress(
        &mut self,
        state: JobState,
        error: Option<String>,
        counters: Counters,
        finished_at: Option<SystemTime>,
        rows: Option<JobResult>,
        quarantine: Option<String>,
    ) {
        if !state.is_final()
            && let Some(rows) = rows
        {
            if let Some(reduce) = self.reduce.as_mut() {
                reduce.stop();
            }
            self.counters = counters;
            self.chunks.all_done();
            self.chunks_checkpointed = self.chunks.len();
            self.bytes_done = self.bytes_total;
            self.folded = Folded::new();
            self.quarantine = quarantine;
            self.result = Some(rows);
            self.phase = Phase::Committing {
                keys: self.counters.keys_out,
                rows_durable: true,
            };
        } else if !state.is_final() {
            // Input counters come from the restored chunks (a partitioned job's map outputs
            // are not restored: its shuffle starts again); the rest from the checkpoint.
            self.counters = Counters {
                records_in: self.counters.records_in,
                bytes_in: self.counters.bytes_in,
                bad_records: self.counters.bad_records,
                user: std::mem::take(&mut self.counters.user),
                shuffle_bytes: self.counters.shuffle_bytes,
                ..counters
            };
        } else {
            self.counters = counters;
            self.finish(state, error);
            self.phase = Phase::Ended {
                state,
                durable: true,
            };
            self.finished_at = finished_at;
            if state == JobState::Succeeded {
                self.chunks.all_done();
                self.bytes_done = self.bytes_total;
            }
            self.result = rows;
            self.quarantine = quarantine;
        }
    }

    /// Fails the job if it has run past its timeout.
    pub fn check_timeout(&mut self) -> bool {
        match self.spec.timeout {
            Some(limit) if self.may_stop() && self.started.elapsed() >= limit => {
                self.finish(
                    JobState::Failed,
                    Some(format!(
                        "timed out after {:?} with {}/{} chunks done",
                        limit,
                        self.chunks.done(),
                        self.chunks.len()
                    )),
                );
                true
            }
            _ => false,
        }
    }

    /// Fails the job if chunks of a worker's own files wait for a worker that has been away
    /// (per `present`, by name) for longer than `lease`: no other worker can read them.
    pub fn check_owners(&mut self, present: impl Fn(&str) -> bool, lease: Duration) -> bool {
        if self.phase != Phase::Mapping {
            return false;
        }
        let waiting: Vec<u32> = self.chunks.waiting_pools().collect();
        self.absent.retain(|pool, _| waiting.contains(pool));
        for pool in waiting {
            let owner = &self.owners[pool as usize - 1];
            if present(owner) {
                self.absent.remove(&pool);
                continue;
            }
            let since = *self.absent.entry(pool).or_insert_with(Instant::now);
            if since.elapsed() >= lease {
                let message = format!(
                    "worker '{owner}' left and did not come back within {lease:?}: its own \
                     files (worker://{owner}/...) cannot be read by another worker, and \
                     {}/{} chunks are done",
                    self.chunks.done(),
                    self.chunks.len()
                );
                self.finish(JobState::Failed, Some(message));
                return true;
            }
        }
        false
    }

    /// Hands the folded partial, the skipped records and the operation that finalizes the
    /// result to the finalize step.
    pub fn take_for_finalize(&mut self) -> ToFinalize {
        self.phase = Phase::Finalizing;
        let mut bad = std::mem::take(&mut self.bad);
        let mut parts = None;
        if let Some(reduce) = self.reduce.as_mut() {
            let (files, chunks) = (&self.plan.files, &self.plan.chunks);
            bad.extend(reduce.take_bad(|c| files[chunks[c.0 as usize].file as usize].clone()));
            parts = reduce.parts();
        }
        ToFinalize {
            folded: std::mem::take(&mut self.folded),
            parts,
            bad,
            operation: self.plan.operation.clone(),
        }
    }

    /// Keeps the finalized rows; they are to be made durable next. `false` if the job is no
    /// longer finalizing (cancelled or failed meanwhile).
    pub fn finalized(&mut self, keys: u64, result: JobResult, quarantine: Option<PathBuf>) -> bool {
        if self.phase != Phase::Finalizing {
            return false;
        }
        self.counters.keys_out = keys;
        self.result = Some(result);
        self.quarantine = quarantine.map(|q| q.display().to_string());
        self.phase = Phase::Committing {
            keys,
            rows_durable: false,
        };
        true
    }

    /// The kept rows are durable (or there is no journal). `false` if the job is not
    /// committing, or they were durable already.
    pub fn rows_durable(&mut self) -> bool {
        match &mut self.phase {
            Phase::Committing { rows_durable, .. } if !*rows_durable => {
                *rows_durable = true;
                true
            }
            _ => false,
        }
    }

    /// Whether the rows are kept, to be journaled with the job's progress: a restarted
    /// coordinator then commits them instead of finalizing again.
    pub fn rows_kept(&self) -> bool {
        matches!(self.phase, Phase::Committing { .. })
    }

    /// Whether the kept rows are durable and the output directory is next.
    pub fn ready_to_commit(&self) -> bool {
        matches!(
            self.phase,
            Phase::Committing {
                rows_durable: true,
                ..
            }
        )
    }

    /// The output directory is committed (or there is none): the job has succeeded, to be
    /// announced once that is journaled. `false` if the job is not committing durable rows.
    pub fn succeed(&mut self) -> bool {
        let Phase::Committing {
            keys,
            rows_durable: true,
        } = self.phase
        else {
            return false;
        };
        self.counters.keys_out = keys;
        self.finish(JobState::Succeeded, None);
        true
    }

    /// The journal holds the job's end: it may now be announced. `false` if it was already,
    /// or the job has not ended.
    pub fn end_durable(&mut self) -> bool {
        match &mut self.phase {
            Phase::Ended { durable, .. } if !*durable => {
                *durable = true;
                true
            }
            _ => false,
        }
    }

    /// Cancels the job, unless it is committing its result: past that point it finishes (a
    /// commit stopped halfway would leave an output directory that names a cancelled job).
    pub fn cancel(&mut self) {
        if self.may_stop() {
            self.finish(JobState::Cancelled, Some("cancelled by request".into()));
        }
    }

    /// Whether a cancel or a timeout may still end the job: it is running and not committing.
    fn may_stop(&self) -> bool {
        matches!(self.phase, Phase::Mapping | Phase::Finalizing)
    }

    /// Fails a running job with a message, e.g. when a chunk cannot be read or merged.
    pub fn abort(&mut self, message: String) {
        if self.is_running() {
            self.finish(JobState::Failed, Some(message));
        }
    }

    pub(super) fn finish(&mut self, state: JobState, error: Option<String>) {
        self.phase = Phase::Ended {
            state,
            durable: false,
        };
        if state != JobState::Succeeded {
            self.result = None;
        }
        if let Some(reduce) = self.reduce.as_mut() {
            reduce.stop();
        }
        self.error = error;
        self.finished_at = Some(SystemTime::now());
        self.chunks.stop();
        self.timeline.close();
        self.slowest_running = None;
        self.folded = Folded::new();
        self.bad = Vec::new();
    }
}
