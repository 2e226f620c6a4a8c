//! The FleetService gRPC adapter: one `Attach` stream per worker.
//!
//! Reads the worker's hello, registers it with the scheduler, then forwards its messages (chunk
//! results decoded into domain partials here, on the worker's own task, not the scheduler's)
//! until the stream ends or errors; the worker then counts as gone and its chunks go back to the
//! queue. Heartbeats go to the scheduler, which owns leases.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use fanfold_common::chunker;
use fanfold_common::ids::{Attempt, ChunkId, JobId, WorkerId};
use fanfold_common::partial::ChunkPartial;
use fanfold_proto::PROTOCOL;
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::fleet_service_server::FleetService;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::scheduler::{self, Handle, Payload, Report, ToWorker, WorkerHello};
use crate::store;

pub struct Fleet {
    pub scheduler: Handle,
    /// Whether the coordinator journals chunk results (it has a state directory).
    pub durable: bool,
    pub prefetch: u32,
    /// How long a new stream may take to say hello.
    pub hello_timeout: Duration,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl FleetService for Fleet {
    type AttachStream = BoxStream<pb::CoordinatorMessage>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(self.hello_timeout, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello from worker"))??;
        let Some(pb::WorkerMessage {
            kind: Some(pb::worker_message::Kind::Hello(hello)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "a worker's first message must be hello",
            ));
        };
        if hello.slots == 0 {
            return Err(Status::invalid_argument("hello.slots must be at least 1"));
        }
        if hello.protocol != PROTOCOL {
            warn!(name = %hello.name, version = %hello.version, protocol = hello.protocol,
                "refused a worker of another fleet protocol");
            return Err(Status::failed_precondition(format!(
                "worker '{}' (fanfold {}) speaks fleet protocol {}, this coordinator (fanfold {}) \
                 speaks {PROTOCOL}: run the same fanfold release on both",
                hello.name,
                hello.version,
                hello.protocol,
                fanfold_common::VERSION
            )));
        }
        let name = hello.name.clone();
        let (outbox, mut assignments) =
            mpsc::channel(scheduler::outbox_capacity(hello.slots + self.prefetch));
        let worker = self
            .scheduler
            .worker_joined(
                WorkerHello {
                    name: hello.name,
                    slots: hello.slots,
                    shared_storage: hello.shared_storage,
                },
                outbox,
            )
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;

        let scheduler = self.scheduler.clone();
        let shutdown = self.shutdown.clone();
        let durable = self.durable;
        self.tasks.spawn(async move {
            let why = read_reports(worker, &mut inbound, &scheduler, durable, &shutdown).await;
            info!(worker_id = %worker, %name, reason = why, "worker stream ended");
            scheduler.worker_left(worker).await;
        });

        let welcome = pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Welcome(pb::Welcome {
                worker_id: worker.to_string(),
                protocol: PROTOCOL,
            })),
        };
        // Pulled as the connection can send: a large chunk is read just before it goes out,
        // and goes out in pieces.
        let scheduler = self.scheduler.clone();
        let outgoing = async_stream::stream! {
            yield Ok(welcome);
            while let Some(message) = assignments.recv().await {
                for message in ready_to_send(worker, &scheduler, message).await {
                    yield Ok(message);
                }
            }
        };
        Ok(Response::new(Box::pin(outgoing)))
    }
}

/// Bytes of a large chunk per message: below the coordinator's mmap threshold (1 MiB), so
/// encode buffers are reused instead of mapped fresh for every chunk.
const PIECE_BYTES: usize = 512 << 10;

/// The messages to send for one from the scheduler. A large inline chunk is read now that the
/// stream is ready for it and follows its assignment in pieces, slices of one read buffer; a
/// chunk that cannot be read is not sent: the scheduler hears why and fails its job.
async fn ready_to_send(
    worker: WorkerId,
    scheduler: &Handle,
    message: ToWorker,
) -> Vec<pb::CoordinatorMessage> {
    let ToWorker::Assign(assignment) = message else {
        return vec![message.into()];
    };
    if !matches!(assignment.payload, Payload::Unread) {
        return vec![ToWorker::Assign(assignment).into()];
    }
    let (path, range) = (assignment.path.clone(), assignment.range);
    let read = tokio::task::spawn_blocking(move || chunker::read(&path, range))
        .await
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()));
    let data = match read {
        Ok(data) => Bytes::from(data),
        Err(error) => {
            let (job, chunk, attempt) = (assignment.job, assignment.chunk, assignment.attempt);
            let _ = scheduler
                .load_failed(worker, job, chunk, attempt, error)
                .await;
            return Vec::new();
        }
    };
    let mut assign = pb::CoordinatorMessage::from(ToWorker::Assign(assignment));
    if let Some(pb::coordinator_message::Kind::Assign(a)) = &mut assign.kind {
        a.piece_bytes = data.len() as u64;
    }
    let pieces = (0..data.len()).step_by(PIECE_BYTES).map(|at| {
        let piece = data.slice(at..data.len().min(at + PIECE_BYTES));
        pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Piece(pb::ChunkPiece {
                data: piece,
            })),
        }
    });
    std::iter::once(assign).chain(pieces).collect()
}

