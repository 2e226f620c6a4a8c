//! The shuffle over the wire: the `ShuffleService` this worker serves on its shuffle address
//! (the partitions of the map outputs in its [`Spill`]) and the fetch a reducer makes from
//! another worker's. With the attachment, the only worker file that speaks `fanfold_proto`.
//!
//! Every fetch presents the token of the coordinator's welcome ([`Key`]), and the service
//! serves only fetches that present the same one: a map output goes only to workers of the
//! same coordinator. A partition goes out as pieces of [`PIECE_BYTES`]; HTTP/2 flow control bounds what is in
//! flight per fetch, and a reducer fetches one map output at a time, so a reducer holds at
//! most one partition of one map output beyond what it has merged.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

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

/// The shuffle token of the coordinator's latest welcome, shared by this worker's service
/// and its fetcher; none before the first welcome (every fetch is refused then).
#[derive(Clone, Default)]
pub struct Key(Arc<RwLock<Option<transport::Token>>>);

impl Key {
    pub fn set(&self, token: transport::Token) {
        *self.0.write().expect("shuffle key") = Some(token);
    }

    fn get(&self) -> Option<transport::Token> {
        self.0.read().expect("shuffle key").clone()
    }

    /// Whether `presented` (an `authorization` value) is `Bearer` and the current token,
    /// compared in constant time.
    fn admits(&self, presented: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let (Some(token), Some(presented)) = (self.get(), presented) else {
            return false;
        };
        let Some(presented) = presented.strip_prefix("Bearer ") else {
            return false;
        };
        bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes()))
    }
}

struct Server {
    spill: Arc<Spill>,
    key: Key,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ShuffleService for Server {
    type FetchStream = BoxStream<pb::FetchPiece>;

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if !self.key.admits(presented) {
            warn!(peer = ?request.remote_addr(), "refused a shuffle fetch without this coordinator's token");
            return Err(Status::unauthenticated(
                "a shuffle fetch must present the token of this worker's coordinator",
            ));
        }
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
    key: Key,
    shutdown: CancellationToken,
) {
    let service = ShuffleServiceServer::new(Server { spill, key })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut server = match transport::server(None) {
        Ok(server) => server,
        Err(e) => {
            warn!(error = %e, "shuffle service not started");
            return;
        }
    };
    let served = server
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
pub struct Fetcher {
    channels: Mutex<HashMap<String, Channel>>,
    key: Key,
}

impl Fetcher {
    pub fn new(key: Key) -> Fetcher {
        Fetcher {
            channels: Mutex::default(),
            key,
        }
    }

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
                let channel = transport::connect(
                    &format!("http://{}", source.address),
                    &transport::ClientTls::default(),
                )
                .await
                .map_err(|e| failed(source, fanfold_common::error_chain(&e)))?;
                self.channels
                    .lock()
                    .expect("channels")
                    .insert(source.address.clone(), channel.clone());
                channel
            }
        };
        let fetched = fetch(channel, self.key.get(), source, key).await;
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
    token: Option<transport::Token>,
    source: &MapSource,
    key: ReduceKey,
) -> Result<Vec<u8>, FetchError> {
    let failed = |reason: String| failed(source, reason);
    let mut client =
        ShuffleServiceClient::with_interceptor(channel, transport::Bearer::new(token.as_ref()))
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
