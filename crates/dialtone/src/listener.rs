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
            Accepted::Http(http) => {
                Err(refuse(http.io, upgrade_required(), self.write_timeout).await)
            }
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
                io,
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
#[derive(Debug)]
pub struct Upgraded<S> {
    /// The open connection.
    pub ws: WebSocket<S>,
    /// The client's request.
    pub request: Request<()>,
    /// The `Sec-WebSocket-Extensions` value the server answered with
    /// (e.g. `permessage-deflate; client_max_window_bits=15`), if any.
    pub extensions: Option<String>,
}

/// A plain HTTP/1.1 request that arrived where a WebSocket handshake was
/// expected. It gets one response, then the connection is closed (the
/// request's body, if any, is not read; there is no keep-alive).
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
    io: S,
    request: Request<()>,
    /// How long one write may make no progress (the acceptor's
    /// [`Acceptor::write_timeout`]).
    write_timeout: Duration,
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
        mut self,
        status: StatusCode,
        headers: &HeaderMap,
        len: u64,
        body: R,
    ) -> Result<()>
    where
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
        let limit = self.write_timeout;
        write_within(&mut self.io, &head, limit).await?;
        if self.request.method() != Method::HEAD {
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
                write_within(&mut self.io, &piece[..n], limit).await?;
                copied += n as u64;
            }
            if copied < len {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the response body ended before its Content-Length",
                )));
            }
        }
        tokio::time::timeout(limit, self.io.flush())
            .await
            .map_err(|_| Error::Timeout(limit))??;
        // Best effort: the client may already be gone.
        let _ = self.io.shutdown().await;
        Ok(())
    }
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
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    acceptor: Arc<Acceptor>,
    #[cfg(feature = "tls")]
    tls: Option<ServerTls>,
}

impl Listener {
    /// Binds a TCP listener with the default [`Acceptor`].
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Listener {
            tcp: TcpListener::bind(addr).await?,
            acceptor: Arc::new(Acceptor::default()),
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// Serves TLS (`wss://`) with this identity: each accepted connection
    /// runs the TLS handshake in [`Incoming::handshake`], under the
    /// acceptor's handshake timeout, before the WebSocket handshake.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
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
    pub async fn accept(&self) -> io::Result<Incoming> {
        let (stream, peer) = self.tcp.accept().await?;
        stream.set_nodelay(true)?;
        Ok(Incoming {
            stream,
            peer,
            acceptor: self.acceptor.clone(),
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
        })
    }
}

/// A TCP connection whose WebSocket handshake is still to be done.
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
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Arc<Acceptor>,
    #[cfg(feature = "tls")]
    tls: Option<ServerTls>,
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
            let transport = self.transport().await?;
            acceptor.accept(transport).await
        })
        .await
    }

    /// Like [`Incoming::handshake`], but hands back a plain HTTP request
    /// (one without `Upgrade: websocket`) to answer instead of refusing it
    /// ([`Acceptor::accept_or_http`]).
    pub async fn handshake_or_http(self) -> Result<Accepted<Transport>> {
        Box::pin(async move {
            let acceptor = self.acceptor.clone();
            let transport = self.transport().await?;
            acceptor.accept_or_http(transport).await
        })
        .await
    }

    /// Refuses this connection without reading its request: answers
    /// `reject` (after the TLS handshake, if the listener has TLS; all of
    /// it bounded by the acceptor's handshake and write timeouts) and
    /// closes. For limits the server applies before the handshake (see
    /// [`crate::limits`]); returns the error that says what was refused.
    pub async fn refuse(self, reject: Reject) -> Error {
        let limit = self.acceptor.write_timeout;
        match self.transport().await {
            Ok(transport) => refuse(transport, reject, limit).await,
            Err(_) => Error::Refused(Box::new(reject)),
        }
    }

    /// The TCP stream, after the TLS handshake if the listener has TLS.
    #[cfg(feature = "tls")]
    async fn transport(self) -> Result<Transport> {
        Ok(match &self.tls {
            Some(tls) => {
                let limit = self.acceptor.handshake_timeout;
                let stream = tokio::time::timeout(limit, tls.accept(self.stream, self.peer))
                    .await
                    .map_err(|_| Error::Timeout(limit))??;
                Transport::TlsServer(Box::new(stream))
            }
            None => Transport::Tcp(self.stream),
        })
    }

    /// The TCP stream (a build without TLS has no TLS listener).
    #[cfg(not(feature = "tls"))]
    async fn transport(self) -> Result<Transport> {
        Ok(Transport::Tcp(self.stream))
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
