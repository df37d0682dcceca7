//! The dialer's WebSockets over HTTP/2 (RFC 8441) against an independent
//! server: axum 0.8's `WebSocketUpgrade` (tungstenite underneath) served by
//! hyper-util with HTTP/2 and `enable_connect_protocol`, over TLS (ALPN `h2`,
//! a certificate made by rcgen) or cleartext h2c. Everything on 127.0.0.1.
//!
//! The client-side checks (`echo_round_trip`, `multiplexed_echo`,
//! `slow_reader_holds_back_only_its_stream`) take only URLs or an
//! `Http2Connection` and the paths of an echo WebSocket (and of one that is
//! reset after N messages, or floods), so they can run against any RFC 8441
//! server, dialtone's own listener included.

#![cfg(feature = "http2")]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message as AxMessage, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as AxResponse};
use axum::routing::any;
use axum::Router;
use dialtone::http::Version;
use dialtone::tls::rustls;
use dialtone::tls::ServerTls;
use dialtone::{
    Auth, CloseCode, Dialer, Error, Http2, Http2Connection, Message, Response, Transport, WebSocket,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use support::{Ca, Leaf};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

// ---------------------------------------------------------------------------
// The server: axum over hyper-util, HTTP/1.1 and HTTP/2 on one port.
// ---------------------------------------------------------------------------

/// What the server saw.
#[derive(Clone, Default)]
struct Seen {
    /// TCP connections accepted.
    accepted: Arc<AtomicUsize>,
    /// The ALPN protocols each TLS client offered, in order.
    alpn_offers: Arc<Mutex<Vec<Vec<String>>>>,
    /// The request headers of each WebSocket request on `/echo`.
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    /// Bytes `/flood` managed to send.
    flooded: Arc<AtomicUsize>,
    /// Bare server: streams the client ended with END_STREAM after the
    /// closing handshake, and streams it reset with RST_STREAM(CANCEL).
    ended: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
}

struct Server {
    addr: SocketAddr,
    seen: Seen,
}

/// How much `/flood` sends, in messages of `FLOOD_MESSAGE` bytes.
const FLOOD_TOTAL: usize = 8 << 20;
const FLOOD_MESSAGE: usize = 16 << 10;

async fn echo(State(seen): State<Seen>, headers: HeaderMap, ws: WebSocketUpgrade) -> AxResponse {
    seen.headers.lock().unwrap().push(headers);
    ws.protocols(["chat"]).on_upgrade(|mut socket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, AxMessage::Text(_) | AxMessage::Binary(_))
                && socket.send(msg).await.is_err()
            {
                return;
            }
        }
    })
}

