//! The listener's HTTP/2 side (feature `http2`): a TLS connection whose
//! client chose ALPN `h2` is served by hyper's HTTP/2 server with extended
//! CONNECT enabled (RFC 8441 §3), in a task of its own. Each request on it
//! becomes an [`H2Request`] handed to the listener (the first one to the
//! handshake that found the connection was HTTP/2, the others to
//! [`Listener::accept`](crate::Listener::accept)), where it is judged like
//! any handshake: a WebSocket ([`H2Request::upgrade`], through
//! [`Acceptor::upgrade`]) or a plain request to answer ([`Responder`]).
//!
//! Streams are independent: one that fails or is reset ends alone, and the
//! connection lives as long as the client keeps it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use dialtone_proto::handshake::Reject;
use dialtone_proto::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::h2_upgraded::{ConnectionOf, H2Upgraded};
use crate::handshake::{Acceptor, Upgraded};
use crate::transport::Transport;

/// The body of every response the listener sends over HTTP/2.
pub(crate) type ResponseBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// Requests handed on to the listener wait here for it to take them.
pub(crate) const QUEUE: usize = 64;

/// The ALPN name of HTTP/2 over TLS.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// How often an idle HTTP/2 connection is pinged, and how long the pong
/// may take before the connection (every stream on it) is given up: a
/// client that vanished does not hold its streams open.
const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(20));

/// One request received on an HTTP/2 connection, not yet answered.
pub(crate) struct H2Request {
    request: Request<hyper::body::Incoming>,
    respond: oneshot::Sender<Response<ResponseBody>>,
    conn: ConnectionOf,
}

impl std::fmt::Debug for H2Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Request")
            .field("method", self.request.method())
            .field("uri", self.request.uri())
            .field("peer", &self.conn.peer)
            .finish_non_exhaustive()
    }
}

/// A whole body, boxed.
fn boxed(body: crate::upgrade::Body) -> ResponseBody {
    body.map_err(|never| match never {}).boxed()
}

fn full(body: impl Into<Bytes>) -> ResponseBody {
    http_body_util::Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

impl H2Request {
    /// The client's address.
    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// Whether the request is a CONNECT: an extended one asks for a
    /// WebSocket, and any other is refused as a handshake (400) rather
    /// than handed to the application as a page to serve: the only
    /// tunnels this server opens are WebSockets.
    pub(crate) fn is_upgrade(&self) -> bool {
        self.request.method() == Method::CONNECT
    }

    /// Answers with `reject` and returns the error to report.
    pub(crate) fn refuse(self, reject: Reject) -> Error {
        let response = reject.to_response(self.request.version()).map(full);
        // The client may already have reset the stream.
        let _ = self.respond.send(response);
        Error::Refused(Box::new(reject))
    }

    /// Judges the request with `acceptor` and answers it: `200` and the
    /// open WebSocket over this stream, or the refusal.
    pub(crate) async fn upgrade(self, acceptor: &Acceptor) -> Result<Upgraded<Transport>> {
        let conn = self.conn;
        match acceptor.upgrade(self.request) {
            Ok((response, pending)) => {
                if self.respond.send(response.map(boxed)).is_err() {
                    return Err(gone());
                }
                pending
                    .finish_with(|io| Transport::H2Server(Box::new(H2Upgraded::new(io, conn))))
                    .await
            }
            Err(refused) => {
                let reject = refused.reject().clone();
                let _ = self.respond.send(refused.into_response().map(boxed));
                Err(Error::Refused(Box::new(reject)))
            }
        }
    }

    /// The request's head, and the means to answer it.
    pub(crate) fn into_http(self) -> (Request<()>, Responder) {
        let head = crate::upgrade::head_of(&self.request);
        (
            head,
            Responder {
                respond: self.respond,
            },
        )
    }
}

fn gone() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the HTTP/2 stream ended before it was answered",
    ))
}

