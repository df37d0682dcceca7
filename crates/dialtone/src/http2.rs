//! WebSockets over HTTP/2 (RFC 8441), dialing: feature `http2`.
//!
//! With [`Http2::Auto`] (the default), a `wss://` dial offers ALPN `h2`
//! before `http/1.1`. If the server picks `h2` and its `SETTINGS` enable
//! extended CONNECT (`SETTINGS_ENABLE_CONNECT_PROTOCOL`), the handshake is a
//! `CONNECT` with `:protocol websocket` on a new stream, answered by `200`,
//! and the [`WebSocket`] runs over that stream
//! ([`Transport::H2`]); subprotocols, permessage-deflate,
//! headers, authentication, cookies and redirects work as over HTTP/1.1.
//! Otherwise the dial goes on over HTTP/1.1 by itself: at once if the server
//! picked `http/1.1`, on a new connection if it picked `h2` without extended
//! CONNECT (and the dialer, and its clones, then go straight to HTTP/1.1
//! for that origin). `ws://` stays HTTP/1.1 unless [`Http2::Only`] asks for
//! cleartext HTTP/2 with prior knowledge (h2c).
//!
//! The blocking face (`Dialer::dial_blocking`) speaks HTTP/1.1 only.
//!
//! [`Dialer::connect_http2`] opens one HTTP/2 connection on which
//! [`Http2Connection::open_websocket`] opens any number of WebSockets.
//!
//! # Flow control, ends and failures
//!
//! Each WebSocket is one stream with HTTP/2's own flow control: what it
//! receives is handed back to the server's window only as the application
//! reads it, so a slow reader holds back its own stream. The connection's
//! window is made large enough never to be the limit (each stream's
//! window bounds what it buffers), so one stalled stream cannot stall the
//! others. A WebSocket's close ends its stream with `END_STREAM`; dropping
//! it earlier resets the stream (`RST_STREAM(CANCEL)`); a stream reset by
//! the server is an I/O error (`ConnectionReset`) and a close with
//! [`CloseCode::Abruptly`](crate::CloseCode::Abruptly). None of that touches the
//! other streams; the connection ends when its last user is gone.
//!
//! # Why h2 itself, not hyper's client
//!
//! hyper's client would hand back an `Upgraded` stream, but it cannot wait
//! for the server's `SETTINGS` before the first request (extended CONNECT
//! sent earlier is refused by h2 as not enabled) and it reports a stream
//! reset with `CANCEL` by the peer as a clean end of stream. With h2 the
//! dialer waits for the settings with a `PING` (the server's `SETTINGS` is
//! its first frame, so once the `PONG` is back they are applied), reports a
//! reset as a reset, and releases flow-control capacity exactly as the
//! WebSocket reads, with one dependency fewer.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use dialtone_proto::handshake::{ResponseHead, EXTENDED_CONNECT_PROTOCOL};
use dialtone_proto::http::{StatusCode, Version};
use dialtone_proto::{Connection, Role};
use url::Url;

pub use crate::h2_stream::H2Stream;

use crate::dial_plan::{Attempt, DialPlan};
use crate::dialer::{Dialer, Exchange, MAX_REJECTION_BODY, REJECTION_BODY_TIME};
use crate::error::{Error, Rejection, Result};
use crate::h2_stream::ConnectionInfo;
use crate::handshake::{parse_url, Response};
use crate::socket::WebSocket;
use crate::tls::ALPN_H2;
use crate::transport::Transport;

/// When a [`Dialer`] speaks WebSockets over HTTP/2 ([`Dialer::http2`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Http2 {
    /// `wss://` offers `h2` and uses it when the server enables extended
    /// CONNECT, else HTTP/1.1; `ws://` is HTTP/1.1. The default.
    #[default]
    Auto,
    /// Always HTTP/1.1; `h2` is never offered.
    Never,
    /// Only HTTP/2: `wss://` fails with [`Error::Http2`] when the server
    /// does not agree to `h2` or does not enable extended CONNECT; `ws://`
    /// speaks cleartext HTTP/2 with prior knowledge (h2c).
    Only,
}

/// The dialer's HTTP/2 mode and the origins found to lack extended CONNECT
/// (shared by its clones).
#[derive(Clone, Debug, Default)]
pub(crate) struct Http2State {
    mode: Http2,
    without: Arc<Mutex<HashSet<String>>>,
}