/// Echoes `after` messages, then drops the socket without a close frame
/// or an end of stream: hyper resets the stream (`RST_STREAM(CANCEL)`).
async fn reset_after(Path(after): Path<usize>, ws: WebSocketUpgrade) -> AxResponse {
    ws.on_upgrade(move |mut socket| async move {
        let mut echoed = 0;
        while echoed < after {
            match socket.recv().await {
                Some(Ok(msg @ (AxMessage::Text(_) | AxMessage::Binary(_)))) => {
                    if socket.send(msg).await.is_err() {
                        return;
                    }
                    echoed += 1;
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
        drop(socket);
    })
}

/// Sends FLOOD_TOTAL bytes as fast as the client lets it, counting.
async fn flood(State(seen): State<Seen>, ws: WebSocketUpgrade) -> AxResponse {
    ws.on_upgrade(move |mut socket| async move {
        let chunk = axum::body::Bytes::from(vec![0x5a; FLOOD_MESSAGE]);
        for _ in 0..FLOOD_TOTAL / FLOOD_MESSAGE {
            if socket.send(AxMessage::Binary(chunk.clone())).await.is_err() {
                return;
            }
            seen.flooded.fetch_add(FLOOD_MESSAGE, Ordering::SeqCst);
        }
        while let Some(Ok(_)) = socket.recv().await {}
    })
}

fn router(seen: Seen) -> Router {
    Router::new()
        .route("/echo", any(echo))
        .route("/reset/{after}", any(reset_after))
        .route("/flood", any(flood))
        .route(
            "/moved",
            any(|| async {
                (StatusCode::TEMPORARY_REDIRECT, [("location", "/echo")]).into_response()
            }),
        )
        .route(
            "/deny",
            any(|| async { (StatusCode::FORBIDDEN, "no entry").into_response() }),
        )
        .with_state(seen)
}

async fn serve<I>(io: I, router: Router, connect_protocol: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(256);
    if connect_protocol {
        builder.http2().enable_connect_protocol();
    }
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(router))
        .await;
}

/// A TLS server config for `localhost` whose ALPN list is `alpn`.
fn tls_config(ca: &Ca, alpn: &[&str]) -> Arc<rustls::ServerConfig> {
    let pem = ca.issue(Leaf::default());
    let tls = ServerTls::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap();
    let mut config = (**tls.config()).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// Starts the server: TLS with this config, or cleartext (HTTP/1.1 or
/// h2c with prior knowledge); HTTP/2 with or without extended CONNECT.
async fn start(tls: Option<Arc<rustls::ServerConfig>>, connect_protocol: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let app = router(seen.clone());
    let counters = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counters.accepted.fetch_add(1, Ordering::SeqCst);
            let (app, tls, counters) = (app.clone(), tls.clone(), counters.clone());
            tokio::spawn(async move {
                let Some(config) = tls else {
                    return serve(tcp, app, connect_protocol).await;
                };
                let acceptor =
                    tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let Ok(start) = acceptor.await else { return };
                let offered = start
                    .client_hello()
                    .alpn()
                    .map(|list| {
                        list.map(|p| String::from_utf8_lossy(p).into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                counters.alpn_offers.lock().unwrap().push(offered);
                if let Ok(stream) = start.into_stream(config).await {
                    serve(stream, app, connect_protocol).await;
                }
            });
        }
    });
    Server { addr, seen }
}

// ---------------------------------------------------------------------------
// A bare h2 server (RFC 8441 by hand, tungstenite over each stream), for
// what hyper cannot do: reset one stream with RST_STREAM mid-stream (a
// dropped hyper upgrade ends its stream with END_STREAM instead).
// ---------------------------------------------------------------------------

/// A server-side h2 stream as a byte stream, for tungstenite.
struct BareStream {
    send: h2::SendStream<bytes::Bytes>,
    recv: h2::RecvStream,
    pending: bytes::Bytes,
    seen: Seen,
}

impl AsyncRead for BareStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.pending.is_empty() {
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => self.pending = data,
                Poll::Ready(Some(Err(e))) => {
                    if e.reason() == Some(h2::Reason::CANCEL) {
                        self.seen.cancelled.fetch_add(1, Ordering::SeqCst);
                    }
                    return Poll::Ready(Err(std::io::Error::other(e)));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let data = self.pending.split_to(n);
        buf.put_slice(&data);
        let _ = self.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for BareStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        self.send.reserve_capacity(buf.len());
        loop {
            let n = self.send.capacity().min(buf.len());
            if n > 0 {
                let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                return Poll::Ready(
                    self.send
                        .send_data(data, false)
                        .map(|()| n)
                        .map_err(std::io::Error::other),
                );
            }
            match self.send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(_) => return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let _ = self.send.send_data(bytes::Bytes::new(), true);
        std::task::Poll::Ready(Ok(()))
    }
}

/// One stream: `200`, then tungstenite echoes; on `/reset/N`, after N
/// messages the stream is reset with `RST_STREAM(CANCEL)`.
async fn bare_stream(
    request: axum::http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    seen: Seen,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    let ok = request.method() == axum::http::Method::CONNECT
        && request
            .extensions()
            .get::<h2::ext::Protocol>()
            .map(|p| p.as_str())
            == Some("websocket")
        && !request.headers().contains_key("sec-websocket-key");
    let status = if ok { 200 } else { 400 };
    let reset_after = request
        .uri()
        .path()
        .strip_prefix("/reset/")
        .and_then(|n| n.parse::<usize>().ok());
    let mut answer = axum::http::Response::builder().status(status);
    if request.uri().path() == "/bad-protocol" {
        // A subprotocol the client did not offer.
        answer = answer.header("sec-websocket-protocol", "not-offered");
    }
    let answer = answer.body(()).unwrap();
    let Ok(send) = respond.send_response(answer, !ok) else {
        return;
    };
    if !ok {
        return;
    }
    let io = BareStream {
        send,
        recv: request.into_body(),
        pending: bytes::Bytes::new(),
        seen,
    };
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let mut echoed = 0;
    while let Some(Ok(msg)) = ws.next().await {
        if !(msg.is_text() || msg.is_binary()) {
            continue;
        }
        if ws.send(msg).await.is_err() {
            return;
        }
        echoed += 1;
        if Some(echoed) == reset_after {
            ws.get_mut().send.send_reset(h2::Reason::CANCEL);
            return;
        }
    }
    // The end: END_STREAM after the close reply, then wait for the
    // client's. (Dropping the stream first would reset it, and a reset
    // discards what h2 has not written yet: the close reply.)
    let mut io = ws.into_inner();
    let _ = io.send.send_data(bytes::Bytes::new(), true);
    loop {
        match io.recv.data().await {
            Some(Ok(_)) => {}
            Some(Err(_)) => return,
            None => break,
        }
    }
    io.seen.ended.fetch_add(1, Ordering::SeqCst);
}

/// Starts the bare h2 server over TLS (ALPN `h2`), extended CONNECT on.
async fn start_bare(ca: &Ca) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(ca, &["h2"]));
    let counters = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counters.accepted.fetch_add(1, Ordering::SeqCst);
            let (acceptor, counters) = (acceptor.clone(), counters.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut builder = h2::server::Builder::new();
                builder
                    .enable_connect_protocol()
                    .max_concurrent_streams(256);
                let Ok(mut conn) = builder.handshake::<_, bytes::Bytes>(tls).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = conn.accept().await {
                    tokio::spawn(bare_stream(request, respond, counters.clone()));
                }
            });
        }
    });
    Server { addr, seen }
}

