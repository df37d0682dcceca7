//! The I/O side of the opening handshake, shared by the async and blocking
//! faces: what to do with the bytes read so far. The rules are the core's
//! (`dialtone_proto::handshake`); this module only decides when a head is
//! complete and what to answer.
//!
//! Each face's read loop is "read into the step's buffer, then let the step
//! judge": `ClientStep` for the dialer (upgraded, or rejected with the
//! head and the start of the body) and `ServerStep` for the acceptor
//! (upgraded, plain HTTP, or refused), so no face parses anything itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use dialtone_proto::handshake::{self as hs, ClientHandshake, Reject, ResponseHead};
use dialtone_proto::http::{header, HeaderMap, Request, StatusCode};
use dialtone_proto::{Config, Connection, OriginPolicy, Role};

use crate::dialer::MAX_REJECTION_BODY;
use crate::error::{Error, Rejection, Result};
#[cfg(feature = "tokio")]
use crate::socket::WebSocket;

/// The server's answer to a successful client handshake.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// let (_ws, response) = dialtone::Dialer::new()
///     .protocol("chat")
///     .dial("ws://127.0.0.1:9001/")
///     .await?;
/// println!("{:?} at {}", response.protocol, response.url);
/// for (name, value) in &response.head.headers {
///     println!("{name}: {value:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status line and headers (status 101 over HTTP/1.1, 200 over HTTP/2).
    pub head: ResponseHead,
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// permessage-deflate as agreed, if the server accepted an offer.
    pub deflate: Option<dialtone_proto::Agreed>,
    /// The URL finally dialed, after redirects.
    pub url: url::Url,
    /// The HTTP version of the handshake: HTTP/1.1 (`101`), or HTTP/2
    /// (RFC 8441 extended CONNECT, `200`).
    pub version: dialtone_proto::http::Version,
}

/// An accepted WebSocket and what was agreed in its handshake.
///
/// ```no_run
/// # async fn run(incoming: dialtone::Incoming) -> dialtone::Result<()> {
/// if let dialtone::Accepted::WebSocket(upgraded) = incoming.handshake_or_http().await? {
///     println!(
///         "{} with {:?}",
///         upgraded.request.uri(),
///         upgraded.extensions.as_deref().unwrap_or("no extensions")
///     );
///     let mut ws = upgraded.ws;
///     ws.send("welcome").await?;
/// }
/// # Ok(()) }
/// ```
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct Upgraded<S> {
    /// The open connection.
    pub ws: WebSocket<S>,
    /// The client's request (its `version()` says which HTTP carried the
    /// handshake: HTTP/1.1, or HTTP/2 for an extended CONNECT).
    pub request: Request<()>,
    /// The `Sec-WebSocket-Extensions` value the server answered with
    /// (e.g. `permessage-deflate; client_max_window_bits=15`), if any.
    pub extensions: Option<String>,
}

/// Reads of a handshake head go in pieces of this size.
pub(crate) const HANDSHAKE_READ: usize = 4096;

/// The client's handshake read loop, without the reading: the face reads
/// into [`ClientStep::buffer`] and calls [`ClientStep::step`] with what it
/// read, until the step has an outcome.
#[derive(Debug)]
pub(crate) struct ClientStep<'a> {
    request: &'a ClientHandshake,
    config: &'a Config,
    url: &'a url::Url,
    buf: BytesMut,
    /// A refusal's head, once it has arrived, and how much of its body to keep.
    refusal: Option<(ResponseHead, usize)>,
}

/// What a server answered to our handshake.
#[derive(Debug)]
pub(crate) enum ClientOutcome {
    /// `101`: the connection (holding any bytes that came after the head)
    /// and the response.
    Upgraded(Box<(Connection, Response)>),
    /// Any other status, with the start of the body.
    Rejected(Box<Rejection>),
}

impl<'a> ClientStep<'a> {
    /// A step for the answer to `request` (sent to `url`).
    pub(crate) fn new(request: &'a ClientHandshake, config: &'a Config, url: &'a url::Url) -> Self {
        ClientStep {
            request,
            config,
            url,
            buf: BytesMut::with_capacity(HANDSHAKE_READ),
            refusal: None,
        }
    }

