//! The one transport kit: every gRPC channel fanfold dials (worker, client, benchmarks) and
//! every server it serves is set up here, so timeouts, keepalives, message limits, TLS and the
//! bearer token a client presents are decided in one place.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};

/// How long dialing may take before it fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 pings on idle connections: a peer that vanished without closing (a killed machine,
/// a dropped network) is noticed within about twice this.
pub const KEEPALIVE: Duration = Duration::from_secs(10);

/// A secret a client presents as `authorization: Bearer ...`. Never printed: its `Debug`
/// shows only that there is one.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<secret>)")
    }
}

/// A token that cannot be sent: it must be visible ASCII with no spaces.
#[derive(Debug, thiserror::Error)]
#[error("a token must be 1 to 512 visible ASCII characters with no spaces")]
pub struct BadToken;

impl Token {
    /// Takes a token as given, without the whitespace around it (a file's final newline).
    pub fn new(text: &str) -> Result<Token, BadToken> {
        let text = text.trim();
        if text.is_empty() || text.len() > 512 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BadToken);
        }
        Ok(Token(text.into()))
    }

    /// The secret itself, for the one place that sends or hashes it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Adds the client's token, if it has one, to every request of a channel.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&Token>) -> Bearer {
        Bearer(token.map(|token| {
            let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.expose())
                .parse()
                .expect("a Token is visible ASCII");
            value.set_sensitive(true);
            value
        }))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel that presents the client's token with every request.
pub type Connection = InterceptedService<Channel, Bearer>;

/// PEM files a client trusts and presents, for `https://` addresses.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// The CA that signed the server's certificate; without it, the public web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and its key, for a coordinator that asks workers for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ClientTls {
    /// Says what is set, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca_pem.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    fn configured(&self) -> bool {
        self.ca_pem.is_some() || self.identity.is_some()
    }
}

/// How a client reaches a server: TLS for `https://` and the token it presents.
#[derive(Clone, Debug, Default)]
pub struct ClientSecurity {
    pub tls: ClientTls,
    pub token: Option<Token>,
}

/// A server's certificate and key (PEM), and the CA whose client certificates it accepts.
#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// With it, a client may present a certificate signed by this CA, and the coordinator
    /// requires one of workers (mutual TLS); clients without one are still served.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for ServerTls {
    /// Says what is set, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_ca", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a channel could not be opened; the caller names the address.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("bad address: {0}")]
    Address(#[source] tonic::transport::Error),
    #[error("bad TLS settings: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("TLS settings were given but the address is plain http://; write https:// to use TLS")]
    PlainWithTls,
    #[error("cannot connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("timed out after {CONNECT_TIMEOUT:?}")]
    TimedOut,
}

/// The endpoint for `address` (`http://host:port` or `https://host:port`) with fanfold's
/// settings: a connect timeout, keepalive pings also while idle, and TCP_NODELAY (small
/// messages such as an assignment or a status must not wait for a delayed ACK). An `https://`
/// address always uses TLS (there is no fallback to plain text); TLS settings with an
/// `http://` address are refused rather than ignored.
pub fn endpoint(address: &str, tls: &ClientTls) -> Result<Endpoint, DialError> {
    let endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(DialError::Address)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true);
    if endpoint.uri().scheme_str() != Some("https") {
        return if tls.configured() {
            Err(DialError::PlainWithTls)
        } else {
            Ok(endpoint)
        };
    }
    let mut config = ClientTlsConfig::new().timeout(CONNECT_TIMEOUT);
    config = match &tls.ca_pem {
        Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
        None => config.with_webpki_roots(),
    };
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    endpoint.tls_config(config).map_err(DialError::Tls)
}

/// Opens one HTTP/2 connection to `address`, within [`CONNECT_TIMEOUT`]; every request on it
/// presents `security`'s token.
pub async fn dial(address: &str, security: &ClientSecurity) -> Result<Connection, DialError> {
    let channel = connect(address, &security.tls).await?;
    Ok(InterceptedService::new(
        channel,
        Bearer::new(security.token.as_ref()),
    ))
}

/// Opens one HTTP/2 connection to `address`, within [`CONNECT_TIMEOUT`], for a caller that
/// sets each request's metadata itself.
pub async fn connect(address: &str, tls: &ClientTls) -> Result<Channel, DialError> {
    let endpoint = endpoint(address, tls)?;
    match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(DialError::Connect(source)),
        Err(_) => Err(DialError::TimedOut),
    }
}

/// A server builder with fanfold's settings (keepalive pings, and TLS if given). Services
/// added to it set [`crate::MAX_MESSAGE_BYTES`] or a smaller limit; accepted connections get
/// TCP_NODELAY from [`incoming`].
pub fn server(tls: Option<&ServerTls>) -> Result<Server, tonic::transport::Error> {
    let server = Server::builder().http2_keepalive_interval(Some(KEEPALIVE));
    let Some(tls) = tls else {
        return Ok(server);
    };
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
        .timeout(CONNECT_TIMEOUT);
    if let Some(ca) = &tls.client_ca_pem {
        config = config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(true);
    }
    server.tls_config(config)
}

/// The connections accepted on `listener`, with TCP_NODELAY: without it, Nagle's algorithm
/// holds a small write (an assignment, a status update) until the peer's delayed ACK, about
/// 40 ms on Linux, and a small job pays that several times over.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
