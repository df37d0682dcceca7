//! WebSockets in a hyper 1 server (feature `hyper`): [`Acceptor::upgrade`]
//! turns a request that asks for a WebSocket, an HTTP/1.1 `GET` with
//! `Upgrade: websocket` or an HTTP/2 extended `CONNECT` with
//! `:protocol = websocket` (RFC 8441), into the response to send and a
//! [`PendingWebSocket`] that resolves to a [`WebSocket`] once hyper has
//! handed over the connection (or the HTTP/2 stream).
//!
//! The request is judged by the same rules as the [`Listener`]'s own
//! handshakes (the core's `check_request` / `check_extended_connect`, then
//! [`Acceptor`]'s `Origin` policy, subprotocols and permessage-deflate), and
//! the socket is the same [`WebSocket`] driving the same core: only the
//! transport, [`HyperIo`], differs.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use dialtone::upgrade::{is_upgrade_request, Body};
//! use dialtone::{http, Acceptor};
//!
//! async fn handle(
//!     acceptor: Acceptor,
//!     request: http::Request<hyper::body::Incoming>,
//! ) -> Result<http::Response<Body>, Infallible> {
//!     if !is_upgrade_request(&request) {
//!         return Ok(http::Response::new(Body::from("a page")));
//!     }
//!     Ok(match acceptor.upgrade(request) {
//!         Ok((response, pending)) => {
//!             tokio::spawn(async move {
//!                 let mut ws = pending.await?.ws;
//!                 while let Some(msg) = ws.recv().await {
//!                     let msg = msg?;
//!                     if msg.is_data() {
//!                         ws.send(msg).await?;
//!                     }
//!                 }
//!                 Ok::<(), dialtone::Error>(())
//!             });
//!             response
//!         }
//!         Err(refused) => refused.into_response(),
//!     })
//! }
//! ```
//!
//! A hyper server serves extended CONNECT only if it says so
//! (`http2::Builder::enable_connect_protocol`, RFC 8441 §3); without it
//! clients never send one.
//!
//! [`Listener`]: crate::Listener

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use bytes::Bytes;
use dialtone_proto::handshake::{self as hs, Reject};
use dialtone_proto::http::{header, Method, Request, Response, StatusCode, Version};
use dialtone_proto::Connection;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::error::{Error, Result};
use crate::handshake::{Acceptor, Upgraded};
use crate::socket::WebSocket;

/// The transport of a WebSocket upgraded by hyper: the HTTP/1.1
/// connection, or the HTTP/2 stream, hyper handed over.
pub type HyperIo = TokioIo<hyper::upgrade::Upgraded>;

/// The body of the responses [`Acceptor::upgrade`] makes (an empty one
/// for an acceptance; the reason, as text, for a refusal).
pub type Body = http_body_util::Full<Bytes>;

/// Whether `request` asks for a WebSocket: an HTTP/1.x request with
/// `Upgrade: websocket`, or an HTTP/2 (or later) `CONNECT` whose
/// `:protocol` is `websocket`. Such a request is then accepted or refused
/// by [`Acceptor::upgrade`]; any other is an ordinary request to answer.
pub fn is_upgrade_request<B>(request: &Request<B>) -> bool {
    if request.version() >= Version::HTTP_2 {
        request.method() == Method::CONNECT && protocol(request).is_some()
    } else {
        hs::header_has_token(request.headers(), &header::UPGRADE, "websocket")
    }
}

/// The `:protocol` pseudo-header of an HTTP/2 extended CONNECT.
fn protocol<B>(request: &Request<B>) -> Option<&str> {
    request
        .extensions()
        .get::<hyper::ext::Protocol>()
        .map(hyper::ext::Protocol::as_str)
}

/// A refused WebSocket request: why, and the response that says so.
#[derive(Debug)]
pub struct Refused {
    reject: Reject,
    version: Version,
}

impl Refused {
    /// A refusal of a request of this HTTP version.
    pub(crate) fn new(reject: Reject, version: Version) -> Self {
        Refused { reject, version }
    }

    /// The refusal: status, reason and headers.
    pub fn reject(&self) -> &Reject {
        &self.reject
    }

