//! The listener side: accept the opening handshake on any transport
//! ([`accept`], [`Acceptor::accept`]), or bind a TCP [`Listener`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dialtone_proto::handshake::Reject;
use dialtone_proto::http::{header, HeaderMap, Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::error::{Error, Result};
use crate::handshake::{upgrade_required, Acceptor, ServerHead, ServerStep};
use crate::socket::WebSocket;
#[cfg(feature = "tls")]
use crate::tls::ServerTls;
use crate::transport::Transport;

/// Accepts a WebSocket handshake on `io` with the default [`Acceptor`].
pub async fn accept<S>(io: S) -> Result<(WebSocket<S>, Request<()>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Acceptor::default().accept(io).await
}

impl Acceptor {
    /// Reads the client's handshake from `io` and answers it: `101` and an
    /// open [`WebSocket`], or the refusal's status (400, 426, 431, or the
    /// callback's) and [`Error::Refused`]. The client has the handshake
    /// timeout to send its request.
    pub async fn accept<S>(&self, io: S) -> Result<(WebSocket<S>, Request<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // The handshake's state (the timer, the request, the connection
        // being built) is a few KiB: boxed, it is freed when the handshake
        // ends, and the task that goes on to serve the connection keeps only
        // the WebSocket.
        match Box::pin(self.read_request(io, false)).await? {
            Accepted::WebSocket(upgraded) => Ok((upgraded.ws, upgraded.request)),
            // Never built with `plain_http` false (such a request is
            // refused with 426 in `read_request`); answered the same here.
            Accepted::Http(http) => match http.io {
                Answer::Io(io) => Err(refuse(io, upgrade_required(), self.write_timeout).await),
                #[cfg(feature = "http2-server")]
                Answer::Http2(_) => Err(Error::Refused(Box::new(upgrade_required()))),
            },
        }
    }

    /// Like [`Acceptor::accept`], but a request that does not ask for a
    /// WebSocket (no `Upgrade: websocket` header) is handed back as an
    /// [`HttpRequest`] to answer, instead of being refused with `426`; so
    /// that one port can serve a page and the WebSockets it opens. A request
    /// that asks for a WebSocket but is invalid is refused as by `accept`.
    pub async fn accept_or_http<S>(&self, io: S) -> Result<Accepted<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Boxed for the reason `accept`'s state is.
        Box::pin(self.read_request(io, true)).await
    }

    async fn read_request<S>(&self, mut io: S, plain_http: bool) -> Result<Accepted<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Ok(_permit) = self.handshakes.clone().try_acquire_owned() else {
            let reject = Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many handshakes in progress; try again later",
            );
            return Err(refuse(io, reject, self.write_timeout).await);
        };
        let mut step = ServerStep::new(self, plain_http);
        let read = async {
            loop {
                let n = io.read_buf(step.buffer()).await?;
                if let Some(head) = step.step(n)? {
                    return Ok::<_, Error>(head);
                }
            }
        };
        let head = tokio::time::timeout(self.handshake_timeout, read)
            .await
            .map_err(|_| Error::Timeout(self.handshake_timeout))??;
        match head {
            ServerHead::Upgrade(outcome) => {
                let outcome = *outcome;
                io.write_all(&outcome.answer).await?;
                io.flush().await?;
                let ws = WebSocket::from_connection(io, outcome.conn, outcome.protocol);
                Ok(Accepted::WebSocket(Box::new(Upgraded {
                    ws,
                    request: outcome.request,
                    extensions: outcome.extensions,
                })))
            }
            ServerHead::Plain(request) => Ok(Accepted::Http(Box::new(HttpRequest {
                io: Answer::Io(io),
                request,
                write_timeout: self.write_timeout,
            }))),
            ServerHead::Refused(reject) => Err(refuse(io, reject, self.write_timeout).await),
        }
    }
}

