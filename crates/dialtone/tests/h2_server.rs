//! WebSockets over HTTP/2 (RFC 8441) on the server side: our TLS
//! `Listener` offering ALPN `h2`, and `Acceptor::upgrade` inside a hyper
//! HTTP/2 server, driven by the `h2` crate as a raw client (its streams
//! made into a client `WebSocket` by a small adapter here, so that the
//! frames are the core's own). Everything runs on 127.0.0.1.

#[path = "support/h2_client.rs"]
mod h2_client;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dialtone::http::{Method, Request, StatusCode, Version};
use dialtone::proto::{Connection, Role};
use dialtone::tls::rustls;
use dialtone::tls::ServerTls;
use dialtone::{Acceptor, CloseCode, Config, Listener, Message, WebSocket};
use h2_client::{connect_request, h2_client, open, H2Io};
use support::{Ca, Leaf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn tls_identity(ca: &Ca) -> ServerTls {
    let pem = ca.issue(Leaf::default());
    ServerTls::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap()
}

/// A TLS connection to `addr` trusting `ca` and offering `alpn`.
async fn tls_connect(
    addr: SocketAddr,
    ca: &Ca,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(ca.pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Opens a WebSocket on a new stream of `client`.
async fn open_ws(
    client: &mut h2::client::SendRequest<Bytes>,
    port: u16,
    path: &str,
) -> WebSocket<H2Io> {
    let request = connect_request(
        port,
        path,
        Some("websocket"),
        &[("sec-websocket-version", "13")],
    );
    let (status, headers, io) = open(client, request).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "RFC 8441 §5: a 2xx answers the CONNECT"
    );
    assert!(
        !headers.contains_key("sec-websocket-accept"),
        "no Sec-WebSocket-Accept over HTTP/2"
    );
    WebSocket::from_connection(io, Connection::new(Role::Client, Config::default()), None)
}

/// What the server saw of one WebSocket: its path, the HTTP version of its
/// handshake, and the close it received.
#[derive(Debug)]
struct Seen {
    path: String,
    version: Version,
    close: Option<CloseCode>,
}

/// An echo listener with TLS; each WebSocket's end is reported on the channel.
async fn echo_listener(listener: Listener) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok((mut ws, request)) = incoming.handshake().await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.recv().await {
                    if request.uri().path() == "/drop" {
                        // Given up without a close: the stream is cancelled.
                        drop(ws);
                        return;
                    }
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
                let _ = tx.send(Seen {
                    path: request.uri().path().to_owned(),
                    version: request.version(),
                    close: ws.close_received().map(|f| f.code),
                });
            });
        }
    });
    (addr, rx)
}

async fn tls_listener(ca: &Ca) -> Listener {
    Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_tls(tls_identity(ca))
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the server reports each WebSocket's end")
        .expect("the server runs")
}

#[tokio::test]
async fn many_websockets_share_one_http2_connection_and_a_reset_one_ends_alone() {
    let ca = Ca::new("h2 test CA");
    let (addr, mut seen) = echo_listener(tls_listener(&ca).await).await;
    let tls = tls_connect(addr, &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the listener offers h2"
    );
    let mut client = h2_client(tls).await;
    assert!(
        client.is_extended_connect_protocol_enabled(),
        "SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3)"
    );
    let mut sockets = Vec::new();
    for i in 0..5 {
        sockets.push(open_ws(&mut client, addr.port(), &format!("/s{i}")).await);
    }
    // Every stream echoes, interleaved on the one connection.
    for round in 0..3 {
        for (i, ws) in sockets.iter_mut().enumerate() {
            ws.send(format!("{i}:{round}")).await.unwrap();
        }
        for (i, ws) in sockets.iter_mut().enumerate() {
            match ws.recv().await {
                Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("{i}:{round}")),
                other => panic!("stream {i}: {other:?}"),
            }
        }
    }
    // Stream 2 is reset halfway through a large message.
    let mut victim = sockets.remove(2);
    let big = Message::binary(vec![7u8; 1 << 20]);
    victim.feed(big).unwrap();
    // Some of it goes out, then the stream is cancelled.
    let _ = tokio::time::timeout(Duration::from_millis(50), victim.flush()).await;
    drop(victim);
    let gone = next_seen(&mut seen).await;
    assert_eq!(gone.path, "/s2");
    assert_eq!(gone.version, Version::HTTP_2);
    assert_eq!(
        gone.close,
        Some(CloseCode::Abruptly),
        "a reset stream is an abrupt end for its WebSocket"
    );
    // The server gives one up without a close: the client sees its
    // WebSocket end abruptly, and the others are untouched.
    let mut dropped = open_ws(&mut client, addr.port(), "/drop").await;
    dropped.send("drop me").await.unwrap();
    let mut last = None;
    while let Some(msg) = dropped.recv().await {
        last = Some(msg);
    }
    assert!(
        matches!(last, Some(Ok(Message::Close(ref f))) if f.code == CloseCode::Abruptly),
        "{last:?}"
    );
    // The others carry on: a large message each, then a clean close.
    for (i, ws) in sockets.iter_mut().enumerate() {
        let payload = vec![i as u8; 300 * 1024];
        ws.send(Message::binary(payload.clone())).await.unwrap();
        match ws.recv().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(b[..], payload[..]),
            other => panic!("stream {i} after the reset: {other:?}"),
        }
    }
    for mut ws in sockets {
        let answer = ws.close(CloseCode::Private(4000), "bye").await.unwrap();
        assert_eq!(answer.map(|f| f.code), Some(CloseCode::Private(4000)));
    }
    for _ in 0..4 {
        let s = next_seen(&mut seen).await;
        assert_eq!(s.version, Version::HTTP_2);
        assert_eq!(s.close, Some(CloseCode::Private(4000)), "{s:?}");
    }
}

