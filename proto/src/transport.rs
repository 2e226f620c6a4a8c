//! The one transport kit: every gRPC channel fanfold dials (worker, client, benchmarks) and
//! every server it serves is set up here, so timeouts, keepalives, message limits and, later,
//! TLS and authentication are decided in one place.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint, Server};

/// How long dialing may take before it fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 pings on idle connections: a peer that vanished without closing (a killed machine,
/// a dropped network) is noticed within about twice this.
pub const KEEPALIVE: Duration = Duration::from_secs(10);

/// Why a channel could not be opened; the caller names the address.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("bad address: {0}")]
    Address(#[source] tonic::transport::Error),
    #[error("cannot connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("timed out after {CONNECT_TIMEOUT:?}")]
    TimedOut,
}

/// The endpoint for `address` (`http://host:port`) with fanfold's settings: a connect
/// timeout, keepalive pings also while idle, and TCP_NODELAY (small messages such as an
/// assignment or a status must not wait for a delayed ACK).
pub fn endpoint(address: &str) -> Result<Endpoint, DialError> {
    Ok(Endpoint::from_shared(address.to_owned())
        .map_err(DialError::Address)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true))
}

/// Opens one HTTP/2 connection to `address`, within [`CONNECT_TIMEOUT`].
pub async fn dial(address: &str) -> Result<Channel, DialError> {
    let endpoint = endpoint(address)?;
    match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(DialError::Connect(source)),
        Err(_) => Err(DialError::TimedOut),
    }
}

/// A server builder with fanfold's settings (keepalive pings). Services added to it set
/// [`crate::MAX_MESSAGE_BYTES`] as their message limits; accepted connections get
/// TCP_NODELAY from [`incoming`].
pub fn server() -> Server {
    Server::builder().http2_keepalive_interval(Some(KEEPALIVE))
}

/// The connections accepted on `listener`, with TCP_NODELAY: without it, Nagle's algorithm
/// holds a small write (an assignment, a status update) until the peer's delayed ACK, about
/// 40 ms on Linux, and a small job pays that several times over.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