fn trusting(ca: &Ca) -> Dialer {
    Dialer::new()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .add_ca_pem(ca.pem.as_bytes())
}

// ---------------------------------------------------------------------------
// Client-side checks, server-agnostic.
// ---------------------------------------------------------------------------

fn payload(tag: usize, i: usize) -> Message {
    let text = format!("ws{tag}-msg{i}-{}", "x".repeat(i % 97));
    if tag.is_multiple_of(2) {
        Message::text(text)
    } else {
        Message::binary(text.into_bytes())
    }
}

/// Dials `url` (an echo WebSocket that speaks the subprotocol `chat`),
/// echoes a text and a binary message and closes normally; returns the
/// handshake's response and what the transport was.
async fn echo_round_trip(dialer: &Dialer, url: &str) -> (Response, TransportFacts) {
    let (mut ws, response) = dialer.clone().protocol("chat").dial(url).await.unwrap();
    assert_eq!(response.protocol.as_deref(), Some("chat"));
    assert_eq!(ws.protocol(), Some("chat"));
    let facts = TransportFacts::of(ws.get_ref());
    for msg in [
        Message::text("hello over h2"),
        Message::binary(vec![0u8, 1, 2, 255]),
    ] {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), msg);
    }
    let answer = ws.close(CloseCode::Normal, "done").await.unwrap();
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));
    (response, facts)
}

#[derive(Debug)]
struct TransportFacts {
    version: Version,
    tls: bool,
    alpn: Option<Vec<u8>>,
}

impl TransportFacts {
    fn of(t: &Transport) -> Self {
        TransportFacts {
            version: t.http_version(),
            tls: t.is_tls(),
            alpn: t.alpn_protocol().map(<[u8]>::to_vec),
        }
    }
}

/// Echoes `messages` messages in batches, checking each reply; waits at
/// message `pause.0` until `pause.1` turns true (or its sender goes).
async fn echo_many(
    ws: &mut WebSocket<Transport>,
    tag: usize,
    messages: usize,
    mut pause: Option<(usize, watch::Receiver<bool>)>,
) {
    const BATCH: usize = 50;
    let mut i = 0;
    while i < messages {
        if let Some((at, rx)) = &mut pause {
            if i >= *at {
                let _ = rx.wait_for(|done| *done).await;
                pause = None;
            }
        }
        let end = (i + BATCH).min(messages);
        for j in i..end {
            ws.feed(payload(tag, j)).unwrap();
        }
        ws.flush().await.unwrap();
        for j in i..end {
            match ws.recv().await {
                Some(Ok(msg)) => assert_eq!(msg, payload(tag, j), "stream {tag}, message {j}"),
                other => panic!("stream {tag}, message {j}: {other:?}"),
            }
        }
        i = end;
    }
}

