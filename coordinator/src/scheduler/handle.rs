//! How the rest of the coordinator talks to the scheduler task: the [`Handle`] and its
//! commands, and the messages the scheduler exchanges with workers.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use fanfold_common::chunker::ChunkRange;
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use fanfold_common::operation::{BadRecord, ChunkStats, Options};
use fanfold_common::partial::{ChunkPartial, Row};
use fanfold_common::spec::{JobSpec, JobStatus};
use tokio::sync::{mpsc, oneshot, watch};

use crate::job::Plan;

/// One unit of work for a worker.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub job: JobId,
    pub chunk: ChunkId,
    pub attempt: Attempt,
    pub operation: String,
    pub options: Options,
    pub path: PathBuf,
    pub range: ChunkRange,
    pub payload: Payload,
    pub skip_bad_records: bool,
}

/// How an assignment's bytes reach its worker.
#[derive(Clone, Debug)]
pub enum Payload {
    /// Not read yet. The scheduler's loader reads a small chunk at once; a large one is read
    /// by its worker's stream when that is ready to send it, and goes out in pieces.
    Unread,
    /// Read, and sent with the assignment.
    Inline(Bytes),
    /// The worker is on shared storage and reads `range` itself from this absolute path.
    Shared(PathBuf),
}

/// What the scheduler sends a worker.
#[derive(Clone, Debug)]
pub enum ToWorker {
    Assign(Assignment),
    /// Drop queued chunks of this job and report running ones as they end.
    Cancel(JobId),
    /// Another attempt of this chunk won; drop this one.
    CancelAttempt {
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
    },
}

/// A worker's introduction.
#[derive(Clone, Debug)]
pub struct WorkerHello {
    pub name: String,
    pub slots: u32,
    /// The worker reads input paths as this coordinator names them.
    pub shared_storage: bool,
}

/// What a worker reported about one assignment.
#[derive(Debug)]
pub enum Report {
    Done {
        partial: ChunkPartial,
        stats: ChunkStats,
        /// The result encoded for the journal ([`store::chunk_record`]).
        record: Vec<u8>,
        /// Records skipped as bad (skip mode).
        bad: Vec<BadRecord>,
    },
    Failed {
        error: String,
        retryable: bool,
    },
    /// Handed back unstarted: by a draining worker, or by one that could not read the chunk
    /// by reference (`unreadable` says why).
    Released {
        unreadable: Option<String>,
    },
}

/// Why a request about a job cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {0} not found")]
    NotFound(JobId),
    #[error("job {id} has no result: it is {state}")]
    NoResult { id: JobId, state: &'static str },
    /// Every chunk is folded and the job is finishing: its result comes once it has ended.
    #[error("job {0} is finishing")]
    Finishing(JobId),
    #[error("the coordinator is shutting down")]
    ShuttingDown,
}

pub(super) enum Command {
    Submit {
        spec: JobSpec,
        plan: Plan,
        reply: oneshot::Sender<JobStatus>,
    },
    Get {
        id: JobId,
        reply: oneshot::Sender<Result<JobStatus, JobError>>,
    },
    List {
        reply: oneshot::Sender<Vec<JobStatus>>,
    },
    Watch {
        id: JobId,
        reply: oneshot::Sender<Result<watch::Receiver<JobStatus>, JobError>>,
    },
    Result {
        id: JobId,
        reply: oneshot::Sender<Result<Arc<Vec<Row>>, JobError>>,
    },
    Cancel {
        id: JobId,
        reply: oneshot::Sender<Result<JobStatus, JobError>>,
    },
    WorkerJoined {
        hello: WorkerHello,
        outbox: mpsc::Sender<ToWorker>,
        reply: oneshot::Sender<WorkerId>,
    },
    WorkerLeft {
        worker: WorkerId,
    },
    Heartbeat {
        worker: WorkerId,
    },
    Draining {
        worker: WorkerId,
    },
    Report {
        worker: WorkerId,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        report: Report,
    },
    /// The chunk's bytes could not be read for an assignment.
    LoadFailed {
        worker: WorkerId,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        error: String,
    },
    /// The job's rows, or why they could not be made (finalize failed or panicked, the
    /// quarantine file could not be written).
    Finalized {
        job: JobId,
        /// Keys, rows and the quarantine file, if records were skipped.
        result: Result<(u64, Vec<Row>, Option<PathBuf>), String>,
    },
    /// The job's output directory is committed, or why it could not be.
    Committed {
        job: JobId,
        result: Result<(), String>,
    },
}

