//! How the rest of the coordinator talks to the scheduler task: the [`Handle`] and its
//! commands. The messages the scheduler exchanges with workers are the fleet vocabulary of
//! `fanfold_common::fleet`.

use std::path::PathBuf;

use fanfold_common::fleet::{AttemptKey, ReduceKey, ReduceReport, Report, ToWorker, WorkerHello};
use fanfold_common::ids::{JobId, WorkerId};
use fanfold_common::spec::{JobSpec, JobStatus};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::views::{DetailQuery, JobDetail, WorkerRow};
use crate::job::{JobResult, Plan};
use crate::metrics::Gauges;
use crate::parts::Part;

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
    /// The job ended and its retention ran out.
    #[error(
        "job {id} has expired: finished jobs are kept {policy}, then removed with their results"
    )]
    Expired { id: JobId, policy: String },
    /// A submission over a limit on jobs not yet ended.
    #[error("{0}")]
    Limit(String),
    /// A worker that cannot join the fleet as it is.
    #[error("{0}")]
    WorkerRefused(String),
}

/// An attached worker that offers files of its own (`--local-root`).
#[derive(Clone, Debug)]
pub struct LocalWorker {
    pub id: WorkerId,
    pub name: String,
    /// The directories it offers files beneath.
    pub roots: Vec<String>,
    pub outbox: mpsc::Sender<ToWorker>,
}

pub(super) enum Command {
    Submit {
        spec: JobSpec,
        plan: Plan,
        reply: oneshot::Sender<Result<JobStatus, JobError>>,
    },
    Get {
        id: JobId,
        reply: oneshot::Sender<Result<JobStatus, JobError>>,
    },
    List {
        reply: oneshot::Sender<Vec<JobStatus>>,
    },
    Detail {
        id: JobId,
        query: DetailQuery,
        reply: oneshot::Sender<Result<JobDetail, JobError>>,
    },
    Workers {
        reply: oneshot::Sender<Vec<WorkerRow>>,
    },
    Gauges {
        reply: oneshot::Sender<Gauges>,
    },
    Watch {
        id: JobId,
        reply: oneshot::Sender<Result<watch::Receiver<JobStatus>, JobError>>,
    },
    Result {
        id: JobId,
        reply: oneshot::Sender<Result<JobResult, JobError>>,
    },
    Cancel {
        id: JobId,
        reply: oneshot::Sender<Result<JobStatus, JobError>>,
    },
    WorkerJoined {
        hello: WorkerHello,
        /// Where its stream comes from.
        address: String,
        outbox: mpsc::Sender<ToWorker>,
        reply: oneshot::Sender<Result<WorkerId, String>>,
    },
    LocalWorkers {
        reply: oneshot::Sender<Vec<LocalWorker>>,
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
        key: AttemptKey,
        report: Report,
    },
    /// A reduce task's end; `part` is its rows' file when it is done, written and synced by
    /// the fleet adapter (or why it could not be).
    Reduced {
        worker: WorkerId,
        key: ReduceKey,
        report: ReduceReport,
        part: Option<Result<Part, String>>,
    },
    /// The chunk's bytes could not be read for an assignment.
    LoadFailed {
        worker: WorkerId,
        key: AttemptKey,
        error: String,
    },
    /// The job's rows, or why they could not be made (finalize failed or panicked, the
    /// quarantine file could not be written).
    Finalized {
        job: JobId,
        /// Keys, the result and the quarantine file, if records were skipped.
        result: Result<(u64, JobResult, Option<PathBuf>), String>,
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
        key: AttemptKey,
        error: String,
    ) -> Result<(), JobError> {
        self.tell(Command::LoadFailed { worker, key, error }).await
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
            .await?
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

    pub async fn result(&self, id: JobId) -> Result<JobResult, JobError> {
        self.ask(|reply| Command::Result { id, reply }).await?
    }

    /// A job's status with its chunks from `offset` (at most `limit`), reduce tasks, slowest
    /// chunks and its latest `spans` attempts, for the status page and the HTTP API.
    pub async fn detail(&self, id: JobId, query: DetailQuery) -> Result<JobDetail, JobError> {
        self.ask(|reply| Command::Detail { id, query, reply })
            .await?
    }

    /// The attached workers.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, JobError> {
        self.ask(|reply| Command::Workers { reply }).await
    }

    /// The present state, for the metrics' gauges.
    pub async fn gauges(&self) -> Result<Gauges, JobError> {
        self.ask(|reply| Command::Gauges { reply }).await
    }

    /// A job's result; for a job that is finishing (its rows are being committed, or its end
    /// made durable), waits until it has ended, so the answer never contradicts the end a
    /// watcher is told.
    pub async fn result_when_ended(
        &self,
        id: JobId,
        shutdown: &CancellationToken,
    ) -> Result<JobResult, JobError> {
        loop {
            match self.result(id).await {
                Err(JobError::Finishing(_)) => {}
                answer => return answer,
            }
            let mut updates = self.watch(id).await?;
            tokio::select! {
                _ = shutdown.cancelled() => return Err(JobError::ShuttingDown),
                ended = updates.wait_for(|s| s.state.is_final()) => {
                    ended.map_err(|_| JobError::ShuttingDown)?;
                }
            }
        }
    }

    pub async fn cancel(&self, id: JobId) -> Result<JobStatus, JobError> {
        self.ask(|reply| Command::Cancel { id, reply }).await?
    }

    /// Registers a worker whose assignments go to `outbox`; its capacity must be at least
    /// [`outbox_capacity`] of the worker's credits.
    pub async fn worker_joined(
        &self,
        hello: WorkerHello,
        address: String,
        outbox: mpsc::Sender<ToWorker>,
    ) -> Result<WorkerId, JobError> {
        self.ask(|reply| Command::WorkerJoined {
            hello,
            address,
            outbox,
            reply,
        })
        .await?
        .map_err(JobError::WorkerRefused)
    }

    /// The attached workers that offer files of their own and take work, by id.
    pub async fn local_workers(&self) -> Result<Vec<LocalWorker>, JobError> {
        self.ask(|reply| Command::LocalWorkers { reply }).await
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
        key: AttemptKey,
        report: Report,
    ) -> Result<(), JobError> {
        self.tell(Command::Report {
            worker,
            key,
            report,
        })
        .await
    }
}

impl Handle {
    pub async fn reduced(
        &self,
        worker: WorkerId,
        key: ReduceKey,
        report: ReduceReport,
        part: Option<Result<Part, String>>,
    ) -> Result<(), JobError> {
        self.tell(Command::Reduced {
            worker,
            key,
            report,
            part,
        })
        .await
    }
}

/// Outbox capacity for a worker with `credits`: assignments plus room for cancel messages.
pub fn outbox_capacity(credits: u32) -> usize {
    credits as usize + 64
}