#[tokio::test]
async fn refuses_bad_extended_connects_and_keeps_serving_the_connection() {
    let ca = Ca::new("h2 test CA");
    let (addr, _seen) = echo_listener(tls_listener(&ca).await).await;
    let port = addr.port();
    let mut client = h2_client(tls_connect(addr, &ca, &[b"h2"]).await).await;
    let v13 = ("sec-websocket-version", "13");
    let cases = [
        (
            "a CONNECT without :protocol",
            Request::builder()
                .method(Method::CONNECT)
                .uri(format!("localhost:{port}"))
                .body(())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a :protocol other than websocket",
            connect_request(port, "/", Some("webtransport"), &[v13]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "version 8",
            connect_request(
                port,
                "/",
                Some("websocket"),
                &[("sec-websocket-version", "8")],
            ),
            StatusCode::UPGRADE_REQUIRED,
        ),
        (
            "no version",
            connect_request(port, "/", Some("websocket"), &[]),
            StatusCode::UPGRADE_REQUIRED,
        ),
        (
            "Sec-WebSocket-Key (RFC 8441 §5)",
            connect_request(
                port,
                "/",
                Some("websocket"),
                &[v13, ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")],
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a cross-site Origin",
            connect_request(
                port,
                "/",
                Some("websocket"),
                &[v13, ("origin", "https://evil.example")],
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "a GET (a page, not a WebSocket)",
            Request::builder()
                .uri(format!("https://localhost:{port}/"))
                .body(())
                .unwrap(),
            StatusCode::UPGRADE_REQUIRED,
        ),
    ];
    for (what, request, status) in cases {
        let (got, headers, _io) = open(&mut client, request).await;
        assert_eq!(got, status, "{what}");
        if status == StatusCode::UPGRADE_REQUIRED {
            assert!(
                !headers.contains_key("upgrade"),
                "{what}: no HTTP/1.1 headers on HTTP/2"
            );
        }
        if what == "version 8" {
            assert_eq!(headers["sec-websocket-version"], "13", "{what}");
        }
    }
    // A page of this very server may connect (same host, :authority).
    let same_site = connect_request(
        port,
        "/ok",
        Some("websocket"),
        &[v13, ("origin", &format!("https://localhost:{port}"))],
    );
    let (status, _, io) = open(&mut client, same_site).await;
    assert_eq!(status, StatusCode::OK);
    let mut ws =
        WebSocket::from_connection(io, Connection::new(Role::Client, Config::default()), None);
    ws.send("still here").await.unwrap();
    assert!(matches!(ws.recv().await, Some(Ok(Message::Text(t))) if t == "still here"));
}

#[tokio::test]
async fn without_http2_the_listener_offers_only_http11() {
    let ca = Ca::new("h2 test CA");
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_http2(false)
        .with_tls(tls_identity(&ca));
    let (addr, _seen) = echo_listener(listener).await;
    let tls = tls_connect(addr, &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

/// A hyper HTTP/2 server (h2c, prior knowledge) whose requests go to
/// `Acceptor::upgrade`; extended CONNECT enabled or not.
async fn hyper_h2_server(enable_connect: bool) -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let service = hyper::service::service_fn(|request| async move {
                let acceptor = Acceptor::new().protocol("chat");
                Ok::<_, std::convert::Infallible>(match acceptor.upgrade(request) {
                    Ok((response, pending)) => {
                        tokio::spawn(async move {
                            let upgraded = pending.await.unwrap();
                            assert_eq!(upgraded.request.version(), Version::HTTP_2);
                            let mut ws = upgraded.ws;
                            while let Some(Ok(msg)) = ws.recv().await {
                                if msg.is_data() && ws.send(msg).await.is_err() {
                                    break;
                                }
                            }
                        });
                        response
                    }
                    Err(refused) => refused.into_response(),
                })
            });
            let mut builder =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
            if enable_connect {
                builder.enable_connect_protocol();
            }
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::spawn(connection);
        }
    });
    addr
}

#[tokio::test]
async fn a_hyper_server_that_did_not_enable_extended_connect_gets_none() {
    let addr = hyper_h2_server(false).await;
    let client = h2_client(TcpStream::connect(addr).await.unwrap()).await;
    assert!(!client.is_extended_connect_protocol_enabled());
    let request = connect_request(
        addr.port(),
        "/",
        Some("websocket"),
        &[("sec-websocket-version", "13")],
    );
    let mut client = client.ready().await.unwrap();
    // h2 lets the client try; the server's HTTP/2 layer resets the stream
    // (a `:protocol` it did not announce is malformed, RFC 8441 §4), and
    // the request never reaches the application.
    let (response, _stream) = client.send_request(request, false).unwrap();
    let reason = response.await.expect_err("no response").reason();
    assert_eq!(reason, Some(h2::Reason::PROTOCOL_ERROR));
}

#[tokio::test]
async fn acceptor_upgrade_in_a_hyper_http2_server_negotiates_and_echoes() {
    let addr = hyper_h2_server(true).await;
    let mut client = h2_client(TcpStream::connect(addr).await.unwrap()).await;
    assert!(client.is_extended_connect_protocol_enabled());
    let request = connect_request(
        addr.port(),
        "/chat",
        Some("websocket"),
        &[
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "other, chat"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ],
    );
    let (status, headers, io) = open(&mut client, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["sec-websocket-protocol"], "chat");
    // The acceptor's config has no deflate: the offer is declined.
    assert!(!headers.contains_key("sec-websocket-extensions"));
    let mut ws =
        WebSocket::from_connection(io, Connection::new(Role::Client, Config::default()), None);
    let text = "é".repeat(100_000);
    ws.send(text.as_str()).await.unwrap();
    assert!(matches!(ws.recv().await, Some(Ok(Message::Text(t))) if t.as_str() == text));
    let answer = ws.close(CloseCode::Normal, "").await.unwrap();
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));
}