/// A cheap, cloneable way to talk to the scheduler task.
#[derive(Clone)]
pub struct Handle {
    pub(super) commands: mpsc::Sender<Command>,
}

impl Handle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, JobError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| JobError::ShuttingDown)?;
        answer.await.map_err(|_| JobError::ShuttingDown)
    }

    /// A chunk's bytes could not be read for an assignment: the job fails, naming the chunk.
    pub async fn load_failed(
        &self,
        worker: WorkerId,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        error: String,
    ) -> Result<(), JobError> {
        self.tell(Command::LoadFailed {
            worker,
            job,
            chunk,
            attempt,
            error,
        })
        .await
    }

    async fn tell(&self, command: Command) -> Result<(), JobError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| JobError::ShuttingDown)
    }

    /// Queues a planned job; its spec carries the effective chunk size.
    pub async fn submit(&self, spec: JobSpec, plan: Plan) -> Result<JobStatus, JobError> {
        self.ask(|reply| Command::Submit { spec, plan, reply })
            .await
    }

    pub async fn get(&self, id: JobId) -> Result<JobStatus, JobError> {
        self.ask(|reply| Command::Get { id, reply }).await?
    }

    pub async fn list(&self) -> Result<Vec<JobStatus>, JobError> {
        self.ask(|reply| Command::List { reply }).await
    }

    pub async fn watch(&self, id: JobId) -> Result<watch::Receiver<JobStatus>, JobError> {
        self.ask(|reply| Command::Watch { id, reply }).await?
    }

    pub async fn result(&self, id: JobId) -> Result<Arc<Vec<Row>>, JobError> {
        self.ask(|reply| Command::Result { id, reply }).await?
    }

    pub async fn cancel(&self, id: JobId) -> Result<JobStatus, JobError> {
        self.ask(|reply| Command::Cancel { id, reply }).await?
    }

    /// Registers a worker whose assignments go to `outbox`; its capacity must be at least
    /// [`outbox_capacity`] of the worker's credits.
    pub async fn worker_joined(
        &self,
        hello: WorkerHello,
        outbox: mpsc::Sender<ToWorker>,
    ) -> Result<WorkerId, JobError> {
        self.ask(|reply| Command::WorkerJoined {
            hello,
            outbox,
            reply,
        })
        .await
    }

    pub async fn worker_left(&self, worker: WorkerId) {
        let _ = self.tell(Command::WorkerLeft { worker }).await;
    }

    pub async fn heartbeat(&self, worker: WorkerId) -> Result<(), JobError> {
        self.tell(Command::Heartbeat { worker }).await
    }

    pub async fn draining(&self, worker: WorkerId) -> Result<(), JobError> {
        self.tell(Command::Draining { worker }).await
    }

    pub async fn report(
        &self,
        worker: WorkerId,
        job: JobId,
        chunk: ChunkId,
        attempt: Attempt,
        report: Report,
    ) -> Result<(), JobError> {
        self.tell(Command::Report {
            worker,
            job,
            chunk,
            attempt,
            report,
        })
        .await
    }
}

/// Outbox capacity for a worker with `credits`: assignments plus room for cancel messages.
pub fn outbox_capacity(credits: u32) -> usize {
    credits as usize + 64
}