/// The most origins remembered as lacking extended CONNECT; past it the
/// list starts again (they are only a shortcut).
const MAX_REMEMBERED: usize = 1024;

impl Http2State {
    fn lacks_connect(&self, origin: &str) -> bool {
        let set = self.without.lock().unwrap_or_else(|p| p.into_inner());
        set.contains(origin)
    }

    fn remember_lacks_connect(&self, origin: String) {
        let mut set = self.without.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= MAX_REMEMBERED {
            set.clear();
        }
        set.insert(origin);
    }
}

/// A stream's receive window: what one WebSocket may have in flight toward
/// us before the application reads it.
const STREAM_WINDOW: u32 = 256 * 1024;

/// The connection's receive window: large enough never to bind before the
/// streams' own windows do (RFC 9113 caps it at 2^31 - 1).
const CONNECTION_WINDOW: u32 = 1 << 30;

/// Where one attempt of a dial goes.
pub(crate) enum Route {
    /// An HTTP/1.1 handshake over this transport.
    H1(Transport),
    /// An extended CONNECT on this HTTP/2 connection.
    H2(Http2Connection),
}

fn origin_key(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

fn alpn_words(alpn: Option<&[u8]>) -> String {
    match alpn {
        Some(p) => format!("it chose ALPN {:?}", String::from_utf8_lossy(p)),
        None => "it chose no ALPN protocol".to_owned(),
    }
}

fn no_extended_connect(url: &Url) -> Error {
    Error::Http2(format!(
        "{} speaks HTTP/2 but does not enable WebSockets over it \
         (no SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441)",
        url.host_str().unwrap_or("the server")
    ))
}

/// An h2 error as a dialtone error.
fn h2_error(e: h2::Error) -> Error {
    if e.is_io() {
        return Error::Io(crate::h2_stream::io_error(e));
    }
    Error::Http2(e.to_string())
}

impl Dialer {
    /// Sets when to speak WebSockets over HTTP/2 (RFC 8441); default
    /// [`Http2::Auto`]. See [`crate::http2`].
    pub fn http2(mut self, mode: Http2) -> Self {
        self.http2.mode = mode;
        self
    }

    /// Opens an HTTP/2 connection to the origin of `url` (`wss://`: TLS
    /// with ALPN `h2`; `ws://`: cleartext h2c with prior knowledge), on
    /// which [`Http2Connection::open_websocket`] opens WebSockets, each its
    /// own stream. Fails with [`Error::Http2`] if the server does not agree
    /// to HTTP/2 or does not enable extended CONNECT. Under the dial
    /// timeout; through the proxy, if any. The URL's path is not used.
    ///
    /// ```no_run
    /// # async fn run() -> dialtone::Result<()> {
    /// let conn = dialtone::Dialer::new().connect_http2("wss://127.0.0.1:9443/").await?;
    /// let (mut chat, _) = conn.open_websocket("/chat").await?;
    /// let (mut feed, _) = conn.open_websocket("/feed").await?;
    /// chat.send("hello").await?;
    /// # drop(feed);
    /// # Ok(()) }
    /// ```
    pub async fn connect_http2(&self, url: &str) -> Result<Http2Connection> {
        let url = parse_url(url)?;
        let work = async {
            let transport = self.open_transport(&url, true).await?;
            if url.scheme() == "wss" && transport.alpn_protocol() != Some(ALPN_H2) {
                return Err(Error::Http2(format!(
                    "{} did not agree to HTTP/2: {}",
                    url.host_str().unwrap_or("the server"),
                    alpn_words(transport.alpn_protocol())
                )));
            }
            let conn = Http2Connection::handshake(self, transport, &url).await?;
            if !conn.extended_connect_enabled() {
                return Err(no_extended_connect(&url));
            }
            Ok(conn)
        };
        let timeout = self.timeout_value();
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// Where the next attempt of a dial to `url` goes: `cached`, an HTTP/2
    /// connection an earlier attempt used, if it serves `url`; else a new
    /// connection, HTTP/2 or HTTP/1.1 as the mode and the server allow.
    pub(crate) async fn route(
        &self,
        url: &Url,
        cached: &mut Option<Http2Connection>,
    ) -> Result<Route> {
        if let Some(conn) = cached.as_ref().filter(|c| c.serves(url)) {
            return Ok(Route::H2(conn.clone()));
        }
        *cached = None;
        let mode = self.http2.mode;
        let wss = url.scheme() == "wss";
        let origin = origin_key(url);
        let h1_only = match mode {
            Http2::Never => true,
            Http2::Auto => !wss || self.http2.lacks_connect(&origin),
            Http2::Only => false,
        };
        if h1_only {
            return Ok(Route::H1(self.open_transport(url, false).await?));
        }
        let transport = self.open_transport(url, true).await?;
        if wss && transport.alpn_protocol() != Some(ALPN_H2) {
            let words = alpn_words(transport.alpn_protocol());
            if mode == Http2::Only {
                return Err(Error::Http2(format!(
                    "{} did not agree to HTTP/2 ({words}), and HTTP/2 is required",
                    url.host_str().unwrap_or("the server")
                )));
            }
            tracing::debug!("{origin}: {words}; WebSocket over HTTP/1.1");
            return Ok(Route::H1(transport));
        }
        let conn = Http2Connection::handshake(self, transport, url).await?;
        if conn.extended_connect_enabled() {
            *cached = Some(conn.clone());
            return Ok(Route::H2(conn));
        }
        if mode == Http2::Only {
            return Err(no_extended_connect(url));
        }
        tracing::debug!("{origin}: HTTP/2 without extended CONNECT; WebSocket over HTTP/1.1");
        self.http2.remember_lacks_connect(origin);
        drop(conn);
        Ok(Route::H1(self.open_transport(url, false).await?))
    }
}

/// One HTTP/2 connection to a server, carrying any number of WebSockets,
/// each on its own stream ([`Dialer::connect_http2`]). Cheap to clone; the
/// connection ends once it and every WebSocket opened on it are dropped.
#[derive(Clone, Debug)]
pub struct Http2Connection {
    send: h2::client::SendRequest<Bytes>,
    /// Whose options (subprotocols, headers, auth, cookies, limits) each
    /// WebSocket opened here takes.
    dialer: Arc<Dialer>,
    /// `scheme://host:port/` of the connection.
    origin: Url,
    info: Arc<ConnectionInfo>,
}

impl Http2Connection {
    /// Runs the HTTP/2 handshake over `transport` and waits for the server's
    /// settings; the connection's task is then spawned.
    async fn handshake(dialer: &Dialer, transport: Transport, url: &Url) -> Result<Self> {
        let info = Arc::new(ConnectionInfo {
            local: transport.local_addr().ok(),
            peer: transport.peer_addr().ok(),
            alpn: transport.alpn_protocol().map(<[u8]>::to_vec),
            certificates: transport.peer_certificates().map(<[_]>::to_vec),
            tls: transport.is_tls(),
        });
        let limit = u32::try_from(dialer.config_ref().max_handshake_size).unwrap_or(u32::MAX);
        let (send, mut conn) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(limit)
            .handshake::<_, Bytes>(transport)
            .await
            .map_err(h2_error)?;
        // The server's SETTINGS is its first frame: once our PING's answer
        // is back, they are known (h2 applies them before reading on).
        let mut ping = conn
            .ping_pong()
            .ok_or_else(|| Error::Http2("no PING handle on a new connection".into()))?;
        tokio::select! {
            ended = &mut conn => {
                return Err(match ended {
                    Err(e) => h2_error(e),
                    Ok(()) => Error::Http2("the server closed the connection before its settings came".into()),
                });
            }
            pong = ping.ping(h2::Ping::opaque()) => {
                pong.map_err(h2_error)?;
            }
        }
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/2 connection ended: {e}");
            }
        });
        let mut origin = url.clone();
        origin.set_path("/");
        origin.set_query(None);
        origin.set_fragment(None);
        let _ = origin.set_username("");
        let _ = origin.set_password(None);
        Ok(Http2Connection {
            send,
            dialer: Arc::new(dialer.clone()),
            origin,
            info,
        })
    }

    /// Whether the server enabled extended CONNECT, which WebSockets need.
    pub fn extended_connect_enabled(&self) -> bool {
        self.send.is_extended_connect_protocol_enabled()
    }

    /// The origin this connection serves (`wss://host:port/`, or `ws://`
    /// for h2c).
    pub fn url(&self) -> &Url {
        &self.origin
    }

    /// Whether a WebSocket at `url` may be opened on this connection.
    fn serves(&self, url: &Url) -> bool {
        url.scheme() == self.origin.scheme()
            && url.host_str() == self.origin.host_str()
            && url.port_or_known_default() == self.origin.port_or_known_default()
    }

    /// Opens a WebSocket at `path` (path and query, e.g. `/chat?room=1`)
    /// on a new stream, with the dialer's subprotocols, extensions,
    /// headers, authentication and cookies; a Digest challenge is answered
    /// and a redirect followed if it stays on this origin. Under the
    /// dialer's dial timeout.
    pub async fn open_websocket(&self, path: &str) -> Result<(WebSocket<Transport>, Response)> {
        let url = self
            .origin
            .join(path)
            .map_err(|e| Error::Url(format!("{path}: {e}")))?;
        if !self.serves(&url) {
            return Err(Error::Url(format!(
                "{url} is not on this connection's origin {}",
                self.origin
            )));
        }
        let mut plan = DialPlan::new(&self.dialer, url.as_str())?;
        let work = async {
            loop {
                let attempt = plan.attempt()?;
                if !self.serves(&attempt.url) {
                    return Err(Error::Redirect(format!(
                        "redirected to {}, which this HTTP/2 connection does not serve",
                        attempt.url
                    )));
                }
                match self.exchange(&attempt).await? {
                    Exchange::Upgraded(upgraded) => {
                        plan.upgraded(&upgraded.1);
                        return Ok(*upgraded);
                    }
                    Exchange::Rejected(r) => plan.rejected(r)?,
                }
            }
        };
        let timeout = self.dialer.timeout_value();
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// Sends the attempt's extended CONNECT on a new stream and reads the
    /// answer.
    pub(crate) async fn exchange(
        &self,
        attempt: &Attempt,
    ) -> Result<Exchange<WebSocket<Transport>>> {
        let scheme = if self.info.tls { "https" } else { "http" };
        let mut request = attempt.request.to_extended_connect(scheme)?;
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from_static(EXTENDED_CONNECT_PROTOCOL));
        // Waits for a stream slot if the server's concurrency limit is met.
        let mut send = self.send.clone().ready().await.map_err(h2_error)?;
        let (response, stream) = send.send_request(request, false).map_err(h2_error)?;
        let (parts, mut recv) = response.await.map_err(h2_error)?.into_parts();
        let head = ResponseHead {
            status: parts.status,
            reason: parts.status.canonical_reason().unwrap_or("").to_owned(),
            headers: parts.headers,
        };
        if parts.status != StatusCode::OK {
            let body = read_body(&mut recv).await;
            // Dropping the stream resets it if the server has not ended it.
            return Ok(Exchange::Rejected(Box::new(Rejection::from_head(
                head, body,
            ))));
        }
        let negotiated = attempt.request.check_extended_connect_response(&head)?;
        let conn = Connection::with_deflate(
            Role::Client,
            self.dialer.config_ref().clone(),
            negotiated.deflate,
        );
        let io = Transport::H2(Box::new(H2Stream::new(stream, recv, self.info.clone())));
        let ws = WebSocket::from_connection(io, conn, negotiated.protocol.clone());
        let response = Response {
            head,
            protocol: negotiated.protocol,
            deflate: negotiated.deflate,
            url: attempt.url.clone(),
            version: Version::HTTP_2,
        };
        Ok(Exchange::Upgraded(Box::new((ws, response))))
    }
}

/// The start of a refusal's body: at most [`MAX_REJECTION_BODY`] bytes, for
/// at most [`REJECTION_BODY_TIME`].
async fn read_body(recv: &mut h2::RecvStream) -> Bytes {
    let mut body = BytesMut::new();
    let read = async {
        while let Some(Ok(chunk)) = recv.data().await {
            let _ = recv.flow_control().release_capacity(chunk.len());
            let room = MAX_REJECTION_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_REJECTION_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REJECTION_BODY_TIME, read).await;
    body.freeze()
}
