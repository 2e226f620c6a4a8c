//! One attachment to the coordinator: the Attach stream, the slot tasks that map chunks, and
//! the heartbeat task. Everything started here stops before [`attach`] returns.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanfold_common::operation::{Chunk, ChunkStats};
use fanfold_common::partial::Partial;
use fanfold_common::records;
use fanfold_proto::MAX_MESSAGE_BYTES;
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::fleet_service_client::FleetServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

use crate::Config;

/// Why an attachment ended without an error.
pub enum End {
    Shutdown,
    /// The coordinator closed the stream or it broke; `worked` if it was welcomed first.
    Detached {
        worked: bool,
    },
}

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("bad coordinator address: {0}")]
    Address(#[source] tonic::transport::Error),
    #[error("cannot connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("attach refused: {}", .0.message())]
    Refused(tonic::Status),
}

/// Queued assignments a session holds beyond its running ones; the coordinator's credits keep
/// it far below this, and a full queue stops reading the stream (backpressure, not growth).
const QUEUE: usize = 64;

/// Jobs cancelled during this attachment (their queued chunks are skipped) and the stop flags
/// of the chunks being mapped (set when their job is cancelled or the attachment ends, so a
/// long map such as a streaming mapper's child process stops early).
#[derive(Default)]
struct Stops {
    cancelled: HashSet<String>,
    running: Vec<(String, Arc<AtomicBool>)>,
}

type Cancelled = Arc<Mutex<Stops>>;

