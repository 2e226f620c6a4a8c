//! The FleetService gRPC adapter: one `Attach` stream per worker.
//!
//! Reads the worker's hello, registers it with the scheduler, then forwards its messages as
//! fleet messages (`fanfold_common::fleet`; chunk results decoded here, on the worker's own
//! task, not the scheduler's) until the stream ends or errors; the worker then counts as gone
//! and its chunks go back to the queue. Heartbeats go to the scheduler, which owns leases.
//! Outgoing, it encodes what the scheduler sends, after the chunk reader has filled a large
//! chunk's bytes, and cuts those into pieces. A reduce task's rows are written to its part
//! file here, as they arrive (`crate::parts`); the scheduler hears of the part once it is
//! whole and synced.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fanfold_common::fleet::{FromWorker, Payload, ReduceKey, ReduceReport, ToWorker, WorkerHello};
use fanfold_common::ids::WorkerId;
use fanfold_common::roots::Roots;
use fanfold_proto::PROTOCOL;
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::fleet_service_server::FleetService;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::auth::Principal;
use crate::parts::{self, Part, PartWriter};
use crate::reader;
use crate::scheduler::{self, Handle};

pub struct Fleet {
    pub scheduler: Handle,
    /// Where workers' answers to listings of their own files go.
    pub listings: Arc<crate::worker_files::Listings>,
    pub metrics: crate::metrics::Metrics,
    /// Where reduce tasks' part files are written.
    pub parts_dir: PathBuf,
    pub prefetch: u32,
    /// How long a new stream may take to say hello.
    pub hello_timeout: Duration,
    /// Inputs are read beneath these; workers on shared storage are told them.
    pub data_roots: Roots,
    /// Workers must present a client certificate (mutual TLS, `--tls-client-ca`).
    pub require_worker_cert: bool,
    /// The token workers present to each other's shuffle service, sent in each welcome.
    pub shuffle_token: Arc<str>,
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
        let who = request.extensions().get::<Principal>().cloned();
        let answer = match &who {
            Some(who) => match who.grant(who.may_attach(), || "attach as a worker".into()) {
                Ok(()) => self.attached(request).await,
                Err(refused) => Err(Status::permission_denied(refused)),
            },
            None => Err(Status::unauthenticated("no principal")),
        };
        self.metrics.grpc("Attach", &answer);
        let principal = who.as_ref().map_or("", |w| &*w.name);
        match &answer {
            Ok(_) => info!(principal, method = "Attach", outcome = "ok", "request"),
            Err(status) => {
                info!(principal, method = "Attach", outcome = ?status.code(), "request refused")
            }
        }
        answer
    }
}