    /// Where to read to, with room for at least one more read.
    pub(crate) fn buffer(&mut self) -> &mut BytesMut {
        self.buf.reserve(HANDSHAKE_READ);
        &mut self.buf
    }

    /// After a read of `n` bytes into the buffer (0: the server closed the
    /// connection): `None` while more is needed.
    pub(crate) fn step(&mut self, n: usize) -> Result<Option<ClientOutcome>> {
        if let Some((_, want)) = &self.refusal {
            if n == 0 || self.buf.len() >= *want {
                return self.rejected().map(Some);
            }
            return Ok(None);
        }
        if n == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the handshake",
            )));
        }
        let Some((head, len)) = hs::parse_response(&self.buf, self.config.max_handshake_size)?
        else {
            return Ok(None);
        };
        if head.status != StatusCode::SWITCHING_PROTOCOLS {
            self.buf.advance(len);
            // `Content-Length` bytes, or until the server closes.
            let want = head
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(MAX_REJECTION_BODY)
                .min(MAX_REJECTION_BODY);
            self.refusal = Some((head, want));
            if self.buf.len() >= want {
                return self.rejected().map(Some);
            }
            return Ok(None);
        }
        let negotiated = self.request.check_response(&head)?;
        self.buf.advance(len);
        let mut conn =
            Connection::with_deflate(Role::Client, self.config.clone(), negotiated.deflate);
        conn.read_buffer().extend_from_slice(&self.buf);
        self.buf.clear();
        let response = Response {
            head,
            protocol: negotiated.protocol,
            deflate: negotiated.deflate,
            url: self.url.clone(),
            version: dialtone_proto::http::Version::HTTP_11,
        };
        Ok(Some(ClientOutcome::Upgraded(Box::new((conn, response)))))
    }

    /// Whether a refusal's head has arrived and its body is being read:
    /// the face bounds that in time (a second), then takes
    /// [`ClientStep::rejected`].
    pub(crate) fn reading_body(&self) -> bool {
        self.refusal.is_some()
    }

    /// The refusal, with as much of its body as has arrived (an error if
    /// no refusal's head has: then there is nothing to report but that).
    pub(crate) fn rejected(&mut self) -> Result<ClientOutcome> {
        let Some((head, want)) = self.refusal.take() else {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no response head from the server",
            )));
        };
        self.buf.truncate(want);
        Ok(ClientOutcome::Rejected(Box::new(Rejection::from_head(
            head,
            self.buf.split().freeze(),
        ))))
    }
}