/// RFC 8441 end to end with dialtone on both sides: the `Dialer`'s
/// `Http2Connection` carries 100 WebSockets to our TLS `Listener` over one
/// connection, each echoing 1,000 messages, while the server drops one
/// more WebSocket mid-stream (its stream is reset): that one reports
/// `Abruptly`, the others finish intact and close normally.
#[tokio::test]
async fn the_dialer_multiplexes_a_hundred_websockets_on_the_listener_and_a_reset_one_spares_them() {
    let ca = Ca::new("h2 test CA");
    let (addr, mut seen) = echo_listener(tls_listener(&ca).await).await;
    let conn = dialtone::Dialer::new()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .add_ca_pem(ca.pem.as_bytes())
        .connect_http2(&format!("wss://localhost:{}/", addr.port()))
        .await
        .unwrap();
    assert!(
        conn.extended_connect_enabled(),
        "the listener enables RFC 8441"
    );
    let mut tasks = tokio::task::JoinSet::new();
    for tag in 0..100usize {
        let (mut ws, _) = conn.open_websocket("/echo").await.unwrap();
        tasks.spawn(async move {
            for i in 0..1000usize {
                let msg =
                    Message::binary(format!("ws{tag}-msg{i}-{}", "x".repeat(i % 97)).into_bytes());
                ws.send(msg.clone()).await.unwrap();
                match ws.recv().await {
                    Some(Ok(got)) => assert_eq!(got, msg, "stream {tag}, message {i}"),
                    other => panic!("stream {tag}, message {i}: {other:?}"),
                }
            }
            let answer = ws.close(CloseCode::Normal, "done").await.unwrap();
            assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));
        });
    }
    let (mut dropped, _) = conn.open_websocket("/drop").await.unwrap();
    dropped.send(Message::text("mid-stream")).await.unwrap();
    // The server gave it up without a close: the stream is reset.
    loop {
        match dropped.recv().await {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.code, CloseCode::Abruptly);
            }
            Some(Ok(other)) => panic!("after the reset: {other:?}"),
            Some(Err(_)) | None => break,
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let mut closed = 0;
    while closed < 100 {
        let s = next_seen(&mut seen).await;
        if s.path == "/echo" {
            assert_eq!(s.version, Version::HTTP_2, "carried by extended CONNECT");
            assert_eq!(s.close, Some(CloseCode::Normal));
            closed += 1;
        }
    }
}