/// Sends and echoes on a WebSocket the server resets: returns whether a
/// reset was seen as an I/O error and the close reported.
async fn run_until_reset(ws: &mut WebSocket<Transport>, tag: usize) -> (bool, Option<CloseCode>) {
    let is_reset =
        |e: &Error| matches!(e, Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset);
    let (mut reset, mut close) = (false, None);
    'send: for batch in 0..1000 {
        for j in 0..10 {
            ws.feed(payload(tag, batch * 10 + j)).unwrap_or_default();
        }
        if let Err(e) = ws.flush().await {
            reset |= is_reset(&e);
            break;
        }
        for j in 0..10 {
            match ws.recv().await {
                Some(Ok(Message::Close(frame))) => {
                    close = Some(frame.code);
                    break 'send;
                }
                Some(Ok(msg)) => assert_eq!(msg, payload(tag, batch * 10 + j)),
                Some(Err(e)) => {
                    assert!(is_reset(&e), "{e:?}");
                    reset = true;
                    break 'send;
                }
                None => break 'send,
            }
        }
    }
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(Message::Close(frame)) => close = Some(frame.code),
            Ok(other) => panic!("after the reset: {other:?}"),
            Err(e) => {
                assert!(is_reset(&e), "{e:?}");
                reset = true;
            }
        }
    }
    (reset, close)
}

/// Opens `streams` WebSockets on `conn` at `echo_path`, plus one at
/// `reset_path` that the server resets mid-stream; each echo WebSocket
/// echoes `messages` messages intact (half of them after the reset) and
/// closes normally, and the reset one reports `Abruptly`. Returns the
/// local addresses the WebSockets' transports report.
async fn multiplexed_echo(
    conn: &Http2Connection,
    echo_path: &str,
    reset_path: &str,
    streams: usize,
    messages: usize,
) -> Vec<SocketAddr> {
    let (reset_done, reset_seen) = watch::channel(false);
    let mut sockets = Vec::new();
    for _ in 0..streams {
        let (ws, response) = conn.open_websocket(echo_path).await.unwrap();
        assert_eq!(response.version, Version::HTTP_2);
        sockets.push(ws);
    }
    let (mut victim, _) = conn.open_websocket(reset_path).await.unwrap();
    let mut addrs = vec![victim.get_ref().local_addr().unwrap()];
    let mut tasks = tokio::task::JoinSet::new();
    for (tag, mut ws) in sockets.into_iter().enumerate() {
        addrs.push(ws.get_ref().local_addr().unwrap());
        let pause = Some((messages / 2, reset_seen.clone()));
        tasks.spawn(async move {
            echo_many(&mut ws, tag, messages, pause).await;
            let answer = ws.close(CloseCode::Normal, "done").await.unwrap();
            assert_eq!(
                answer.map(|f| f.code),
                Some(CloseCode::Normal),
                "stream {tag}"
            );
            tag
        });
    }
    let victim_task = tokio::spawn(async move {
        let outcome = run_until_reset(&mut victim, streams).await;
        let _ = reset_done.send(true);
        (outcome, victim.close_received().map(|f| f.code))
    });
    let ((reset, close), recorded) = victim_task.await.unwrap();
    assert!(reset, "the reset stream reported no reset");
    assert_eq!(close, Some(CloseCode::Abruptly));
    assert_eq!(recorded, Some(CloseCode::Abruptly));
    let mut done = Vec::new();
    while let Some(tag) = tasks.join_next().await {
        done.push(tag.unwrap());
    }
    assert_eq!(done.len(), streams, "every other WebSocket completed");
    addrs
}

