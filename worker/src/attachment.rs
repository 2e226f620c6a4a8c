//! One attachment to the coordinator: the Attach stream, hello and welcome (with the fleet
//! protocol check), the pieces a large chunk arrives in, and the heartbeat. The only file of
//! the worker that speaks the wire (`fanfold_proto`): it turns what arrives into fleet
//! messages (`fanfold_common::fleet`) for the [`Executor`] and what the executor reports back
//! into wire messages. Everything started here stops before [`attach`] returns.
//!
//! Shutdown drains in a fixed order: tell the coordinator (it sends no more chunks), hand back
//! queued chunks unstarted, let running ones finish and report until the drain deadline, then
//! detach. Whatever is still running at the deadline is re-queued by the coordinator when the
//! stream closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfold_common::fleet::{
    Assignment, AttemptKey, FromWorker, ReduceAssignment, ReduceReport, Report, ToWorker,
    WorkerHello,
};
use fanfold_common::ids::{Attempt, ChunkId};
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::fleet_service_client::FleetServiceClient;
use fanfold_proto::{MAX_MESSAGE_BYTES, PROTOCOL, transport};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::executor::{Executor, Work};
use crate::jobs::Jobs;
use crate::{Config, Shuffle};

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

/// Messages waiting to go out beyond the slots' reports: heartbeats and the drain notice.
const OUTBOX_SPARE: usize = 8;

