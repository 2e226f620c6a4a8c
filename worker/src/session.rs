//! One attachment to the coordinator: the Attach stream, the slot tasks that map chunks, and
//! the heartbeat task. Everything started here stops before [`attach`] returns.
//!
//! Shutdown drains in a fixed order: tell the coordinator (it sends no more chunks), hand back
//! queued chunks unstarted, let running ones finish and report until the drain deadline, then
//! detach. Whatever is still running at the deadline is re-queued by the coordinator when the
//! stream closes.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fanfold_common::chunker::{self, ChunkRange};
use fanfold_common::operation::{self, Chunk, ChunkStats};
use fanfold_common::records;
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::fleet_service_client::FleetServiceClient;
use fanfold_proto::{MAX_MESSAGE_BYTES, PROTOCOL, transport};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

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
    #[error(transparent)]
    Dial(#[from] transport::DialError),
    #[error("attach refused: {}", .0.message())]
    Refused(tonic::Status),
}

/// Queued assignments a session holds beyond its running ones; the coordinator's credits keep
/// it far below this, and a full queue stops reading the stream (backpressure, not growth).
const QUEUE: usize = 64;

/// Jobs and single attempts cancelled during this attachment (their queued chunks are skipped),
/// and the stop flags of the chunks being mapped (set when their job or attempt is cancelled or
/// the attachment ends, so a long map such as a streaming mapper's child process stops early).
#[derive(Default)]
struct Stops {
    jobs: HashSet<String>,
    attempts: HashSet<Key>,
    running: Vec<(Key, Arc<AtomicBool>)>,
}

/// An assignment: job, chunk, attempt.
type Key = (String, u64, u32);

fn key(a: &pb::Assign) -> Key {
    (a.job_id.clone(), a.chunk, a.attempt)
}

impl Stops {
    fn covers(&self, key: &Key) -> bool {
        self.jobs.contains(&key.0) || self.attempts.contains(key)
    }

    fn cancel_job(&mut self, job: String) {
        for (running, stop) in &self.running {
            if running.0 == job {
                stop.store(true, Ordering::Relaxed);
            }
        }
        self.jobs.insert(job);
    }

    fn cancel_attempt(&mut self, key: Key) {
        for (running, stop) in &self.running {
            if *running == key {
                stop.store(true, Ordering::Relaxed);
            }
        }
        self.attempts.insert(key);
    }