/// What [`Acceptor::accept_or_http`] (or [`Incoming::handshake_or_http`])
/// read from a client.
///
/// ```no_run
/// # async fn run(incoming: dialtone::Incoming) -> dialtone::Result<()> {
/// use dialtone::http::{HeaderMap, StatusCode};
/// use dialtone::Accepted;
///
/// match incoming.handshake_or_http().await? {
///     Accepted::WebSocket(upgraded) => {
///         let mut ws = upgraded.ws;
///         ws.send("hello").await?;
///     }
///     Accepted::Http(http) => {
///         let page = b"<script>new WebSocket('ws://' + location.host)</script>";
///         http.respond(StatusCode::OK, &HeaderMap::new(), page).await?;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum Accepted<S> {
    /// A valid WebSocket handshake, answered with `101`.
    WebSocket(Box<Upgraded<S>>),
    /// A plain HTTP request (no `Upgrade: websocket`), not yet answered.
    Http(Box<HttpRequest<S>>),
}

pub use crate::handshake::Upgraded;

/// A plain HTTP request that arrived where a WebSocket handshake was
/// expected. It gets one response; on HTTP/1.1 the connection is then
/// closed (the request's body, if any, is not read; there is no
/// keep-alive), on HTTP/2 only its stream ends.
///
/// ```no_run
/// # async fn run(incoming: dialtone::Incoming) -> dialtone::Result<()> {
/// use dialtone::http::{header, HeaderMap, HeaderValue, StatusCode};
///
/// if let dialtone::Accepted::Http(http) = incoming.handshake_or_http().await? {
///     let mut headers = HeaderMap::new();
///     headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
///     let body = format!("you asked for {}", http.request().uri());
///     http.respond(StatusCode::OK, &headers, body.as_bytes()).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HttpRequest<S> {
    io: Answer<S>,
    request: Request<()>,
    /// How long one write may make no progress (the acceptor's
    /// [`Acceptor::write_timeout`]).
    write_timeout: Duration,
}

/// Where a plain request's answer goes.
#[derive(Debug)]
enum Answer<S> {
    /// Written as HTTP/1.1 on the connection.
    Io(S),
    /// Handed to the HTTP/2 connection's task for its stream.
    #[cfg(feature = "http2-server")]
    Http2(crate::h2_listener::Responder),
}