/// Forwards a worker's reports until its stream ends; returns why it ended.
async fn read_reports(
    worker: WorkerId,
    inbound: &mut Streaming<pb::WorkerMessage>,
    scheduler: &Handle,
    durable: bool,
    shutdown: &CancellationToken,
) -> &'static str {
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return "coordinator shutting down",
            message = inbound.message() => message,
        };
        let kind = match message {
            Err(e) => {
                info!(worker_id = %worker, error = %e.message(), "worker stream broke");
                return "stream error";
            }
            Ok(None) => return "closed by worker",
            Ok(Some(pb::WorkerMessage { kind: None })) => continue,
            Ok(Some(pb::WorkerMessage { kind: Some(kind) })) => kind,
        };
        let forwarded = match kind {
            pb::worker_message::Kind::Heartbeat(_) => scheduler.heartbeat(worker).await,
            pb::worker_message::Kind::Draining(_) => scheduler.draining(worker).await,
            pb::worker_message::Kind::Released(released) => {
                match released.job_id.parse::<JobId>() {
                    Ok(job) => {
                        let (chunk, attempt) = (ChunkId(released.chunk), Attempt(released.attempt));
                        let unreadable =
                            (!released.unreadable.is_empty()).then_some(released.unreadable);
                        scheduler
                            .report(worker, job, chunk, attempt, Report::Released { unreadable })
                            .await
                    }
                    Err(e) => {
                        warn!(worker_id = %worker, error = %e, "malformed chunk release");
                        return "malformed message";
                    }
                }
            }
            pb::worker_message::Kind::Hello(_) => {
                warn!(worker_id = %worker, "ignored a second hello");
                Ok(())
            }
            pb::worker_message::Kind::Done(done) => match decode_done(done, durable) {
                Ok((job, chunk, attempt, report)) => {
                    scheduler.report(worker, job, chunk, attempt, report).await
                }
                Err(e) => {
                    warn!(worker_id = %worker, error = %e, "malformed chunk result");
                    return "malformed message";
                }
            },
            pb::worker_message::Kind::Failed(failed) => match failed.job_id.parse::<JobId>() {
                Ok(job) => {
                    let report = Report::Failed {
                        error: failed.error,
                        retryable: failed.retryable,
                    };
                    let (chunk, attempt) = (ChunkId(failed.chunk), Attempt(failed.attempt));
                    scheduler.report(worker, job, chunk, attempt, report).await
                }
                Err(e) => {
                    warn!(worker_id = %worker, error = %e, "malformed chunk failure");
                    return "malformed message";
                }
            },
        };
        if forwarded.is_err() {
            return "scheduler stopped";
        }
    }
}

fn decode_done(
    done: pb::ChunkDone,
    durable: bool,
) -> Result<(JobId, ChunkId, Attempt, Report), String> {
    let job: JobId = done.job_id.parse().map_err(|e| format!("{e}"))?;
    let counters = done.counters.unwrap_or_default();
    let partial = done.partial.unwrap_or_default();
    // Encoded for the journal here, on the worker's task, before the partial is converted;
    // without a journal, not at all.
    let record = if durable {
        store::chunk_record(&partial, &counters, &done.bad_records)
    } else {
        Vec::new()
    };
    let stats = counters.into();
    let partial: ChunkPartial = partial.try_into().map_err(|e| format!("{e}"))?;
    let report = Report::Done {
        partial,
        stats,
        record,
        bad: done.bad_records.into_iter().map(Into::into).collect(),
    };
    Ok((job, ChunkId(done.chunk), Attempt(done.attempt), report))
}

impl From<ToWorker> for pb::CoordinatorMessage {
    fn from(message: ToWorker) -> Self {
        let kind = match message {
            ToWorker::Assign(a) => pb::coordinator_message::Kind::Assign(pb::Assign {
                job_id: a.job.to_string(),
                chunk: a.chunk.0,
                attempt: a.attempt.0,
                operation: a.operation,
                options: a.options.into_iter().collect(),
                location: Some(pb::ChunkLocation {
                    path: a.path.display().to_string(),
                    start: a.range.start,
                    end: a.range.end,
                }),
                data: match &a.payload {
                    Payload::Inline(data) => data.clone(),
                    Payload::Unread | Payload::Shared(_) => Bytes::new(),
                },
                piece_bytes: 0,
                skip_bad_records: a.skip_bad_records,
                shared_path: match &a.payload {
                    Payload::Shared(path) => path.display().to_string(),
                    Payload::Unread | Payload::Inline(_) => String::new(),
                },
            }),
            ToWorker::Cancel(job) => pb::coordinator_message::Kind::Cancel(pb::CancelJob {
                job_id: job.to_string(),
            }),
            ToWorker::CancelAttempt {
                job,
                chunk,
                attempt,
            } => pb::coordinator_message::Kind::CancelAttempt(pb::CancelAttempt {
                job_id: job.to_string(),
                chunk: chunk.0,
                attempt: attempt.0,
            }),
        };
        pb::CoordinatorMessage { kind: Some(kind) }
    }
}