/// Opens a WebSocket at `flood_path` (the server sends far more than a
/// stream's window) and does not read it, while another at `echo_path` on
/// the same connection echoes 200 messages; then reads the flood whole.
/// Returns the bytes of flood received.
async fn slow_reader_holds_back_only_its_stream(
    conn: &Http2Connection,
    flood_path: &str,
    echo_path: &str,
) -> usize {
    let (mut flooded, _) = conn.open_websocket(flood_path).await.unwrap();
    let (mut echo, _) = conn.open_websocket(echo_path).await.unwrap();
    // A guard against a hang (a stalled connection), not a measurement.
    tokio::time::timeout(Duration::from_secs(60), echo_many(&mut echo, 0, 200, None))
        .await
        .expect("the echo stream stalled behind the unread one");
    echo.close(CloseCode::Normal, "").await.unwrap();
    let mut received = 0;
    while received < FLOOD_TOTAL {
        match flooded.recv().await {
            Some(Ok(Message::Binary(b))) => {
                assert!(b.iter().all(|&x| x == 0x5a));
                received += b.len();
            }
            other => panic!("flood: {other:?}"),
        }
    }
    flooded.close(CloseCode::Normal, "").await.unwrap();
    received
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn dials_axum_over_http2_with_extended_connect_and_no_key() {
    let ca = Ca::new("h2 test CA");
    let server = start(Some(tls_config(&ca, &["h2", "http/1.1"])), true).await;
    let url = format!("wss://localhost:{}/echo?room=1", server.addr.port());
    let dialer = trusting(&ca)
        .header("X-Test", "yes")
        .header("Keep-Alive", "timeout=5")
        .auth(Auth::Bearer("token".into()));
    let (response, facts) = echo_round_trip(&dialer, &url).await;
    assert_eq!(response.version, Version::HTTP_2);
    assert_eq!(response.head.status, 200);
    assert_eq!(facts.version, Version::HTTP_2);
    assert!(facts.tls);
    assert_eq!(facts.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(server.seen.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(
        server.seen.alpn_offers.lock().unwrap()[0],
        ["h2", "http/1.1"]
    );
    let headers = server.seen.headers.lock().unwrap()[0].clone();
    assert!(!headers.contains_key("sec-websocket-key"), "{headers:?}");
    assert!(!headers.contains_key("keep-alive"), "{headers:?}");
    assert_eq!(headers["sec-websocket-version"], "13");
    assert_eq!(headers["sec-websocket-protocol"], "chat");
    assert_eq!(headers["x-test"], "yes");
    assert_eq!(headers["authorization"], "Bearer token");
    assert!(headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("dialtone/"));
}

#[tokio::test]
async fn hundred_websockets_share_one_connection_and_a_reset_one_leaves_the_others_intact() {
    let ca = Ca::new("h2 test CA");
    let server = start_bare(&ca).await;
    let conn = trusting(&ca)
        .connect_http2(&format!("wss://localhost:{}/", server.addr.port()))
        .await
        .unwrap();
    assert!(conn.extended_connect_enabled());
    let addrs = multiplexed_echo(&conn, "/echo", "/reset/100", 100, 1000).await;
    assert_eq!(addrs.len(), 101);
    assert!(addrs.iter().all(|a| *a == addrs[0]), "one local address");
    assert_eq!(server.seen.accepted.load(Ordering::SeqCst), 1);
    // Each closing handshake ended its stream with END_STREAM.
    let ended = &server.seen.ended;
    wait_until("100 END_STREAMs", || ended.load(Ordering::SeqCst) == 100).await;
    assert_eq!(server.seen.cancelled.load(Ordering::SeqCst), 0);
    // The connection still serves new WebSockets.
    let (mut ws, _) = conn.open_websocket("/echo").await.unwrap();
    echo_many(&mut ws, 7, 10, None).await;
    assert_eq!(server.seen.accepted.load(Ordering::SeqCst), 1);
}

/// Waits (at most 30 s: a guard against a hang) until `done`.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 30 s"));
}

#[tokio::test]
async fn dropping_a_websocket_resets_its_stream_with_cancel_and_spares_its_sibling() {
    let ca = Ca::new("h2 test CA");
    let server = start_bare(&ca).await;
    let conn = trusting(&ca)
        .connect_http2(&format!("wss://localhost:{}/", server.addr.port()))
        .await
        .unwrap();
    let (mut dropped, _) = conn.open_websocket("/echo").await.unwrap();
    let (mut sibling, _) = conn.open_websocket("/echo").await.unwrap();
    echo_many(&mut dropped, 1, 10, None).await;
    echo_many(&mut sibling, 2, 10, None).await;
    drop(dropped);
    let cancelled = &server.seen.cancelled;
    wait_until("RST_STREAM(CANCEL)", || {
        cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    echo_many(&mut sibling, 2, 100, None).await;
    let answer = sibling.close(CloseCode::Normal, "").await.unwrap();
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));
    let ended = &server.seen.ended;
    wait_until("END_STREAM", || ended.load(Ordering::SeqCst) == 1).await;
    assert_eq!(server.seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_slow_reader_back_pressures_its_own_stream_only() {
    let ca = Ca::new("h2 test CA");
    let server = start(Some(tls_config(&ca, &["h2"])), true).await;
    let conn = trusting(&ca)
        .connect_http2(&format!("wss://localhost:{}/", server.addr.port()))
        .await
        .unwrap();
    let (mut flooded, _) = conn.open_websocket("/flood").await.unwrap();
    let (mut echo, _) = conn.open_websocket("/echo").await.unwrap();
    // A guard against a hang (a stalled connection), not a measurement.
    tokio::time::timeout(Duration::from_secs(60), echo_many(&mut echo, 1, 100, None))
        .await
        .expect("the echo stream stalled behind the unread one");
    // The unread stream's window (and the buffers of the server's stack)
    // bound what the server could send, not the flood's size.
    let sent = server.seen.flooded.load(Ordering::SeqCst);
    assert!(
        sent < 2 << 20,
        "the server sent {sent} bytes to a reader that read none"
    );
    assert!(matches!(flooded.recv().await, Some(Ok(Message::Binary(_)))));
    drop((flooded, echo));
    let received = slow_reader_holds_back_only_its_stream(&conn, "/flood", "/echo").await;
    assert_eq!(received, FLOOD_TOTAL);
    assert_eq!(server.seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn h2c_with_prior_knowledge_when_http2_only_on_ws() {
    let server = start(None, true).await;
    let url = format!("ws://127.0.0.1:{}/echo", server.addr.port());
    let dialer = Dialer::new().no_proxy().timeout(Duration::from_secs(10));
    let (response, facts) = echo_round_trip(&dialer.clone().http2(Http2::Only), &url).await;
    assert_eq!(response.version, Version::HTTP_2);
    assert_eq!(facts.version, Version::HTTP_2);
    assert!(!facts.tls);
    assert_eq!(facts.alpn, None);
    // Auto leaves ws:// on HTTP/1.1.
    let (response, facts) = echo_round_trip(&dialer, &url).await;
    assert_eq!(
        (response.version, facts.version),
        (Version::HTTP_11, Version::HTTP_11)
    );
    let conn = dialer
        .connect_http2(&format!("ws://127.0.0.1:{}/", server.addr.port()))
        .await
        .unwrap();
    let (mut ws, _) = conn.open_websocket("/echo").await.unwrap();
    echo_many(&mut ws, 2, 20, None).await;
}

#[tokio::test]
async fn without_extended_connect_auto_falls_back_to_http1_and_only_fails_clearly() {
    let ca = Ca::new("h2 test CA");
    let server = start(Some(tls_config(&ca, &["h2", "http/1.1"])), false).await;
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let dialer = trusting(&ca);
    let (response, facts) = echo_round_trip(&dialer, &url).await;
    assert_eq!(
        (response.version, facts.version),
        (Version::HTTP_11, Version::HTTP_11)
    );
    assert_eq!(facts.alpn.as_deref(), Some(&b"http/1.1"[..]));
    // One HTTP/2 connection found no extended CONNECT; the WebSocket took a second.
    assert_eq!(server.seen.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        *server.seen.alpn_offers.lock().unwrap(),
        [vec!["h2", "http/1.1"], vec!["http/1.1"]]
    );
    // The dialer (and its clones) remember the origin: straight to HTTP/1.1.
    echo_round_trip(&dialer.clone().protocol("other"), &url).await;
    assert_eq!(server.seen.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(server.seen.alpn_offers.lock().unwrap()[2], ["http/1.1"]);

    for e in [
        dialer.clone().http2(Http2::Only).dial(&url).await.err(),
        dialer.connect_http2(&url).await.err(),
    ] {
        match e {
            Some(Error::Http2(words)) => {
                assert!(
                    words.contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"),
                    "{words}"
                )
            }
            other => panic!("expected Error::Http2, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_server_choosing_http1_alpn_gets_http1_and_only_fails_clearly() {
    let ca = Ca::new("h2 test CA");
    let server = start(Some(tls_config(&ca, &["http/1.1"])), true).await;
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let dialer = trusting(&ca);
    let (response, _) = echo_round_trip(&dialer, &url).await;
    assert_eq!(response.version, Version::HTTP_11);
    assert_eq!(
        server.seen.accepted.load(Ordering::SeqCst),
        1,
        "no second connection"
    );
    match dialer.http2(Http2::Only).dial(&url).await {
        Err(Error::Http2(words)) => assert!(words.contains("did not agree to HTTP/2"), "{words}"),
        other => panic!("expected Error::Http2, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn http2_never_does_not_offer_h2() {
    let ca = Ca::new("h2 test CA");
    let server = start(Some(tls_config(&ca, &["h2", "http/1.1"])), true).await;
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    let (response, facts) = echo_round_trip(&trusting(&ca).http2(Http2::Never), &url).await;
    assert_eq!(
        (response.version, facts.version),
        (Version::HTTP_11, Version::HTTP_11)
    );
    assert_eq!(*server.seen.alpn_offers.lock().unwrap(), [vec!["http/1.1"]]);
}

#[tokio::test]
async fn a_refusal_over_http2_is_rejected_with_its_status_and_body() {
    let ca = Ca::new("h2 test CA");
    let server = start(Some(tls_config(&ca, &["h2"])), true).await;
    let url = format!("wss://localhost:{}/deny", server.addr.port());
    match trusting(&ca).http2(Http2::Only).dial(&url).await {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, 403);
            assert_eq!(&r.body[..], b"no entry");
        }
        other => panic!("expected Error::Rejected, got {:?}", other.err()),
    }
    // A refused stream leaves its connection usable.
    let conn = trusting(&ca)
        .connect_http2(&format!("wss://localhost:{}/", server.addr.port()))
        .await
        .unwrap();
    assert!(
        matches!(conn.open_websocket("/deny").await, Err(Error::Rejected(r)) if r.status == 403)
    );
    let (mut ws, _) = conn.open_websocket("/echo").await.unwrap();
    echo_many(&mut ws, 3, 5, None).await;
    assert!(matches!(
        conn.open_websocket("wss://elsewhere.test/echo").await,
        Err(Error::Url(_))
    ));
}

#[tokio::test]
async fn a_redirect_over_http2_is_followed_on_the_same_connection() {
    let ca = Ca::new("h2 test CA");
    let server = start(Some(tls_config(&ca, &["h2"])), true).await;
    let url = format!("wss://localhost:{}/moved", server.addr.port());
    let (response, facts) = echo_round_trip(&trusting(&ca), &url).await;
    assert_eq!(response.url.path(), "/echo");
    assert_eq!(facts.version, Version::HTTP_2);
    assert_eq!(server.seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_bad_answer_fails_its_stream_only() {
    let ca = Ca::new("h2 test CA");
    let server = start_bare(&ca).await;
    let conn = trusting(&ca)
        .protocol("chat")
        .connect_http2(&format!("wss://localhost:{}/", server.addr.port()))
        .await
        .unwrap();
    let (mut sibling, _) = conn.open_websocket("/echo").await.unwrap();
    match conn.open_websocket("/bad-protocol").await {
        Err(Error::Handshake(dialtone::proto::HandshakeError::ProtocolNotOffered(p))) => {
            assert_eq!(p, "not-offered")
        }
        other => panic!("expected ProtocolNotOffered, got {:?}", other.err()),
    }
    // The refused stream was reset; its sibling and the connection go on.
    let cancelled = &server.seen.cancelled;
    wait_until("RST_STREAM(CANCEL)", || {
        cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    echo_many(&mut sibling, 4, 50, None).await;
    let (mut another, _) = conn.open_websocket("/echo").await.unwrap();
    echo_many(&mut another, 5, 50, None).await;
    assert_eq!(server.seen.accepted.load(Ordering::SeqCst), 1);
}