impl<S: AsyncRead + AsyncWrite + Unpin> HttpRequest<S> {
    /// The request line and headers.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// Answers with `status`, `headers` and `body`, then closes the
    /// connection. `Content-Length` and `Connection: close` are added; the
    /// body is not sent in answer to a `HEAD`.
    pub async fn respond(self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<()> {
        self.respond_with(status, headers, body.len() as u64, body)
            .await
    }

    /// Answers with `status`, `headers` and the first `len` bytes of `body`
    /// (a file, say, copied without holding it in memory), then closes the
    /// connection. `Content-Length: len` and `Connection: close` are added;
    /// the body is not sent in answer to a `HEAD`. A body shorter than `len`
    /// is an [`Error::Io`] (the client sees the connection end early).
    pub async fn respond_with<R>(
        self,
        status: StatusCode,
        headers: &HeaderMap,
        len: u64,
        body: R,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin,
    {
        let limit = self.write_timeout;
        // One arm per build: the HTTP/2 one exists with `http2-server`.
        #[allow(clippy::infallible_destructuring_match)]
        let io = match self.io {
            Answer::Io(io) => io,
            #[cfg(feature = "http2-server")]
            Answer::Http2(responder) => {
                let method = self.request.method();
                return responder
                    .respond_with(method, status, headers, len, body, limit)
                    .await;
            }
        };
        write_http11(io, &self.request, status, headers, len, body, limit).await
    }
}

/// Writes an HTTP/1.1 response with `len` bytes of `body`, then closes.
async fn write_http11<S, R>(
    mut io: S,
    request: &Request<()>,
    status: StatusCode,
    headers: &HeaderMap,
    len: u64,
    body: R,
    limit: Duration,
) -> Result<()>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::CONNECTION {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(
        format!("Content-Length: {len}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    write_within(&mut io, &head, limit).await?;
    if request.method() != Method::HEAD {
        // Piece by piece, each under the write timeout: a client that
        // stops reading is dropped, one that reads slowly is not.
        let mut body = body.take(len);
        let mut piece = vec![0; 16 * 1024];
        let mut copied = 0;
        loop {
            let n = body.read(&mut piece).await?;
            if n == 0 {
                break;
            }
            write_within(&mut io, &piece[..n], limit).await?;
            copied += n as u64;
        }
        if copied < len {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the response body ended before its Content-Length",
            )));
        }
    }
    tokio::time::timeout(limit, io.flush())
        .await
        .map_err(|_| Error::Timeout(limit))??;
    // Best effort: the client may already be gone.
    let _ = io.shutdown().await;
    Ok(())
}

/// Writes all of `data`, failing with [`Error::Timeout`] if the peer takes
/// none of it for `limit`.
async fn write_within<S: AsyncWrite + Unpin>(
    io: &mut S,
    data: &[u8],
    limit: Duration,
) -> Result<()> {
    tokio::time::timeout(limit, io.write_all(data))
        .await
        .map_err(|_| Error::Timeout(limit))?
        .map_err(Error::from)
}

/// Answers `reject` (best effort: the client may already be gone, or not
/// read within `limit`) and returns the error to report.
async fn refuse<S: AsyncWrite + Unpin>(mut io: S, reject: Reject, limit: Duration) -> Error {
    let answer = async {
        let _ = io.write_all(&reject.to_bytes()).await;
        let _ = io.shutdown().await;
    };
    let _ = tokio::time::timeout(limit, answer).await;
    Error::Refused(Box::new(reject))
}

/// A TCP listener that hands out WebSocket connections.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// let listener = dialtone::Listener::bind("127.0.0.1:9001").await?;
/// loop {
///     let incoming = listener.accept().await?;
///     tokio::spawn(async move {
///         let (mut ws, _request) = incoming.handshake().await?;
///         while let Some(msg) = ws.recv().await {
///             let msg = msg?;
///             if msg.is_data() {
///                 ws.send(msg).await?;
///             }
///         }
///         Ok::<(), dialtone::Error>(())
///     });
/// }
/// # }
/// ```
///
/// With the feature `http2` and TLS, the listener also offers ALPN `h2`:
/// a client that takes it (a browser) opens its WebSockets as HTTP/2
/// extended CONNECT streams (RFC 8441), many on one TCP connection. The
/// first request of such a connection is answered by the
/// [`Incoming::handshake`] of that connection; each later one is handed
/// out by [`Listener::accept`] as an [`Incoming`] of its own (its
/// handshake is done as for any other), so the accept loop above serves
/// both HTTPs unchanged. [`Upgraded::request`]'s `version()` and
/// [`Transport::http_version`] tell them apart.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    acceptor: Arc<Acceptor>,
    #[cfg(feature = "tls")]
    tls: Option<ServerTls>,
    #[cfg(feature = "http2-server")]
    h2: H2Queue,
}

/// The requests of HTTP/2 connections after their first, waiting for
/// [`Listener::accept`].
#[cfg(feature = "http2-server")]
#[derive(Debug)]
struct H2Queue {
    /// Whether TLS connections are offered `h2`.
    enabled: bool,
    tx: tokio::sync::mpsc::Sender<crate::h2_listener::H2Request>,
    rx: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<crate::h2_listener::H2Request>>,
}