/// Answers one plain HTTP/2 request (see [`crate::HttpRequest`]).
pub(crate) struct Responder {
    respond: oneshot::Sender<Response<ResponseBody>>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// A response body fed piece by piece by [`Responder::respond_with`].
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    len: u64,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.rx
            .poll_recv(cx)
            .map(|piece| piece.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

impl Responder {
    /// Answers with `status`, `headers` and the first `len` bytes of
    /// `body` (none for a `HEAD`), each piece sent under `limit`; a body
    /// shorter than `len` resets the stream and is an [`Error::Io`].
    pub(crate) async fn respond_with<R>(
        self,
        method: &Method,
        status: StatusCode,
        headers: &HeaderMap,
        len: u64,
        body: R,
        limit: Duration,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin,
    {
        let (tx, rx) = mpsc::channel(1);
        let with_body = method != Method::HEAD && len > 0;
        let mut response = Response::new(if with_body {
            ChannelBody { rx, len }.boxed()
        } else {
            full(Bytes::new())
        });
        *response.status_mut() = status;
        for (name, value) in headers {
            // HTTP/2 forbids the connection-specific ones (RFC 9113 §8.2.2).
            if name == header::CONTENT_LENGTH
                || name == header::CONNECTION
                || name == header::TRANSFER_ENCODING
                || name == header::UPGRADE
                || name.as_str() == "keep-alive"
            {
                continue;
            }
            response.headers_mut().append(name.clone(), value.clone());
        }
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        self.respond.send(response).map_err(|_| gone())?;
        if !with_body {
            return Ok(());
        }
        let mut body = body.take(len);
        let mut copied = 0;
        loop {
            let mut piece = vec![0; 16 * 1024];
            let n = body.read(&mut piece).await?;
            if n == 0 {
                break;
            }
            piece.truncate(n);
            tokio::time::timeout(limit, tx.send(Ok(piece.into())))
                .await
                .map_err(|_| Error::Timeout(limit))?
                .map_err(|_| gone())?;
            copied += n as u64;
        }
        if copied < len {
            let short = || {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the response body ended before its Content-Length",
                )
            };
            let _ = tx.send(Err(short())).await;
            return Err(Error::Io(short()));
        }
        Ok(())
    }
}

/// Where a connection's requests go: the first to the handshake waiting
/// for it, the others to the listener's queue.
pub(crate) struct Streams {
    first: Mutex<Option<oneshot::Sender<H2Request>>>,
    rest: mpsc::Sender<H2Request>,
}

impl Streams {
    pub(crate) fn new(first: oneshot::Sender<H2Request>, rest: mpsc::Sender<H2Request>) -> Self {
        Streams {
            first: Mutex::new(Some(first)),
            rest,
        }
    }

    async fn hand_on(&self, request: H2Request) -> std::result::Result<(), H2Request> {
        let first = match self.first.lock() {
            Ok(mut first) => first.take(),
            Err(_) => None,
        };
        let request = match first {
            Some(first) => match first.send(request) {
                Ok(()) => return Ok(()),
                // The handshake gave up waiting: the listener takes it.
                Err(request) => request,
            },
            None => request,
        };
        self.rest.send(request).await.map_err(|e| e.0)
    }
}

/// Serves the HTTP/2 connection `tls` (ALPN `h2`) in a task of its own,
/// handing each request to `streams`.
pub(crate) fn serve(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    conn: ConnectionOf,
    max_header_list_size: usize,
    streams: Streams,
) {
    let streams = Arc::new(streams);
    let peer = conn.peer;
    let service = hyper::service::service_fn(move |request| {
        let streams = streams.clone();
        let conn = conn.clone();
        async move {
            let (respond, answer) = oneshot::channel();
            let request = H2Request {
                request,
                respond,
                conn,
            };
            if streams.hand_on(request).await.is_err() {
                return Ok::<_, io::Error>(unavailable());
            }
            // Dropped unanswered (the application let the request go):
            // the client is told, not left waiting.
            Ok(answer.await.unwrap_or_else(|_| unavailable()))
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .enable_connect_protocol()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE.0)
        .keep_alive_timeout(KEEPALIVE.1)
        .max_header_list_size(u32::try_from(max_header_list_size).unwrap_or(u32::MAX));
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%peer, "HTTP/2 connection: {e}");
        }
    });
}

fn unavailable() -> Response<ResponseBody> {
    Reject::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is not taking requests",
    )
    .to_response(dialtone_proto::http::Version::HTTP_2)
    .map(full)
}