    /// The response to send: the refusal's status (400, 403, 405, 426, or
    /// the [`Acceptor::on_request`] callback's), its headers (HTTP/1.1's
    /// connection headers left out on HTTP/2) and the reason as text.
    pub fn into_response(self) -> Response<Body> {
        self.reject
            .to_response(self.version)
            .map(|text| Body::from(Bytes::from(text)))
    }
}

impl From<Refused> for Error {
    fn from(refused: Refused) -> Self {
        Error::Refused(Box::new(refused.reject))
    }
}

/// An accepted WebSocket whose response has still to reach the client:
/// awaiting it (after returning the response to hyper) gives the open
/// [`WebSocket`], the request and the extensions agreed, as an
/// [`Upgraded`].
#[must_use = "the WebSocket opens only when this is awaited"]
pub struct PendingWebSocket {
    on_upgrade: OnUpgrade,
    conn: Connection,
    protocol: Option<String>,
    request: Request<()>,
    extensions: Option<String>,
}

impl std::fmt::Debug for PendingWebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingWebSocket")
            .field("request", &self.request)
            .field("protocol", &self.protocol)
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

impl PendingWebSocket {
    /// The client's request (its method, URI, version and headers).
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// Waits for hyper to hand the connection over, then wraps it with
    /// `wrap` (the listener puts it in its [`Transport`](crate::Transport)).
    pub(crate) async fn finish_with<S, F>(self, wrap: F) -> Result<Upgraded<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        F: FnOnce(HyperIo) -> S,
    {
        let upgraded = self.on_upgrade.await.map_err(|e| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                format!("the connection was not handed over: {e}"),
            ))
        })?;
        let io = wrap(TokioIo::new(upgraded));
        Ok(Upgraded {
            ws: WebSocket::from_connection(io, self.conn, self.protocol),
            request: self.request,
            extensions: self.extensions,
        })
    }
}

impl IntoFuture for PendingWebSocket {
    type Output = Result<Upgraded<HyperIo>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.finish_with(|io| io))
    }
}

/// The request line and headers of `request`, without its body and
/// extensions (what the callback sees and [`Upgraded::request`] keeps).
pub(crate) fn head_of<B>(request: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    head
}

impl Acceptor {
    /// Judges a request a hyper server received and, if it is a valid
    /// WebSocket handshake this acceptor agrees to, returns the response
    /// to send (`101 Switching Protocols` on HTTP/1.1, `200 OK` on HTTP/2,
    /// with the subprotocol and extensions agreed) and the socket to
    /// await once hyper has sent it. A refusal carries its response.
    ///
    /// The acceptor's limits ([`Config`](crate::Config)), timeouts,
    /// subprotocols, [`Acceptor::on_request`] callback and
    /// [`Acceptor::origin_policy`] apply as for its own handshakes; the
    /// handshake timeout and size limit are hyper's to enforce here.
    pub fn upgrade<B>(
        &self,
        mut request: Request<B>,
    ) -> std::result::Result<(Response<Body>, PendingWebSocket), Refused> {
        let version = request.version();
        let refuse = |reject| Refused::new(reject, version);
        let head = head_of(&request);
        let (accept, protocols, extensions) = if version >= Version::HTTP_2 {
            let offer = hs::check_extended_connect(&request, protocol(&request)).map_err(refuse)?;
            (None, offer.protocols, offer.extensions)
        } else if version < Version::HTTP_11 {
            return Err(refuse(Reject::new(
                StatusCode::BAD_REQUEST,
                "HTTP/1.1 or later is required",
            )));
        } else {
            let offer = hs::check_request(&request).map_err(refuse)?;
            (Some(offer.accept), offer.protocols, offer.extensions)
        };
        let agreed = self
            .negotiate(&head, &protocols, &extensions)
            .map_err(refuse)?;
        let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
            return Err(refuse(Reject::new(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            )));
        };
        let response = hs::accept_response_head(
            accept.as_deref(),
            agreed.protocol.as_deref(),
            agreed.extensions.as_deref(),
        )
        .map(|()| Body::default());
        let pending = PendingWebSocket {
            on_upgrade,
            conn: agreed.connection(&self.config),
            protocol: agreed.protocol,
            request: head,
            extensions: agreed.extensions,
        };
        Ok((response, pending))
    }
}