impl Fleet {
    async fn attached(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<BoxStream<pb::CoordinatorMessage>>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if self.require_worker_cert && request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(Status::unauthenticated(
                "this coordinator requires workers to present a client certificate (mutual \
                 TLS): start the worker with --tls-cert and --tls-key",
            ));
        }
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(self.hello_timeout, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello from worker"))??;
        let Some(FromWorker::Hello(hello)) = first.map(FromWorker::try_from).transpose()? else {
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
        let hello: WorkerHello = hello;
        let worker = self
            .scheduler
            .worker_joined(hello, peer, outbox)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;

        let scheduler = self.scheduler.clone();
        let shutdown = self.shutdown.clone();
        let parts_dir = self.parts_dir.clone();
        let listings = Arc::clone(&self.listings);
        self.tasks.spawn(async move {
            let mut parts = Parts {
                dir: parts_dir,
                writing: HashMap::new(),
            };
            let why = read_reports(
                worker,
                &mut inbound,
                &scheduler,
                &listings,
                &mut parts,
                &shutdown,
            )
            .await;
            listings.forget(worker);
            parts.abandon();
            info!(worker_id = %worker, %name, reason = why, "worker stream ended");
            scheduler.worker_left(worker).await;
        });

        let welcome = pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Welcome(pb::Welcome {
                worker_id: worker.to_string(),
                protocol: PROTOCOL,
                data_roots: self
                    .data_roots
                    .paths()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
                shuffle_token: self.shuffle_token.to_string(),
            })),
        };
        // Pulled as the connection can send: a large chunk is read just before it goes out,
        // and goes out in pieces.
        let scheduler = self.scheduler.clone();
        let roots = self.data_roots.clone();
        let sent = self.metrics.chunk_bytes_sent.clone();
        let outgoing = async_stream::stream! {
            yield Ok(welcome);
            while let Some(message) = assignments.recv().await {
                for message in ready_to_send(worker, &scheduler, message, &roots, &sent).await {
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

/// The messages to send for one from the scheduler. A large inline chunk is read (by the chunk
/// reader) now that the stream is ready for it and follows its assignment in pieces, slices of
/// one read buffer; a chunk that cannot be read is not sent: the scheduler hears why and fails
/// its job.
async fn ready_to_send(
    worker: WorkerId,
    scheduler: &Handle,
    message: ToWorker,
    roots: &Roots,
    sent: &prometheus_client::metrics::counter::Counter,
) -> Vec<pb::CoordinatorMessage> {
    let ToWorker::Assign(mut assignment) = message else {
        return vec![message.into()];
    };
    let sent_whole = !matches!(assignment.payload, Payload::Unread);
    if let Err(error) = reader::fill_when_sent(&mut assignment, roots).await {
        let _ = scheduler.load_failed(worker, assignment.key(), error).await;
        return Vec::new();
    }
    if let Payload::Inline(data) = &assignment.payload {
        sent.inc_by(data.len() as u64);
    }
    if sent_whole {
        return vec![ToWorker::Assign(assignment).into()];
    }
    let Payload::Inline(data) = std::mem::replace(&mut assignment.payload, Payload::Unread) else {
        unreachable!("the reader filled it");
    };
    let mut assign = pb::Assign::from(assignment);
    assign.piece_bytes = data.len() as u64;
    let assign = pb::CoordinatorMessage {
        kind: Some(pb::coordinator_message::Kind::Assign(assign)),
    };
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
    listings: &crate::worker_files::Listings,
    parts: &mut Parts,
    shutdown: &CancellationToken,
) -> &'static str {
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return "coordinator shutting down",
            message = inbound.message() => message,
        };
        let message = match message {
            Err(e) => {
                info!(worker_id = %worker, error = %e.message(), "worker stream broke");
                return "stream error";
            }
            Ok(None) => return "closed by worker",
            Ok(Some(pb::WorkerMessage { kind: None })) => continue,
            Ok(Some(message)) => message,
        };
        let forwarded = match FromWorker::try_from(message) {
            Ok(FromWorker::Heartbeat) => scheduler.heartbeat(worker).await,
            Ok(FromWorker::Draining) => scheduler.draining(worker).await,
            Ok(FromWorker::Report { key, report }) => scheduler.report(worker, key, report).await,
            Ok(FromWorker::PartRows { key, rows }) => match parts.append(worker, key, rows).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    // The task cannot succeed now; its end says so.
                    warn!(worker_id = %worker, partition = key.partition, error = %e,
                        "cannot write a part file");
                    Ok(())
                }
            },
            Ok(FromWorker::Reduced { key, report }) => {
                let part = match &report {
                    ReduceReport::Done { keys, .. } => Some(parts.finish(worker, key, *keys).await),
                    ReduceReport::Failed { .. } => {
                        parts.discard(key);
                        None
                    }
                };
                scheduler.reduced(worker, key, report, part).await
            }
            Ok(FromWorker::LocalListed { request, result }) => {
                listings.answer(worker, request, result);
                Ok(())
            }
            Ok(FromWorker::Hello(_)) => {
                warn!(worker_id = %worker, "ignored a second hello");
                Ok(())
            }
            Err(e) => {
                warn!(worker_id = %worker, error = %e, "malformed message from a worker");
                return "malformed message";
            }
        };
        if forwarded.is_err() {
            return "scheduler stopped";
        }
    }
}

/// The part files this worker's stream is writing, by reduce attempt.
struct Parts {
    dir: PathBuf,
    /// `Err` once writing failed: the rest of that part is dropped and its end fails.
    writing: HashMap<ReduceKey, Result<PartWriter, String>>,
}

impl Parts {
    /// Appends rows to the attempt's part, off the async runtime.
    async fn append(
        &mut self,
        worker: WorkerId,
        key: ReduceKey,
        rows: Vec<fanfold_common::partial::Row>,
    ) -> Result<(), String> {
        let writer = match self.writing.remove(&key) {
            Some(Ok(writer)) => Ok(writer),
            Some(Err(e)) => Err(e),
            None => {
                PartWriter::create(parts::path(&self.dir, key, worker)).map_err(|e| e.to_string())
            }
        };
        let written = match writer {
            Ok(mut writer) => tokio::task::spawn_blocking(move || {
                writer.append(rows).map_err(|e| e.to_string())?;
                Ok(writer)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string())),
            Err(e) => Err(e),
        };
        let failed = written.as_ref().err().cloned();
        self.writing.insert(key, written);
        failed.map_or(Ok(()), Err)
    }

    /// The attempt's whole part, synced (an empty one if it sent no rows).
    async fn finish(
        &mut self,
        worker: WorkerId,
        key: ReduceKey,
        keys: u64,
    ) -> Result<Part, String> {
        let writer = match self.writing.remove(&key) {
            Some(writer) => writer,
            None => {
                PartWriter::create(parts::path(&self.dir, key, worker)).map_err(|e| e.to_string())
            }
        }?;
        tokio::task::spawn_blocking(move || {
            let (path, rows) = writer.finish().map_err(|e| e.to_string())?;
            Ok(Part { path, rows, keys })
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    }

    /// Drops a failed attempt's part.
    fn discard(&mut self, key: ReduceKey) {
        if let Some(Ok(writer)) = self.writing.remove(&key) {
            let _ = std::fs::remove_file(&writer.path);
        }
    }

    /// The stream ended: parts still being written are incomplete.
    fn abandon(&mut self) {
        for (_, writer) in self.writing.drain() {
            if let Ok(writer) = writer {
                let _ = std::fs::remove_file(&writer.path);
            }
        }
    }
}
