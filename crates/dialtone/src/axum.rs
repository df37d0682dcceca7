//! dialtone in an axum 0.8 app (feature `axum`): [`WebSocketUpgrade`], an
//! extractor that opens a dialtone [`WebSocket`] on an HTTP/1.1 upgrade or
//! an HTTP/2 extended CONNECT (RFC 8441). See `docs/AXUM.md`.
//!
//! ```no_run
//! use axum::{response::Response, routing::any, Router};
//! use dialtone::axum::WebSocketUpgrade;
//!
//! async fn echo(upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.protocols(["chat"]).on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! // `any`, not `get`: over HTTP/2 the handshake is a CONNECT.
//! let app: Router = Router::new().route("/echo", any(echo));
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(tcp, app).await
//! # }
//! ```
//!
//! The request is judged by the core's handshake rules, then by an
//! [`Acceptor`] built from the extractor's settings: its `Origin` policy
//! ([`OriginPolicy::same_host`] unless set), subprotocols and
//! permessage-deflate ([`Config`]). A refusal is an axum response with the
//! status the listener would answer (400, 403, 405, 426).

use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use dialtone_proto::handshake::{self as hs, Reject};
use dialtone_proto::http::request::Parts;
use dialtone_proto::http::{Request, StatusCode, Version};
use dialtone_proto::{Config, OriginPolicy};

use crate::handshake::Acceptor;
use crate::socket::WebSocket;
use crate::upgrade::{HyperIo, Refused};

/// The extractor: a request that asks for a WebSocket, not yet answered.
/// Set the policy with its builder methods, then answer with
/// [`WebSocketUpgrade::on_upgrade`].
///
/// Use it on `any(..)` routes (or `get(..).connect(..)`) for HTTP/2, whose
/// WebSocket handshakes are CONNECTs; a `get` route serves HTTP/1.1 only.
pub struct WebSocketUpgrade {
    request: Request<()>,
    acceptor: Acceptor,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .field("acceptor", &self.acceptor)
            .finish()
    }
}

/// A request the extractor refused, as the response that says why.
#[derive(Debug)]
pub struct WebSocketUpgradeRejection(Refused);

impl WebSocketUpgradeRejection {
    /// The refusal: status, reason and headers.
    pub fn reject(&self) -> &Reject {
        self.0.reject()
    }
}

impl std::fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.reject().fmt(f)
    }
}

impl std::error::Error for WebSocketUpgradeRejection {}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        self.0.into_response().map(Body::new)
    }
}

fn rejection(reject: Reject, version: Version) -> WebSocketUpgradeRejection {
    WebSocketUpgradeRejection(Refused::new(reject, version))
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut request = Request::new(());
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        // The core's checks now, so that a bad request is refused by the
        // extractor as axum's own would be; the acceptor's choices
        // (origin, subprotocol, deflate) once the handler has set them.
        let protocol = parts.extensions.get::<hyper::ext::Protocol>().cloned();
        let checked = if parts.version >= Version::HTTP_2 {
            hs::check_extended_connect(&request, protocol.as_ref().map(|p| p.as_str())).map(drop)
        } else {
            hs::check_request(&request).map(drop)
        };
        checked.map_err(|reject| rejection(reject, parts.version))?;
        let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(rejection(
                Reject::new(
                    StatusCode::UPGRADE_REQUIRED,
                    "this connection cannot be upgraded",
                ),
                parts.version,
            ));
        };
        request.extensions_mut().insert(on_upgrade);
        if let Some(protocol) = protocol {
            request.extensions_mut().insert(protocol);
        }
        Ok(WebSocketUpgrade {
            request,
            acceptor: Acceptor::new(),
        })
    }
}

impl WebSocketUpgrade {
    /// The client's request (method, URI, version, headers).
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The subprotocols this route speaks: the first the client offers that
    /// is in the list is chosen.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        for p in protocols {
            self.acceptor = self.acceptor.protocol(p);
        }
        self
    }

    /// Limits, permessage-deflate and timeouts of the connection
    /// ([`Acceptor::config`]).
    pub fn config(mut self, config: Config) -> Self {
        self.acceptor = self.acceptor.config(config);
        self
    }

    /// Which pages may open this WebSocket ([`Acceptor::origin_policy`];
    /// the default accepts the app's own pages and non-browser clients).
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.acceptor = self.acceptor.origin_policy(policy);
        self
    }

    /// Uses all of `acceptor`'s policy (its callback included) instead.
    pub fn acceptor(mut self, acceptor: Acceptor) -> Self {
        self.acceptor = acceptor;
        self
    }

    /// Answers the handshake and, once the client has the answer, runs
    /// `callback` with the open WebSocket in a task of its own. Returns the
    /// response for the handler to return: `101` (HTTP/1.1) or `200`
    /// (HTTP/2), or the refusal (403 for an `Origin` the policy refuses).
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket<HyperIo>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match self.acceptor.upgrade(self.request) {
            Ok((response, pending)) => {
                tokio::spawn(async move {
                    match pending.await {
                        Ok(upgraded) => callback(upgraded.ws).await,
                        Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
                    }
                });
                response.map(Body::new)
            }
            Err(refused) => WebSocketUpgradeRejection(refused).into_response(),
        }
    }
}
