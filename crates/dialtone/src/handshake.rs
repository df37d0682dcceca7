//! The I/O side of the opening handshake, shared by the async and blocking
//! faces: what to do with the bytes read so far. The rules are the core's
//! (`dialtone_proto::handshake`); this module only decides when a head is
//! complete and what to answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use dialtone_proto::handshake::{self as hs, ClientHandshake, Reject, ResponseHead};
use dialtone_proto::http::{HeaderMap, Request, StatusCode};
use dialtone_proto::{Config, Connection, OriginPolicy, Role};

use crate::error::{Error, Result};

/// The server's answer to a successful client handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status line and headers (status is always 101 here).
    pub head: ResponseHead,
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// permessage-deflate as agreed, if the server accepted an offer.
    pub deflate: Option<dialtone_proto::Agreed>,
    /// The URL finally dialed, after redirects.
    pub url: url::Url,
}

/// Reads of a handshake head go in pieces of this size.
pub(crate) const HANDSHAKE_READ: usize = 4096;

/// Given the server's complete `101` head (`len` bytes at the start of
/// `buf`): the connection and response. Bytes after the head are handed to
/// the connection.
pub(crate) fn client_step(
    request: &ClientHandshake,
    config: &Config,
    head: ResponseHead,
    len: usize,
    buf: &mut BytesMut,
    url: &url::Url,
) -> Result<(Connection, Response)> {
    let negotiated = request.check_response(&head)?;
    buf.advance(len);
    let mut conn = Connection::with_deflate(Role::Client, config.clone(), negotiated.deflate);
    conn.read_buffer().extend_from_slice(buf);
    buf.clear();
    Ok((
        conn,
        Response {
            head,
            protocol: negotiated.protocol,
            deflate: negotiated.deflate,
            url: url.clone(),
        },
    ))
}

/// Decides which subprotocol to speak, or refuses, given the request and
/// the subprotocols the client offered (in its order of preference).
pub type RequestCallback =
    dyn Fn(&Request<()>, &[String]) -> std::result::Result<Option<String>, Reject> + Send + Sync;

/// The listener's policy: limits, subprotocols, and an optional callback to
/// inspect each request.
#[derive(Clone)]
pub struct Acceptor {
    pub(crate) config: Config,
    pub(crate) protocols: Vec<String>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) keepalive: Option<(Duration, Duration)>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) callback: Option<Arc<RequestCallback>>,
    /// How long a write of a plain HTTP response or a refusal may make no
    /// progress.
    pub(crate) write_timeout: Duration,
    /// Which pages may open WebSockets here (`Origin`).
    pub(crate) origin: OriginPolicy,
    /// Handshakes in progress at once, shared by clones of this acceptor.
    pub(crate) handshakes: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("config", &self.config)
            .field("protocols", &self.protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("callback", &self.callback.is_some())
            .field("write_timeout", &self.write_timeout)
            .field("origin", &self.origin)
            .finish()
    }
}

impl Default for Acceptor {
    fn default() -> Self {
        Acceptor {
            config: Config::default(),
            protocols: Vec::new(),
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            close_timeout: crate::socket::DEFAULT_CLOSE_TIMEOUT,
            keepalive: None,
            idle_timeout: None,
            callback: None,
            write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
            origin: OriginPolicy::default(),
            handshakes: Arc::new(tokio::sync::Semaphore::new(
                Self::DEFAULT_MAX_CONCURRENT_HANDSHAKES,
            )),
        }
    }
}

impl Acceptor {
    /// Handshakes in progress at once by default; past it, clients are
    /// answered `503` at once instead of holding memory and a task each.
    pub const DEFAULT_MAX_CONCURRENT_HANDSHAKES: usize = 16_384;

    /// Limits the handshakes in progress at once (over every connection
    /// accepted with this acceptor or its clones); past it, a client gets
    /// `503 Service Unavailable` at once. Default 16,384 (each holds at most
    /// the 16 KiB handshake limit while it lasts).
    pub fn max_concurrent_handshakes(mut self, n: usize) -> Self {
        self.handshakes = Arc::new(tokio::sync::Semaphore::new(n));
        self
    }

    /// How long a client has to send its whole handshake by default.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// The default [`Acceptor::write_timeout`].
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

    /// An acceptor with default limits and no subprotocols.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets limits (frame, message and handshake sizes) and the
    /// permessage-deflate policies ([`Config::deflate`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Adds a subprotocol this server speaks. The first one the client offers
    /// that is in this list is chosen (client's preference order).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Sets how long a client has to complete its handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Pings each client every `interval`; one that does not answer within
    /// `pong_deadline` is dropped.
    pub fn keepalive(mut self, interval: Duration, pong_deadline: Duration) -> Self {
        self.keepalive = Some((interval, pong_deadline));
        self
    }