    fn stop_all(&self) {
        for (_, stop) in &self.running {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// What the slots share.
struct Shared {
    config: Config,
    assignments: tokio::sync::Mutex<mpsc::Receiver<pb::Assign>>,
    outbox: mpsc::Sender<pb::WorkerMessage>,
    stops: Mutex<Stops>,
    /// Assignments received and not yet reported.
    in_flight: watch::Sender<usize>,
    /// Cancelled when draining: queued chunks are handed back instead of run.
    drain: CancellationToken,
}

pub async fn attach(config: &Config, shutdown: &CancellationToken) -> Result<End, AttachError> {
    let channel = tokio::select! {
        _ = shutdown.cancelled() => return Ok(End::Shutdown),
        channel = transport::dial(&config.coordinator) => channel?,
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
        shared_storage: config.shared_storage,
        protocol: PROTOCOL,
    };
    let _ = outbox.try_send(message(pb::worker_message::Kind::Hello(hello)));
    let mut inbound = tokio::select! {
        _ = shutdown.cancelled() => return Ok(End::Shutdown),
        response = client.attach(ReceiverStream::new(outgoing)) => {
            response.map_err(AttachError::Refused)?.into_inner()
        }
    };

    let session = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (queue, assignments) = mpsc::channel::<pb::Assign>(QUEUE);
    let shared = Arc::new(Shared {
        config: config.clone(),
        assignments: tokio::sync::Mutex::new(assignments),
        outbox: outbox.clone(),
        stops: Mutex::default(),
        in_flight: watch::Sender::new(0),
        drain: CancellationToken::new(),
    });
    for _ in 0..config.slots {
        tasks.spawn(slot(Arc::clone(&shared), session.clone()));
    }
    tasks.spawn(heartbeat(config.heartbeat, outbox.clone(), session.clone()));

    let mut welcomed = false;
    let mut drain_deadline = None;
    // A large chunk's assignment whose pieces are arriving.
    let mut assembling: Option<Assembly> = None;
    let end = loop {
        let mut in_flight = shared.in_flight.subscribe();
        let next = tokio::select! {
            _ = shutdown.cancelled(), if drain_deadline.is_none() => {
                let in_flight = *shared.in_flight.borrow();
                info!(in_flight, "draining");
                drain_deadline = Some(tokio::time::Instant::now() + config.drain_timeout);
                shared.drain.cancel();
                let _ = outbox.send(message(pb::worker_message::Kind::Draining(pb::Draining {}))).await;
                continue;
            }
            _ = async { in_flight.wait_for(|n| *n == 0).await.is_ok() }, if drain_deadline.is_some() => {
                info!("drained");
                break End::Shutdown;
            }
            _ = sleep_until(drain_deadline) => {
                let in_flight = *shared.in_flight.borrow();
                warn!(in_flight, "drain deadline passed; detaching");
                break End::Shutdown;
            }
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
        // A chunk's pieces follow its assignment with nothing between them.
        let piece = matches!(kind, pb::coordinator_message::Kind::Piece(_));
        if piece != assembling.is_some() {
            warn!(piece, "chunk pieces out of order; reattaching");
            break End::Detached { worked: welcomed };
        }
        let ready = match kind {
            pb::coordinator_message::Kind::Welcome(welcome) if welcome.protocol != PROTOCOL => {
                error!(
                    coordinator_protocol = welcome.protocol,
                    protocol = PROTOCOL,
                    "the coordinator speaks another fleet protocol: run the same fanfold release on both"
                );
                break End::Detached { worked: false };
            }
            pb::coordinator_message::Kind::Welcome(welcome) => {
                welcomed = true;
                info!(worker_id = %welcome.worker_id, slots = config.slots, "attached to coordinator");
                None
            }
            pb::coordinator_message::Kind::Assign(assign) if assign.piece_bytes > 0 => {
                match Assembly::new(assign) {
                    Ok(assembly) => assembling = Some(assembly),
                    Err(e) => {
                        warn!(error = %e, "bad chunk assignment; reattaching");
                        break End::Detached { worked: welcomed };
                    }
                }
                None
            }
            pb::coordinator_message::Kind::Assign(assign) => Some(assign),
            pb::coordinator_message::Kind::Piece(piece) => {
                let assembly = assembling.as_mut().expect("checked above");
                if let Err(e) = assembly.add(&piece.data) {
                    warn!(error = %e, "bad chunk piece; reattaching");
                    break End::Detached { worked: welcomed };
                }
                if assembly.is_complete() {
                    assembling.take().map(Assembly::finish)
                } else {
                    None
                }
            }
            pb::coordinator_message::Kind::Cancel(cancel) => {
                info!(job_id = %cancel.job_id, "job cancelled");
                shared
                    .stops
                    .lock()
                    .expect("stops")
                    .cancel_job(cancel.job_id);
                None
            }
            pb::coordinator_message::Kind::CancelAttempt(c) => {
                debug!(job_id = %c.job_id, chunk_id = c.chunk, attempt = c.attempt, "attempt cancelled");
                let key = (c.job_id, c.chunk, c.attempt);
                shared.stops.lock().expect("stops").cancel_attempt(key);
                None
            }
        };
        if let Some(assign) = ready {
            shared.in_flight.send_modify(|n| *n += 1);
            // Credits keep the queue short; a full one pushes back on the stream.
            if queue.send(assign).await.is_err() {
                break End::Shutdown;
            }
        }
    };
    session.cancel();
    shared.stops.lock().expect("stops").stop_all();
    drop(queue);
    drop(outbox);
    tasks.close();
    tasks.wait().await;
    Ok(end)
}

/// A large chunk's bytes, gathered from the pieces that follow its assignment.
struct Assembly {
    assign: pb::Assign,
    data: Vec<u8>,
    expected: usize,
}

impl Assembly {
    fn new(assign: pb::Assign) -> Result<Assembly, String> {
        let expected = usize::try_from(assign.piece_bytes)
            .ok()
            .filter(|&n| n <= MAX_MESSAGE_BYTES)
            .ok_or_else(|| format!("a chunk of {} bytes", assign.piece_bytes))?;
        Ok(Assembly {
            assign,
            data: Vec::with_capacity(expected),
            expected,
        })
    }

    fn add(&mut self, piece: &[u8]) -> Result<(), String> {
        if self.data.len() + piece.len() > self.expected {
            return Err(format!(
                "pieces of more than the {} bytes announced",
                self.expected
            ));
        }
        self.data.extend_from_slice(piece);
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.data.len() == self.expected
    }

    /// The assignment with its bytes inline, as if they had come with it.
    fn finish(self) -> pb::Assign {
        pb::Assign {
            data: Bytes::from(self.data),
            piece_bytes: 0,
            ..self.assign
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
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
                let beat = message(pb::worker_message::Kind::Heartbeat(pb::Heartbeat {}));
                if outbox.send(beat).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One slot: maps one chunk at a time on the blocking pool and reports it.
async fn slot(shared: Arc<Shared>, session: CancellationToken) {
    loop {
        let next = tokio::select! {
            _ = session.cancelled() => return,
            next = async { shared.assignments.lock().await.recv().await } => next,
        };
        let Some(assign) = next else { return };
        let report = if shared.drain.is_cancelled() {
            message(pb::worker_message::Kind::Released(pb::ChunkReleased {
                job_id: assign.job_id,
                chunk: assign.chunk,
                attempt: assign.attempt,
                unreadable: String::new(),
            }))
        } else if shared.stops.lock().expect("stops").covers(&key(&assign)) {
            failed(&assign, "cancelled".into(), false)
        } else {
            map_chunk(&shared.config, assign, &shared.stops).await
        };
        let sent = shared.outbox.send(report).await;
        shared.in_flight.send_modify(|n| *n -= 1);
        if sent.is_err() {
            return;
        }
    }
}

/// Runs the chunk's map on the blocking pool, catching panics as the chunk's failure. In skip
/// mode, failing records are isolated and reported with the rest of the chunk's result.
async fn map_chunk(
    config: &Config,
    mut assign: pb::Assign,
    stops: &Mutex<Stops>,
) -> pb::WorkerMessage {
    let options = assign.options.clone().into_iter().collect();
    let operation = match config.registry.build(&assign.operation, &options) {
        Ok(operation) => operation,
        Err(e) => return failed(&assign, format!("worker {}: {e}", config.name), false),
    };
    let data = std::mem::take(&mut assign.data);
    let shared_path = std::mem::take(&mut assign.shared_path);
    let skip = assign.skip_bad_records;
    let (path, range) = assign.location.as_ref().map_or_else(
        || (String::new(), ChunkRange::default()),
        |l| {
            let range = ChunkRange {
                file: 0,
                start: l.start,
                end: l.end,
            };
            (l.path.clone(), range)
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    {
        let mut stops = stops.lock().expect("stops");
        if stops.covers(&key(&assign)) {
            stop.store(true, Ordering::Relaxed);
        }
        stops.running.push((key(&assign), Arc::clone(&stop)));
    }
    let started = std::time::Instant::now();
    let flag = Arc::clone(&stop);
    let mapped = tokio::task::spawn_blocking(move || {
        let data = if shared_path.is_empty() {
            data
        } else {
            match chunker::read(Path::new(&shared_path), range) {
                Ok(data) => Bytes::from(data),
                Err(e) => return Err(Failure::Unreadable(format!("{shared_path}: {e}"))),
            }
        };
        let data = records::decompress(&path, &data).map_err(Failure::Map)?;
        let mut stats = ChunkStats::default();
        let chunk = Chunk::new(&data, &path, range.start).with_stop(&flag);
        let (partial, bad) = if skip {
            operation::map_isolating(operation.as_ref(), &chunk, &mut stats)
                .map_err(|e| Failure::Map(e.to_string()))?
        } else {
            let partial = operation
                .map(&chunk, &mut stats)
                .map_err(|e| Failure::Map(e.to_string()))?;
            (partial, Vec::new())
        };
        Ok((pb::Partial::from(partial), stats, bad))
    })
    .await;
    stops
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
        Ok(Ok((partial, stats, bad))) => message(pb::worker_message::Kind::Done(pb::ChunkDone {
            job_id: assign.job_id,
            chunk: assign.chunk,
            attempt: assign.attempt,
            partial: Some(partial),
            counters: Some(stats.into()),
            bad_records: bad.into_iter().map(Into::into).collect(),
        })),
        // Retried, on another worker where possible: the cause may be local to this one.
        Ok(Err(Failure::Map(e))) => failed(&assign, format!("worker {}: {e}", config.name), true),
        Ok(Err(Failure::Unreadable(e))) => {
            warn!(job_id = %assign.job_id, chunk_id = assign.chunk, error = %e,
                "cannot read a chunk on shared storage; handing it back");
            message(pb::worker_message::Kind::Released(pb::ChunkReleased {
                job_id: assign.job_id,
                chunk: assign.chunk,
                attempt: assign.attempt,
                unreadable: format!("worker {}: cannot read {e}", config.name),
            }))
        }
        Err(join) => {
            let why = match join.try_into_panic() {
                Ok(panic) => operation::panic_message(panic.as_ref()),
                Err(e) => e.to_string(),
            };
            let error = format!("worker {}: map panicked: {why}", config.name);
            failed(&assign, error, true)
        }
    }
}

/// Why a chunk was not mapped.
enum Failure {
    /// Its bytes could not be read by reference: the coordinator sends them inline instead.
    Unreadable(String),
    /// Decompressing or mapping it failed.
    Map(String),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(bytes: u64) -> pb::Assign {
        pb::Assign {
            job_id: "j".into(),
            chunk: 3,
            piece_bytes: bytes,
            ..Default::default()
        }
    }

    #[test]
    fn pieces_make_the_chunk_and_no_more() {
        let mut assembly = Assembly::new(announced(10)).unwrap();
        assembly.add(b"0123").unwrap();
        assert!(!assembly.is_complete());
        assembly.add(b"456789").unwrap();
        assert!(assembly.is_complete());
        let assign = assembly.finish();
        assert_eq!(&assign.data[..], b"0123456789");
        assert_eq!((assign.chunk, assign.piece_bytes), (3, 0));

        let mut too_much = Assembly::new(announced(3)).unwrap();
        assert!(too_much.add(b"abcd").is_err());
        let huge = MAX_MESSAGE_BYTES as u64 + 1;
        assert!(Assembly::new(announced(huge)).is_err());
    }
}