impl Listener {
    /// Binds a TCP listener with the default [`Acceptor`].
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        #[cfg(feature = "http2-server")]
        let (tx, rx) = tokio::sync::mpsc::channel(crate::h2_listener::QUEUE);
        Ok(Listener {
            tcp: TcpListener::bind(addr).await?,
            acceptor: Arc::new(Acceptor::default()),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "http2-server")]
            h2: H2Queue {
                enabled: true,
                tx,
                rx: tokio::sync::Mutex::new(rx),
            },
        })
    }

    /// Serves TLS (`wss://`) with this identity: each accepted connection
    /// runs the TLS handshake in [`Incoming::handshake`], under the
    /// acceptor's handshake timeout, before the WebSocket handshake. With
    /// the feature `http2-server`, ALPN offers `h2` before `http/1.1`
    /// (unless `Listener::with_http2` turned it off, or the identity came
    /// from `ServerTls::from_config`, whose ALPN is left as it is).
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        #[cfg(feature = "http2-server")]
        let tls = if self.h2.enabled {
            tls.offering_h2()
        } else {
            tls
        };
        self.tls = Some(tls);
        self
    }

    /// Whether TLS connections are offered HTTP/2 (on by default with the
    /// feature `http2`); call before [`Listener::with_tls`]. Off, every
    /// client speaks HTTP/1.1.
    #[cfg(feature = "http2-server")]
    pub fn with_http2(mut self, enabled: bool) -> Self {
        self.h2.enabled = enabled;
        self
    }

    /// Uses `acceptor`'s policy for the connections accepted from now on.
    pub fn with_acceptor(mut self, acceptor: Acceptor) -> Self {
        self.acceptor = Arc::new(acceptor);
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Waits for the next TCP connection. The handshake is done by
    /// [`Incoming::handshake`], so that a slow client does not hold up the
    /// accept loop: spawn a task per connection.
    ///
    /// With HTTP/2, it also hands out the requests of HTTP/2 connections
    /// after their first (see above), whichever comes first.
    pub async fn accept(&self) -> io::Result<Incoming> {
        #[cfg(feature = "http2-server")]
        let stream = {
            let queued = async { self.h2.rx.lock().await.recv().await };
            tokio::select! {
                accepted = self.tcp.accept() => accepted?,
                Some(request) = queued => {
                    return Ok(Incoming {
                        peer: request.peer_addr(),
                        kind: Kind::Http2(Box::new(request)),
                        acceptor: self.acceptor.clone(),
                        tls: None,
                        h2: None,
                    });
                }
            }
        };
        #[cfg(not(feature = "http2-server"))]
        let stream = self.tcp.accept().await?;
        let (stream, peer) = stream;
        stream.set_nodelay(true)?;
        Ok(Incoming {
            kind: Kind::Tcp(stream),
            peer,
            acceptor: self.acceptor.clone(),
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
            #[cfg(feature = "http2-server")]
            h2: self.h2.enabled.then(|| self.h2.tx.clone()),
        })
    }
}

/// A TCP connection whose WebSocket handshake is still to be done, or
/// (with HTTP/2) a request on an HTTP/2 connection not yet answered.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// let listener = dialtone::Listener::bind("127.0.0.1:9001").await?;
/// let incoming = listener.accept().await?;
/// println!("a connection from {}", incoming.peer_addr());
/// let (mut ws, request) = incoming.handshake().await?;
/// ws.send(format!("you asked for {}", request.uri())).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Incoming {
    kind: Kind,
    peer: SocketAddr,
    acceptor: Arc<Acceptor>,
    #[cfg(feature = "tls")]
    tls: Option<ServerTls>,
    /// Where the requests of an HTTP/2 connection after its first go.
    #[cfg(feature = "http2-server")]
    h2: Option<tokio::sync::mpsc::Sender<crate::h2_listener::H2Request>>,
}

#[derive(Debug)]
enum Kind {
    Tcp(TcpStream),
    #[cfg(feature = "http2-server")]
    Http2(Box<crate::h2_listener::H2Request>),
}

/// What a TCP connection turned out to carry, once its TLS handshake (if
/// any) is done.
enum Carried {
    /// One HTTP/1.1 request, then the WebSocket (or the answer).
    Http11(Transport),
    /// A request of an HTTP/2 connection.
    #[cfg(feature = "http2-server")]
    Http2(Box<crate::h2_listener::H2Request>),
}

impl Incoming {
    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Runs the handshake with the listener's [`Acceptor`] (after the TLS
    /// handshake, if the listener has TLS: a failure there is
    /// [`Error::Tls`]).
    ///
    #[cfg_attr(not(feature = "tls"), doc = "[`Error::Tls`]: crate#feature-flags")]
    pub async fn handshake(self) -> Result<(WebSocket<Transport>, Request<()>)> {
        // Boxed, with the TLS handshake's state, for the reason
        // `Acceptor::accept`'s is.
        Box::pin(async move {
            let acceptor = self.acceptor.clone();
            match self.carried().await? {
                Carried::Http11(transport) => acceptor.accept(transport).await,
                #[cfg(feature = "http2-server")]
                Carried::Http2(request) => {
                    if !request.is_upgrade() {
                        return Err(request.refuse(upgrade_required()));
                    }
                    let upgraded = request.upgrade(&acceptor).await?;
                    Ok((upgraded.ws, upgraded.request))
                }
            }
        })
        .await
    }