/// A blocking read into a step's buffer (which has room for it).
#[cfg(feature = "blocking")]
pub(crate) fn read_into(io: &mut impl std::io::Read, buf: &mut BytesMut) -> std::io::Result<usize> {
    let start = buf.len();
    buf.resize(start + HANDSHAKE_READ, 0);
    let read = io.read(&mut buf[start..]);
    buf.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

/// The refusal of a request that does not ask for a WebSocket.
pub(crate) fn upgrade_required() -> Reject {
    Reject::new(StatusCode::UPGRADE_REQUIRED, "missing `Upgrade: websocket`").with_header(
        header::UPGRADE,
        dialtone_proto::http::HeaderValue::from_static("websocket"),
    )
}

/// Decides which subprotocol to speak, or refuses, given the request and
/// the subprotocols the client offered (in its order of preference).
///
/// ```
/// use dialtone::http::{Request, StatusCode};
/// use dialtone::{Acceptor, Reject};
///
/// // Only `/chat`, and its `chat.v2` subprotocol if the client offers it.
/// let acceptor = Acceptor::new().on_request(|request: &Request<()>, offered: &[String]| {
///     if request.uri().path() != "/chat" {
///         return Err(Reject::new(StatusCode::NOT_FOUND, "no such room"));
///     }
///     Ok(offered.iter().find(|p| *p == "chat.v2").cloned())
/// });
/// # drop(acceptor);
/// ```
pub type RequestCallback =
    dyn Fn(&Request<()>, &[String]) -> std::result::Result<Option<String>, Reject> + Send + Sync;

/// The listener's policy: limits, subprotocols, and an optional callback to
/// inspect each request.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// use std::time::Duration;
///
/// use dialtone::{Acceptor, Listener};
///
/// let acceptor = Acceptor::new()
///     .protocol("chat")
///     .handshake_timeout(Duration::from_secs(5));
/// let listener = Listener::bind("127.0.0.1:9001")
///     .await?
///     .with_acceptor(acceptor);
/// # drop(listener);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Acceptor {
    pub(crate) config: Config,
    pub(crate) protocols: Vec<String>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) callback: Option<Arc<RequestCallback>>,
    /// How long a write of a plain HTTP response or a refusal may make no
    /// progress.
    pub(crate) write_timeout: Duration,
    /// Which pages may open WebSockets here (`Origin`).
    pub(crate) origin: OriginPolicy,
    /// Handshakes in progress at once, shared by clones of this acceptor.
    #[cfg(feature = "tokio")]
    pub(crate) handshakes: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("config", &self.config)
            .field("protocols", &self.protocols)
            .field("handshake_timeout", &self.handshake_timeout)
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
            callback: None,
            write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
            origin: OriginPolicy::default(),
            #[cfg(feature = "tokio")]
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
    /// the 16 KiB handshake limit while it lasts). The async face's bound:
    /// `Acceptor::accept_blocking` runs one handshake per call, on the
    /// caller's thread, so the caller's threads are the bound there.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
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

    /// Sets limits (frame, message and handshake sizes), the
    /// permessage-deflate policies ([`Config::deflate`]) and the timeouts
    /// ([`Config::timeouts`]: set [`Acceptor::timeouts`] after this).
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

    /// Sets the accepted connections' close timeout, keepalive and idle
    /// timeout (see [`Timeouts`](dialtone_proto::Timeouts)).
    pub fn timeouts(mut self, timeouts: dialtone_proto::Timeouts) -> Self {
        self.config.timeouts = timeouts;
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
    ///
    #[cfg_attr(
        not(feature = "tokio"),
        doc = "[`crate::HttpRequest`]: crate#feature-flags"
    )]
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
        let agreed = self.negotiate(&request, &offer.protocols, &offer.extensions)?;
        buf.advance(len);
        let answer = hs::accept_response(
            &offer.accept,
            agreed.protocol.as_deref(),
            agreed.extensions.as_deref(),
            &HeaderMap::new(),
        );
        let mut conn = agreed.connection(&self.config);
        conn.read_buffer().extend_from_slice(buf);
        buf.clear();
        Ok(Some(ServerOutcome {
            answer,
            conn,
            request,
            protocol: agreed.protocol,
            extensions: agreed.extensions,
        }))
    }

    /// The acceptor's decisions on a request whose handshake headers are
    /// valid (for HTTP/1.1 or HTTP/2): the `Origin` policy, the
    /// subprotocol (the callback's or the list's) and permessage-deflate.
    /// Every face (the listener's own HTTP/1.1, hyper, axum, HTTP/2) goes
    /// through here, so they all agree on the same things.
    pub(crate) fn negotiate(
        &self,
        request: &Request<()>,
        protocols: &[String],
        extensions: &[dialtone_proto::extensions::Extension],
    ) -> Result<Agreement, Reject> {
        self.origin.check(request)?;
        let protocol = match &self.callback {
            Some(callback) => {
                let chosen = callback(request, protocols)?;
                if let Some(p) = &chosen {
                    if !protocols.contains(p) {
                        return Err(Reject::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "server chose a subprotocol the client did not offer",
                        ));
                    }
                }
                chosen
            }
            None => protocols
                .iter()
                .find(|p| self.protocols.contains(p))
                .cloned(),
        };
        let deflate = dialtone_proto::deflate::negotiate(&self.config.deflate, extensions);
        Ok(Agreement {
            protocol,
            extensions: deflate.as_ref().map(|(ext, _)| ext.to_string()),
            deflate: deflate.map(|(_, agreed)| agreed),
        })
    }
}