pub async fn attach(config: &Config, shutdown: &CancellationToken) -> Result<End, AttachError> {
    let endpoint = Endpoint::from_shared(config.coordinator.clone())
        .map_err(AttachError::Address)?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channel = tokio::select! {
        _ = shutdown.cancelled() => return Ok(End::Shutdown),
        channel = endpoint.connect() => channel.map_err(AttachError::Connect)?,
    };
    let mut client = FleetServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (outbox, outgoing) = mpsc::channel(QUEUE + config.slots as usize + 8);
    let hello = pb::Hello {
        name: config.name.clone(),
        slots: config.slots,
        version: fanfold_common::VERSION.to_owned(),
        operations: config.registry.names(),
    };
    let _ = outbox.try_send(message(pb::worker_message::Kind::Hello(hello)));
    let mut inbound = tokio::select! {
        _ = shutdown.cancelled() => return Ok(End::Shutdown),
        response = client.attach(ReceiverStream::new(outgoing)) => {
            response.map_err(AttachError::Refused)?.into_inner()
        }
    };

    let session = shutdown.child_token();
    let tasks = TaskTracker::new();
    let cancelled: Cancelled = Arc::default();
    let (queue, assignments) = mpsc::channel::<pb::Assign>(QUEUE);
    let assignments = Arc::new(tokio::sync::Mutex::new(assignments));
    for _ in 0..config.slots {
        tasks.spawn(slot(
            config.clone(),
            Arc::clone(&assignments),
            outbox.clone(),
            Arc::clone(&cancelled),
            session.clone(),
        ));
    }
    tasks.spawn(heartbeat(config.heartbeat, outbox.clone(), session.clone()));
    drop(outbox);

    let mut welcomed = false;
    let end = loop {
        let next = tokio::select! {
            _ = session.cancelled() => break End::Shutdown,
            next = inbound.message() => next,
        };
        let kind = match next {
            Ok(Some(pb::CoordinatorMessage { kind: Some(kind) })) => kind,
            Ok(Some(_)) => continue,
            Ok(None) => break End::Detached { worked: welcomed },
            Err(status) => {
                warn!(error = %status.message(), code = ?status.code(), "coordinator stream broke");
                break End::Detached { worked: welcomed };
            }
        };
        match kind {
            pb::coordinator_message::Kind::Welcome(welcome) => {
                welcomed = true;
                info!(worker_id = %welcome.worker_id, slots = config.slots, "attached to coordinator");
            }
            pb::coordinator_message::Kind::Assign(assign) => {
                tokio::select! {
                    _ = session.cancelled() => break End::Shutdown,
                    sent = queue.send(assign) => if sent.is_err() { break End::Shutdown },
                }
            }
            pb::coordinator_message::Kind::Cancel(cancel) => {
                info!(job_id = %cancel.job_id, "job cancelled");
                let mut stops = cancelled.lock().expect("stops");
                for (job, stop) in &stops.running {
                    if *job == cancel.job_id {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                stops.cancelled.insert(cancel.job_id);
            }
        }
    };
    session.cancel();
    for (_, stop) in &cancelled.lock().expect("stops").running {
        stop.store(true, Ordering::Relaxed);
    }
    drop(queue);
    tasks.close();
    tasks.wait().await;
    Ok(end)
}

fn message(kind: pb::worker_message::Kind) -> pb::WorkerMessage {
    pb::WorkerMessage { kind: Some(kind) }
}

async fn heartbeat(
    every: Duration,
    outbox: mpsc::Sender<pb::WorkerMessage>,
    session: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = session.cancelled() => return,
            _ = ticks.tick() => {
                if outbox.send(message(pb::worker_message::Kind::Heartbeat(pb::Heartbeat {}))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One slot: maps one chunk at a time on the blocking pool and reports it.
async fn slot(
    config: Config,
    assignments: Arc<tokio::sync::Mutex<mpsc::Receiver<pb::Assign>>>,
    outbox: mpsc::Sender<pb::WorkerMessage>,
    cancelled: Cancelled,
    session: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = session.cancelled() => return,
            next = async { assignments.lock().await.recv().await } => next,
        };
        let Some(assign) = next else { return };
        let report = if cancelled
            .lock()
            .expect("stops")
            .cancelled
            .contains(&assign.job_id)
        {
            failed(&assign, "job cancelled".into(), false)
        } else {
            map_chunk(&config, assign, &cancelled).await
        };
        if outbox.send(report).await.is_err() {
            return;
        }
    }
}

/// Runs the chunk's map on the blocking pool, catching panics as the chunk's failure.
async fn map_chunk(
    config: &Config,
    mut assign: pb::Assign,
    cancelled: &Cancelled,
) -> pb::WorkerMessage {
    let operation = match config.registry.build(
        &assign.operation,
        &assign.options.clone().into_iter().collect(),
    ) {
        Ok(operation) => operation,
        Err(e) => return failed(&assign, format!("worker {}: {e}", config.name), false),
    };
    let data = std::mem::take(&mut assign.data);
    let (path, start) = assign
        .location
        .as_ref()
        .map_or((String::new(), 0), |l| (l.path.clone(), l.start));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let mut stops = cancelled.lock().expect("stops");
        if stops.cancelled.contains(&assign.job_id) {
            stop.store(true, Ordering::Relaxed);
        }
        stops
            .running
            .push((assign.job_id.clone(), Arc::clone(&stop)));
    }
    let started = std::time::Instant::now();
    let flag = Arc::clone(&stop);
    let mapped = tokio::task::spawn_blocking(move || {
        let data = records::decompress(&path, &data)?;
        let mut stats = ChunkStats::default();
        operation
            .map(
                &Chunk::new(&data, &path, start).with_stop(&flag),
                &mut stats,
            )
            .map(|partial: Partial| (pb::Partial::from(partial), stats))
            .map_err(|e| e.to_string())
    })
    .await;
    cancelled
        .lock()
        .expect("stops")
        .running
        .retain(|(_, s)| !Arc::ptr_eq(s, &stop));
    debug!(job_id = %assign.job_id, chunk_id = assign.chunk, attempt = assign.attempt,
        elapsed = ?started.elapsed(), "chunk mapped");
    if stop.load(Ordering::Relaxed) {
        // Stopped on purpose, not by its input: another attempt may run it (the coordinator
        // drops this report if the job was cancelled).
        let why = format!(
            "worker {}: stopped (job cancelled or worker stopping)",
            config.name
        );
        return failed(&assign, why, true);
    }
    match mapped {
        Ok(Ok((partial, stats))) => message(pb::worker_message::Kind::Done(pb::ChunkDone {
            job_id: assign.job_id,
            chunk: assign.chunk,
            attempt: assign.attempt,
            partial: Some(partial),
            counters: Some(stats.into()),
        })),
        // Map is deterministic: the same input fails the same way on any worker.
        Ok(Err(e)) => failed(&assign, format!("worker {}: {e}", config.name), false),
        Err(join) => {
            let why = join
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                })
                .unwrap_or_else(|| "unknown panic".into());
            failed(
                &assign,
                format!("worker {}: map panicked: {why}", config.name),
                true,
            )
        }
    }
}

fn failed(assign: &pb::Assign, error: String, retryable: bool) -> pb::WorkerMessage {
    message(pb::worker_message::Kind::Failed(pb::ChunkFailed {
        job_id: assign.job_id.clone(),
        chunk: assign.chunk,
        attempt: assign.attempt,
        error,
        retryable,
    }))
}