pub async fn attach(
    config: &Config,
    jobs: &Arc<Jobs>,
    shuffle: &Shuffle,
    metrics: &crate::metrics::Metrics,
    shutdown: &CancellationToken,
) -> Result<End, AttachError> {
    let channel = tokio::select! {
        _ = shutdown.cancelled() => return Ok(End::Shutdown),
        channel = transport::dial(&config.coordinator, &config.security) => channel?,
    };
    let mut client = FleetServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (outbox, outgoing) = mpsc::channel(config.slots as usize + OUTBOX_SPARE);
    let hello = WorkerHello {
        name: config.name.clone(),
        slots: config.slots,
        version: fanfold_common::VERSION.to_owned(),
        operations: config.registry.names(),
        shared_storage: config.shared_storage,
        protocol: PROTOCOL,
        shuffle_address: shuffle.address.clone(),
        local_roots: jobs.local_roots().map_or_else(Vec::new, |roots| {
            roots
                .paths()
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        }),
    };
    let _ = outbox.try_send(FromWorker::Hello(hello));
    let outgoing = ReceiverStream::new(outgoing).map(pb::WorkerMessage::from);
    let mut inbound = tokio::select! {
        _ = shutdown.cancelled() => return Ok(End::Shutdown),
        response = client.attach(outgoing) => response.map_err(AttachError::Refused)?.into_inner(),
    };

    let executor = Executor::start(
        &config.name,
        config.slots,
        Arc::clone(jobs),
        shuffle,
        metrics.clone(),
        outbox.clone(),
    );
    let session = CancellationToken::new();
    let beating = tokio::spawn(heartbeat(config.heartbeat, outbox.clone(), session.clone()));

    let mut welcomed = false;
    let mut drain_deadline = None;
    // A large chunk's assignment whose pieces are arriving.
    let mut assembling: Option<Assembly> = None;
    let end = loop {
        let mut in_flight = executor.in_flight();
        let next = tokio::select! {
            _ = shutdown.cancelled(), if drain_deadline.is_none() => {
                info!(in_flight = *in_flight.borrow(), "draining");
                drain_deadline = Some(tokio::time::Instant::now() + config.drain_timeout);
                executor.drain();
                let _ = outbox.send(FromWorker::Draining).await;
                continue;
            }
            _ = async { in_flight.wait_for(|n| *n == 0).await.is_ok() }, if drain_deadline.is_some() => {
                info!("drained");
                break End::Shutdown;
            }
            _ = sleep_until(drain_deadline) => {
                warn!(in_flight = *in_flight.borrow(), "drain deadline passed; detaching");
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
                let dirs: Vec<std::path::PathBuf> =
                    welcome.data_roots.iter().map(Into::into).collect();
                match fanfold_common::roots::Roots::new(&dirs) {
                    Ok(roots) => jobs.set_roots(roots),
                    Err(e) => {
                        if config.shared_storage {
                            warn!(error = %e, "cannot open the coordinator's data roots; \
                                its chunks of files will come inline");
                        }
                        // Object prefixes need no directory here: objects are still read
                        // directly, beneath them (and local files, refused, come inline).
                        let prefixes: Vec<std::path::PathBuf> = dirs
                            .into_iter()
                            .filter(|d| {
                                d.to_str()
                                    .and_then(fanfold_common::location::scheme)
                                    .is_some_and(fanfold_common::objects::is_object_scheme)
                            })
                            .collect();
                        if !prefixes.is_empty()
                            && let Ok(roots) = fanfold_common::roots::Roots::new(&prefixes)
                        {
                            jobs.set_roots(roots);
                        }
                    }
                }
                match transport::Token::new(&welcome.shuffle_token) {
                    Ok(token) => shuffle.set_token(token),
                    Err(_) => {
                        warn!("the welcome named no shuffle token; shuffle fetches will fail")
                    }
                }
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
            pb::coordinator_message::Kind::Reduce(reduce) => {
                let named = reduce.key.clone();
                match ReduceAssignment::try_from(reduce) {
                    Ok(task) => {
                        if !executor.submit(Work::Reduce(task)).await {
                            break End::Shutdown;
                        }
                    }
                    // One bad reduce task fails its attempt, not the attachment.
                    Err(e) => match named.map(|k| (k.job_id.parse(), k.partition, k.attempt)) {
                        Some((Ok(job), partition, attempt)) => {
                            warn!(error = %e, "bad reduce task; failing it");
                            let key = fanfold_common::fleet::ReduceKey {
                                job,
                                partition,
                                attempt: Attempt(attempt),
                            };
                            let report = ReduceReport::Failed {
                                error: format!("worker {}: bad reduce task: {e}", config.name),
                                retryable: false,
                                lost: None,
                            };
                            let _ = outbox.send(FromWorker::Reduced { key, report }).await;
                        }
                        _ => {
                            warn!(error = %e, "bad reduce task; reattaching");
                            break End::Detached { worked: welcomed };
                        }
                    },
                }
                None
            }
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
                match ToWorker::try_from(cancel) {
                    Ok(ToWorker::Cancel(job)) => {
                        info!(job_id = %job, "job cancelled");
                        executor.cancel_job(job);
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "ignored a malformed cancel"),
                }
                None
            }
            pb::coordinator_message::Kind::ListLocal(listing) => {
                let ToWorker::ListLocal(listing) = ToWorker::from(listing) else {
                    unreachable!("a listing converts to a listing");
                };
                // Off the stream's task: listing a large directory takes a while.
                let (jobs, outbox) = (Arc::clone(jobs), outbox.clone());
                tokio::spawn(async move {
                    let request = listing.request;
                    let result = tokio::task::spawn_blocking(move || {
                        crate::local::list(jobs.local_roots(), &listing)
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                    let _ = outbox
                        .send(FromWorker::LocalListed { request, result })
                        .await;
                });
                None
            }
            pb::coordinator_message::Kind::CancelAttempt(cancel) => {
                match ToWorker::try_from(cancel) {
                    Ok(ToWorker::CancelAttempt(key)) => {
                        debug!(job_id = %key.job, chunk_id = %key.chunk, attempt = %key.attempt,
                            "attempt cancelled");
                        executor.cancel_attempt(key);
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "ignored a malformed attempt cancel"),
                }
                None
            }
        };
        if let Some(assign) = ready {
            let named = (assign.job_id.parse(), assign.chunk, assign.attempt);
            let assignment = match Assignment::try_from(assign) {
                Ok(assignment) => assignment,
                Err(e) => match named {
                    // One bad assignment fails its attempt, not the attachment.
                    (Ok(job), chunk, attempt) => {
                        warn!(error = %e, "bad chunk assignment; failing it");
                        let key = AttemptKey {
                            job,
                            chunk: ChunkId(chunk),
                            attempt: Attempt(attempt),
                        };
                        let error = format!("worker {}: bad assignment: {e}", config.name);
                        let report = Report::Failed {
                            error,
                            retryable: false,
                        };
                        let _ = outbox.send(FromWorker::Report { key, report }).await;
                        continue;
                    }
                    (Err(_), _, _) => {
                        warn!(error = %e, "bad chunk assignment; reattaching");
                        break End::Detached { worked: welcomed };
                    }
                },
            };
            // Credits keep the queue short; a full one pushes back on the stream.
            if !executor.submit(Work::Map(assignment)).await {
                break End::Shutdown;
            }
        }
    };
    session.cancel();
    let _ = beating.await;
    executor.stop().await;
    drop(outbox);
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

async fn heartbeat(every: Duration, outbox: mpsc::Sender<FromWorker>, session: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = session.cancelled() => return,
            _ = ticks.tick() => {
                if outbox.send(FromWorker::Heartbeat).await.is_err() {
                    return;
                }
            }
        }
    }
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