/// What [`Acceptor::negotiate`] agreed to.
#[derive(Debug)]
pub(crate) struct Agreement {
    /// The subprotocol chosen, if any.
    pub(crate) protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` value to answer with, if any.
    pub(crate) extensions: Option<String>,
    /// permessage-deflate as agreed.
    pub(crate) deflate: Option<dialtone_proto::Agreed>,
}

impl Agreement {
    /// The server's connection for what was agreed.
    pub(crate) fn connection(&self, config: &Config) -> Connection {
        Connection::with_deflate(Role::Server, config.clone(), self.deflate)
    }
}

/// What a complete request head turned out to be.
pub(crate) enum ServerHead {
    /// A valid WebSocket handshake: answer it and go on.
    Upgrade(Box<ServerOutcome>),
    /// A request without `Upgrade: websocket`, handed back to be answered
    /// (the blocking face refuses it without reading it).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Plain(Request<()>),
    /// A refusal to answer with.
    Refused(Reject),
}

/// The server's handshake read loop, without the reading (see
/// [`ClientStep`]).
pub(crate) struct ServerStep<'a> {
    acceptor: &'a Acceptor,
    buf: BytesMut,
    plain_http: bool,
}

impl<'a> ServerStep<'a> {
    /// A step for one client; with `plain_http`, a request that does not
    /// ask for a WebSocket is handed back instead of refused with `426`.
    pub(crate) fn new(acceptor: &'a Acceptor, plain_http: bool) -> Self {
        ServerStep {
            acceptor,
            buf: BytesMut::with_capacity(HANDSHAKE_READ),
            plain_http,
        }
    }

    /// Where to read to, with room for at least one more read.
    pub(crate) fn buffer(&mut self) -> &mut BytesMut {
        self.buf.reserve(HANDSHAKE_READ);
        &mut self.buf
    }

    /// After a read of `n` bytes into the buffer (0: the client closed):
    /// `None` while the head is incomplete.
    pub(crate) fn step(&mut self, n: usize) -> Result<Option<ServerHead>> {
        if n == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the client closed the connection during the handshake",
            )));
        }
        match self.acceptor.step(&mut self.buf) {
            Ok(None) => Ok(None),
            Ok(Some(outcome)) => Ok(Some(ServerHead::Upgrade(Box::new(outcome)))),
            Err(reject) => {
                // Refused as a handshake: a complete head without
                // `Upgrade: websocket` is plain HTTP, if wanted.
                if self.plain_http {
                    let limit = self.acceptor.config.max_handshake_size;
                    if let Ok(Some((request, _))) = hs::parse_request(&self.buf, limit) {
                        if !hs::header_has_token(request.headers(), &header::UPGRADE, "websocket") {
                            return Ok(Some(ServerHead::Plain(request)));
                        }
                    }
                }
                Ok(Some(ServerHead::Refused(reject)))
            }
        }
    }
}

/// A request accepted by [`Acceptor::step`].
pub(crate) struct ServerOutcome {
    pub(crate) answer: Vec<u8>,
    pub(crate) conn: Connection,
    pub(crate) request: Request<()>,
    pub(crate) protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` value answered, if any (the async
    /// face's `Upgraded` reports it).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
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

#[cfg(test)]
mod tests {
    use dialtone_proto::handshake::accept_key;
    use dialtone_proto::Event;

    use super::*;

    fn request() -> ClientHandshake {
        ClientHandshake::new("h", "/")
    }

    /// Feeds `bytes` to a client step `chunk` bytes at a time, then EOF.
    fn feed(request: &ClientHandshake, bytes: &[u8], chunk: usize) -> Result<ClientOutcome> {
        let (config, url) = (Config::default(), url::Url::parse("ws://h/").unwrap());
        let mut step = ClientStep::new(request, &config, &url);
        for piece in bytes.chunks(chunk) {
            step.buffer().extend_from_slice(piece);
            if let Some(outcome) = step.step(piece.len())? {
                return Ok(outcome);
            }
        }
        step.step(0).map(|o| o.expect("EOF always ends the step"))
    }

    #[test]
    fn a_101_split_anywhere_upgrades_and_hands_on_the_bytes_after_it() {
        let request = request();
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(request.key().as_bytes())
        )
        .into_bytes();
        answer.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        for chunk in [1, 7, answer.len()] {
            let Ok(ClientOutcome::Upgraded(upgraded)) = feed(&request, &answer, chunk) else {
                panic!("chunk {chunk}: not upgraded");
            };
            let (mut conn, response) = *upgraded;
            assert_eq!(response.head.status, StatusCode::SWITCHING_PROTOCOLS);
            // What came in the read that completed the head, past it, is
            // the connection's; the step reads no further.
            let head_len = answer.len() - 4;
            let delivered = head_len.div_ceil(chunk) * chunk;
            let handed = delivered.min(answer.len()) - head_len;
            assert_eq!(conn.read_buffer().len(), handed, "chunk {chunk}");
            if handed == 4 {
                assert!(matches!(conn.next_event(), Ok(Some(Event::Text(t))) if t == "hi"));
            }
        }
    }

    #[test]
    fn a_refusal_keeps_content_length_bytes_of_body_or_what_came_before_eof() {
        let answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnopeEXTRA";
        for chunk in [1, 5, answer.len()] {
            let Ok(ClientOutcome::Rejected(r)) = feed(&request(), answer, chunk) else {
                panic!("chunk {chunk}: not rejected");
            };
            assert_eq!(
                (r.status, &r.body[..]),
                (StatusCode::FORBIDDEN, &b"nope"[..])
            );
        }
        let answer = b"HTTP/1.1 500 Oops\r\n\r\nuntil the end";
        let Ok(ClientOutcome::Rejected(r)) = feed(&request(), answer, 3) else {
            panic!("not rejected");
        };
        assert_eq!(
            (&r.reason[..], &r.body[..]),
            ("Oops", &b"until the end"[..])
        );
        // The body kept is bounded whatever the server says.
        let mut answer = b"HTTP/1.1 500 Oops\r\nContent-Length: 999999999\r\n\r\n".to_vec();
        answer.resize(answer.len() + MAX_REJECTION_BODY + 10_000, b'x');
        let Ok(ClientOutcome::Rejected(r)) = feed(&request(), &answer, 4096) else {
            panic!("not rejected");
        };
        assert_eq!(r.body.len(), MAX_REJECTION_BODY);
    }

    #[test]
    fn eof_before_the_head_or_a_bad_head_is_an_error() {
        let e = feed(&request(), b"HTTP/1.1 101 Swi", 4).unwrap_err();
        assert!(matches!(e, Error::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof));
        assert!(matches!(
            feed(&request(), b"SSH-2.0-x\r\n\r\n", 64),
            Err(Error::Handshake(_))
        ));
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert!(matches!(
            feed(&request(), huge.as_bytes(), 4096),
            Err(Error::Handshake(hs::HandshakeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn the_server_step_tells_upgrade_plain_http_and_refusal_apart() {
        let acceptor = Acceptor::new();
        let run = |plain_http: bool, bytes: &[u8]| {
            let mut step = ServerStep::new(&acceptor, plain_http);
            for piece in bytes.chunks(5) {
                step.buffer().extend_from_slice(piece);
                if let Some(head) = step.step(piece.len()).unwrap() {
                    return Some(head);
                }
            }
            None
        };
        let upgrade = b"GET /c HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert!(matches!(run(false, upgrade), Some(ServerHead::Upgrade(_))));
        let plain = b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(run(true, plain), Some(ServerHead::Plain(_))));
        assert!(
            matches!(run(false, plain), Some(ServerHead::Refused(r)) if r.status == StatusCode::UPGRADE_REQUIRED)
        );
        assert!(
            run(false, b"GET / HTTP/1.1\r\nHost:").is_none(),
            "incomplete"
        );
        let mut step = ServerStep::new(&acceptor, false);
        assert!(matches!(step.step(0), Err(Error::Io(_))));
    }
}
