//! The shuffle over the wire: the `ShuffleService` this worker serves on its shuffle address
//! (the partitions of the map outputs in its [`Spill`]) and the fetch a reducer makes from
//! another worker's. With the attachment, the only worker file that speaks `fanfold_proto`.
//!
//! A partition goes out as pieces of [`PIECE_BYTES`]; HTTP/2 flow control bounds what is in
//! flight per fetch, and a reducer fetches one map output at a time, so a reducer holds at
//! most one partition of one map output beyond what it has merged.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use fanfold_common::fleet::{MapSource, ReduceKey};
use fanfold_common::ids::{Attempt, ChunkId, JobId};
use fanfold_proto::v1 as pb;
use fanfold_proto::v1::shuffle_service_client::ShuffleServiceClient;
use fanfold_proto::v1::shuffle_service_server::{ShuffleService, ShuffleServiceServer};
use fanfold_proto::{MAX_MESSAGE_BYTES, transport};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::spill::Spill;

/// Bytes per fetched piece.
const PIECE_BYTES: usize = 512 << 10;

struct Server {
    spill: Arc<Spill>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ShuffleService for Server {
    type FetchStream = BoxStream<pb::FetchPiece>;

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let r = request.into_inner();
        let job: JobId = r
            .job_id
            .parse()
            .map_err(|e: fanfold_common::ids::BadJobId| Status::invalid_argument(e.to_string()))?;
        let spill = Arc::clone(&self.spill);
        let (chunk, attempt, partition) = (ChunkId(r.chunk), Attempt(r.attempt), r.partition);
        let data = tokio::task::spawn_blocking(move || spill.read(job, chunk, attempt, partition))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| {
                Status::not_found(format!(
                    "map output of chunk {chunk} attempt {attempt} partition {partition} of \
                         job {job}: {e}"
                ))
            })?;
        let data = bytes::Bytes::from(data);
        let pieces = (0..data.len().max(1))
            .step_by(PIECE_BYTES)
            .map(move |at| {
                Ok(pb::FetchPiece {
                    data: data.slice(at.min(data.len())..data.len().min(at + PIECE_BYTES)),
                })
            })
            .collect::<Vec<_>>();
        Ok(Response::new(Box::pin(tokio_stream::iter(pieces))))
    }
}

/// Serves the map outputs in `spill` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    spill: Arc<Spill>,
    shutdown: CancellationToken,
) {
    let service = ShuffleServiceServer::new(Server { spill })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let served = transport::server()
        .add_service(service)
        .serve_with_incoming_shutdown(transport::incoming(listener), shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        warn!(error = %e, "shuffle service stopped");
    }
}

/// Why a fetch failed: the map output is unreachable or gone.
#[derive(Debug, thiserror::Error)]
#[error("cannot fetch chunk {chunk}'s map output (attempt {attempt}) from {address}: {reason}")]
pub struct FetchError {
    pub chunk: ChunkId,
    pub attempt: Attempt,
    pub address: String,
    pub reason: String,
}

/// One connection per serving worker, shared by this worker's reduce tasks: a reduce task
/// fetches from every map output, and a dial per fetch cost more than the fetch.
#[derive(Default)]
pub struct Fetcher {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Fetcher {
    /// Fetches `key`'s partition of the map output `source` from the worker that keeps it.
    pub async fn fetch(&self, source: &MapSource, key: ReduceKey) -> Result<Vec<u8>, FetchError> {
        let cached = self
            .channels
            .lock()
            .expect("channels")
            .get(&source.address)
            .cloned();
        let channel = match cached {
            Some(channel) => channel,
            None => {
                let channel = transport::dial(&format!("http://{}", source.address))
                    .await
                    .map_err(|e| failed(source, fanfold_common::error_chain(&e)))?;
                self.channels
                    .lock()
                    .expect("channels")
                    .insert(source.address.clone(), channel.clone());
                channel
            }
        };
        let fetched = fetch(channel, source, key).await;
        if fetched.is_err() {
            // A broken connection is dialled afresh next time.
            self.channels
                .lock()
                .expect("channels")
                .remove(&source.address);
        }
        fetched
    }
}

fn failed(source: &MapSource, reason: String) -> FetchError {
    FetchError {
        chunk: source.chunk,
        attempt: source.attempt,
        address: source.address.clone(),
        reason,
    }
}

async fn fetch(
    channel: Channel,
    source: &MapSource,
    key: ReduceKey,
) -> Result<Vec<u8>, FetchError> {
    let failed = |reason: String| failed(source, reason);
    let mut client = ShuffleServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let request = pb::FetchRequest {
        job_id: key.job.to_string(),
        chunk: source.chunk.0,
        attempt: source.attempt.0,
        partition: key.partition,
    };
    let mut pieces = client
        .fetch(request)
        .await
        .map_err(|s| failed(s.message().to_owned()))?
        .into_inner();
    let mut data = Vec::new();
    while let Some(piece) = pieces
        .message()
        .await
        .map_err(|s| failed(s.message().to_owned()))?
    {
        data.extend_from_slice(&piece.data);
    }
    Ok(data)
}