    /// Closes connections with `GoingAway` when nothing arrives from the
    /// client for this long.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Sets how long to wait for the peer's part of the closing handshake.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets a callback that sees each valid request and the subprotocols
    /// offered, and returns the subprotocol to speak (or none), or a
    /// [`Reject`] to refuse with a status. It replaces the
    /// [`Acceptor::protocol`] list.
    pub fn on_request<F>(mut self, callback: F) -> Self
    where
        F: Fn(&Request<()>, &[String]) -> std::result::Result<Option<String>, Reject>
            + Send
            + Sync
            + 'static,
    {
        self.callback = Some(Arc::new(callback));
        self
    }

    /// How long writing a plain HTTP response ([`crate::HttpRequest`]) or a
    /// refusal may go without the client taking any of it before the
    /// connection is dropped (default [`Acceptor::DEFAULT_WRITE_TIMEOUT`]):
    /// a client that never reads cannot hold a response open.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Which web pages may open a WebSocket here, by their `Origin`
    /// header. The default, [`OriginPolicy::same_host`], accepts clients
    /// that send no `Origin` (those that are not browsers) and pages served
    /// from the host and port the request was sent to, and refuses every
    /// other page with `403`: without it, any site open in a user's browser
    /// could drive this server as that user (cross-site WebSocket
    /// hijacking). See [`dialtone_proto::origin`].
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origin = policy;
        self
    }

    /// After reading into `buf`: `Ok(None)` until the request head is
    /// complete; then the bytes to answer with and, if accepted, the
    /// connection. A refusal's answer must be written before the error is
    /// reported.
    pub(crate) fn step(&self, buf: &mut BytesMut) -> Result<Option<ServerOutcome>, Reject> {
        let Some((request, len)) = hs::parse_request(buf, self.config.max_handshake_size)? else {
            return Ok(None);
        };
        let offer = hs::check_request(&request)?;
        self.origin.check(&request)?;
        let protocol = match &self.callback {
            Some(callback) => {
                let chosen = callback(&request, &offer.protocols)?;
                if let Some(p) = &chosen {
                    if !offer.protocols.contains(p) {
                        return Err(Reject::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "server chose a subprotocol the client did not offer",
                        ));
                    }
                }
                chosen
            }
            None => offer
                .protocols
                .iter()
                .find(|p| self.protocols.contains(p))
                .cloned(),
        };
        buf.advance(len);
        let deflate = dialtone_proto::deflate::negotiate(&self.config.deflate, &offer.extensions);
        let extensions = deflate.as_ref().map(|(ext, _)| ext.to_string());
        let answer = hs::accept_response(
            &offer.accept,
            protocol.as_deref(),
            extensions.as_deref(),
            &HeaderMap::new(),
        );
        let agreed = deflate.map(|(_, agreed)| agreed);
        let mut conn = Connection::with_deflate(Role::Server, self.config.clone(), agreed);
        conn.read_buffer().extend_from_slice(buf);
        buf.clear();
        Ok(Some(ServerOutcome {
            answer,
            conn,
            request,
            protocol,
            extensions,
        }))
    }
}

/// A request accepted by [`Acceptor::step`].
pub(crate) struct ServerOutcome {
    pub(crate) answer: Vec<u8>,
    pub(crate) conn: Connection,
    pub(crate) request: Request<()>,
    pub(crate) protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` value answered, if any.
    pub(crate) extensions: Option<String>,
}

/// The `Host` header and request target for a `ws://` URL.
pub(crate) fn target(url: &url::Url) -> Result<(String, String, u16)> {
    if url.fragment().is_some() {
        // RFC 6455 §3: fragment identifiers MUST NOT be used.
        return Err(Error::Url("a WebSocket URL has no fragment".into()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Error::Url(format!("{url} has no host")))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Error::Url(format!("{url} has no port")))?;
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let mut resource = url.path().to_owned();
    if let Some(q) = url.query() {
        resource.push('?');
        resource.push_str(q);
    }
    Ok((host_header, resource, port))
}

/// The name or address to resolve and connect to for `url`: its host, with
/// an IPv6 literal's brackets removed (`host_str` keeps them).
pub(crate) fn connect_host(url: &url::Url) -> Result<String> {
    match url.host() {
        Some(url::Host::Ipv6(addr)) => Ok(addr.to_string()),
        Some(host) => Ok(host.to_string()),
        None => Err(Error::Url(format!("{url} has no host"))),
    }
}

/// Parses and checks a dialable URL.
pub(crate) fn parse_url(url: &str) -> Result<url::Url> {
    let url = url::Url::parse(url).map_err(|e| Error::Url(format!("{url}: {e}")))?;
    match url.scheme() {
        "ws" | "wss" => Ok(url),
        other => Err(Error::UnsupportedScheme(other.to_owned())),
    }
}