    /// Like [`Incoming::handshake`], but hands back a plain HTTP request
    /// (one without `Upgrade: websocket`, or on HTTP/2 any but an extended
    /// CONNECT) to answer instead of refusing it
    /// ([`Acceptor::accept_or_http`]).
    pub async fn handshake_or_http(self) -> Result<Accepted<Transport>> {
        Box::pin(async move {
            let acceptor = self.acceptor.clone();
            match self.carried().await? {
                Carried::Http11(transport) => acceptor.accept_or_http(transport).await,
                #[cfg(feature = "http2-server")]
                Carried::Http2(request) => {
                    if request.is_upgrade() {
                        let upgraded = request.upgrade(&acceptor).await?;
                        return Ok(Accepted::WebSocket(Box::new(upgraded)));
                    }
                    let (request, responder) = request.into_http();
                    Ok(Accepted::Http(Box::new(HttpRequest {
                        io: Answer::Http2(responder),
                        request,
                        write_timeout: acceptor.write_timeout,
                    })))
                }
            }
        })
        .await
    }

    /// The connection after its TLS handshake: HTTP/1.1, or, if the client
    /// chose `h2`, the first request of the HTTP/2 connection (which is
    /// then served in a task of its own, its later requests handed to the
    /// listener's queue).
    async fn carried(self) -> Result<Carried> {
        #[cfg(feature = "http2-server")]
        if let Kind::Http2(request) = self.kind {
            return Ok(Carried::Http2(request));
        }
        #[cfg(feature = "http2-server")]
        let (h2, acceptor) = (self.h2.clone(), self.acceptor.clone());
        let transport = self.transport().await?;
        #[cfg(feature = "http2-server")]
        if let Some(rest) = h2 {
            if transport.alpn_protocol() == Some(crate::h2_listener::ALPN_H2) {
                let conn = crate::h2_upgraded::ConnectionOf {
                    local: transport.local_addr()?,
                    peer: transport.peer_addr()?,
                    certificates: transport.peer_certificates().map(Into::into),
                };
                let Transport::TlsServer(tls) = transport else {
                    return Err(Error::Io(io::ErrorKind::Unsupported.into()));
                };
                let (first, request) = tokio::sync::oneshot::channel();
                let streams = crate::h2_listener::Streams::new(first, rest);
                let limit = acceptor.config.max_handshake_size;
                crate::h2_listener::serve(*tls, conn, limit, streams);
                let wait = acceptor.handshake_timeout;
                let request = tokio::time::timeout(wait, request)
                    .await
                    .map_err(|_| Error::Timeout(wait))?
                    .map_err(|_| {
                        Error::Io(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the HTTP/2 connection ended before its first request",
                        ))
                    })?;
                return Ok(Carried::Http2(Box::new(request)));
            }
        }
        Ok(Carried::Http11(transport))
    }

    /// Refuses this connection without reading its request: answers
    /// `reject` (after the TLS handshake, if the listener has TLS; all of
    /// it bounded by the acceptor's handshake and write timeouts) and
    /// closes. For limits the server applies before the handshake (see
    /// [`crate::limits`]); returns the error that says what was refused.
    pub async fn refuse(self, reject: Reject) -> Error {
        let limit = self.acceptor.write_timeout;
        #[cfg(feature = "http2-server")]
        if let Kind::Http2(request) = self.kind {
            return request.refuse(reject);
        }
        match self.transport().await {
            Ok(transport) => refuse(transport, reject, limit).await,
            Err(_) => Error::Refused(Box::new(reject)),
        }
    }

    /// The TCP stream, after the TLS handshake if the listener has TLS.
    #[cfg(feature = "tls")]
    async fn transport(self) -> Result<Transport> {
        // One arm per build: the HTTP/2 one exists with `http2-server`.
        #[allow(clippy::infallible_destructuring_match)]
        let stream = match self.kind {
            Kind::Tcp(stream) => stream,
            #[cfg(feature = "http2-server")]
            Kind::Http2(_) => {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "an HTTP/2 request has no transport of its own",
                )))
            }
        };
        Ok(match &self.tls {
            Some(tls) => {
                let limit = self.acceptor.handshake_timeout;
                let stream = tokio::time::timeout(limit, tls.accept(stream, self.peer))
                    .await
                    .map_err(|_| Error::Timeout(limit))??;
                Transport::TlsServer(Box::new(stream))
            }
            None => Transport::Tcp(stream),
        })
    }

    /// The TCP stream (a build without TLS has no TLS listener).
    #[cfg(not(feature = "tls"))]
    async fn transport(self) -> Result<Transport> {
        let Kind::Tcp(stream) = self.kind;
        Ok(Transport::Tcp(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_proto::http::HeaderValue;
    use dialtone_proto::{Config, Deflate};

    /// Sends `request` to `acceptor.accept_or_http` over an in-memory pipe;
    /// returns the outcome and the client's end.
    async fn offer(
        acceptor: &Acceptor,
        request: &str,
    ) -> (
        Result<Accepted<tokio::io::DuplexStream>>,
        tokio::io::DuplexStream,
    ) {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(request.as_bytes()).await.unwrap();
        (acceptor.accept_or_http(server).await, client)
    }

    async fn read_all(mut client: tokio::io::DuplexStream) -> String {
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[tokio::test]
    async fn plain_get_is_handed_back_and_answered_with_content_length() {
        let (outcome, client) = offer(
            &Acceptor::new(),
            "GET /index.html?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        let Ok(Accepted::Http(http)) = outcome else {
            panic!("expected a plain request, got {outcome:?}");
        };
        assert_eq!(http.request().uri().path(), "/index.html");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        http.respond(StatusCode::OK, &headers, b"hello")
            .await
            .unwrap();
        let answer = read_all(client).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("content-type: text/plain\r\n"), "{answer}");
        assert!(answer.contains("Content-Length: 5\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
    }

    #[tokio::test]
    async fn head_gets_the_length_but_no_body() {
        let (outcome, client) = offer(&Acceptor::new(), "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let Ok(Accepted::Http(http)) = outcome else {
            panic!("expected a plain request, got {outcome:?}");
        };
        http.respond(StatusCode::OK, &HeaderMap::new(), b"hello")
            .await
            .unwrap();
        let answer = read_all(client).await;
        assert!(answer.contains("Content-Length: 5\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");
    }

    #[tokio::test]
    async fn upgrade_still_opens_a_websocket_and_reports_the_extension() {
        let acceptor = Acceptor::new().config(Config::default().deflate(Deflate::default()));
        let request = format!("{UPGRADE}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
        let (outcome, _client) = offer(&acceptor, &request).await;
        let Ok(Accepted::WebSocket(upgraded)) = outcome else {
            panic!("expected a WebSocket, got {outcome:?}");
        };
        assert_eq!(upgraded.request.uri().path(), "/chat");
        let extensions = upgraded.extensions.expect("deflate agreed");
        assert!(extensions.starts_with("permessage-deflate"), "{extensions}");
    }

    #[tokio::test]
    async fn a_bad_upgrade_is_refused_not_handed_back() {
        // `Upgrade: websocket` but no key: a broken handshake, not a page.
        let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (outcome, client) = offer(&Acceptor::new(), request).await;
        assert!(matches!(outcome, Err(Error::Refused(r)) if r.status == StatusCode::BAD_REQUEST));
        assert!(read_all(client).await.starts_with("HTTP/1.1 400"));
    }

    #[tokio::test]
    async fn accept_still_refuses_a_plain_get_with_426() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let outcome = Acceptor::new().accept(server).await;
        assert!(
            matches!(outcome, Err(Error::Refused(r)) if r.status == StatusCode::UPGRADE_REQUIRED)
        );
        assert!(read_all(client).await.starts_with("HTTP/1.1 426"));
    }
}
