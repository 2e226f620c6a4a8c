//! The scheduler's side of durability: the decisions to make durable, queued in decision order
//! and handed to the store's journal task ([`crate::store::spawn_journal`]) after each command.
//!
//! Without a store every call is a no-op, and a step of a job's end that would wait for the
//! journal's acknowledgement counts as durable at once: state that cannot outlive the process
//! needs no checkpoints, and keeping every folded chunk's partial until its job ends would
//! make memory grow with the input.

use std::sync::Arc;
use std::time::SystemTime;

use fanfold_common::chunker::ChunkRange;
use fanfold_common::fleet::ChunkOutput;
use fanfold_common::ids::{ChunkId, JobId};
use fanfold_common::location::Location;
use fanfold_common::spec::{JobSpec, JobState};
use tokio::sync::mpsc;
use tracing::warn;

use crate::job::timeline::TimelineRecord;
use crate::job::{Job, JobResult};
use crate::store::Op;

/// Whether a step must wait for the journal's acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Ack {
    /// Journaled: the step is durable once the journal says so.
    Later,
    /// Nothing to wait for (no store): the step counts as durable now.
    Now,
}

pub struct Journal {
    sender: Option<mpsc::Sender<Vec<Op>>>,
    ops: Vec<Op>,
}

impl Journal {
    /// A journal writing to `sender`'s journal task, or none.
    pub fn new(sender: Option<mpsc::Sender<Vec<Op>>>) -> Self {
        Journal {
            sender,
            ops: Vec::new(),
        }
    }

    /// Whether folded chunks are kept: their outputs then go to the store.
    pub fn keeps_chunks(&self) -> bool {
        self.sender.is_some()
    }

    fn push(&mut self, op: Op) -> Ack {
        if self.sender.is_some() {
            self.ops.push(op);
            Ack::Later
        } else {
            Ack::Now
        }
    }

    pub fn submitted(
        &mut self,
        job: JobId,
        spec: &JobSpec,
        files: &[Location],
        chunks: &[ChunkRange],
        submitted_at: SystemTime,
    ) {
        if self.sender.is_some() {
            let _ = self.push(Op::Submitted {
                job,
                spec: spec.clone(),
                files: files.to_vec(),
                chunks: chunks.to_vec(),
                submitted_at,
            });
        }
    }

    pub fn chunk_folded(&mut self, job: JobId, chunk: ChunkId, output: ChunkOutput) {
        let _ = self.push(Op::ChunkFolded { job, chunk, output });
    }

    /// The job's retention ran out: nothing of it is kept.
    pub fn forget(&mut self, job: JobId) {
        let _ = self.push(Op::Forget { job });
    }

    /// The job's progress as decided (not as announced: announcing waits for this record).
    pub fn progress(&mut self, job: &Job) {
        if self.sender.is_none() {
            return;
        }
        let status = job.snapshot(0);
        let _ = self.push(Op::Progress {
            job: job.id,
            state: job.state(),
            rows_kept: job.rows_kept(),
            error: status.error,
            counters: status.counters,
            finished_at: status.finished_at,
            result_rows: status.result_rows,
            quarantine: status.quarantine,
            parts: match job.result() {
                Some(JobResult::Parts(parts))
                    if job.rows_kept() || job.state() == JobState::Succeeded =>
                {
                    parts.to_vec()
                }
                _ => Vec::new(),
            },
        });
    }

    /// A finalized job's rows, with its progress (which says they are kept). A partitioned
    /// job's rows are in its part files, which its progress names: its rows op holds none.
    pub fn rows(&mut self, job: &Job, result: JobResult) -> Ack {
        let rows = match result {
            JobResult::Rows(rows) => rows,
            JobResult::Parts(_) => Arc::new(Vec::new()),
        };
        let ack = self.push(Op::Rows { job: job.id, rows });
        self.progress(job);
        ack
    }

    /// A job's end, with its progress and its timeline (workers named by `record`).
    pub fn finished(&mut self, job: &Job, timeline: TimelineRecord) -> Ack {
        let _ = self.push(Op::Timeline {
            job: job.id,
            record: timeline,
        });
        self.progress(job);
        self.push(Op::Finished {
            job: job.id,
            succeeded: job.state() == JobState::Succeeded,
        })
    }

    /// Hands what was decided to the journal task; waiting here is the backpressure of a slow
    /// disk on the whole scheduler.
    pub async fn flush(&mut self) {
        let Some(sender) = &self.sender else { return };
        if self.ops.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.ops);
        if sender.send(ops).await.is_err() {
            warn!("journal stopped; state is no longer durable");
        }
    }
}
