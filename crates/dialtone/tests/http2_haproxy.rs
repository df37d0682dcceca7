//! The HTTP/2 dialer against a real RFC 8441 implementation in front of
//! a dialtone listener: Debian's HAProxy (which enables extended CONNECT on
//! its HTTP/2 frontends and speaks HTTP/1.1 Upgrade to the backend), over
//! TLS with ALPN `h2` and over cleartext h2c. permessage-deflate and the
//! subprotocol are negotiated end to end, through the proxy's translation.
//! Everything on 127.0.0.1.

#![cfg(feature = "http2")]

mod support;

use std::process::Command;
use std::time::Duration;

use dialtone::http::Version;
use dialtone::{Acceptor, CloseCode, Config, Deflate, Dialer, Http2, Listener, Message};
use support::{free_port, require, Ca, ChildGuard, Leaf, TempDir};

/// A dialtone echo listener with permessage-deflate and the subprotocol
/// `chat`.
async fn echo_server() -> std::net::SocketAddr {
    let acceptor = Acceptor::new()
        .config(Config::default().deflate(Deflate::default()))
        .protocol("chat");
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(acceptor);
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                let Ok((mut ws, _)) = incoming.handshake().await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// HAProxy with one frontend, `bind` as given, before a dialtone echo
/// listener.
fn haproxy(dir: &TempDir, bind: &str, backend: std::net::SocketAddr) -> ChildGuard {
    let conf = format!(
        "global\n    log stdout format raw local0 info\n\
         defaults\n    mode http\n    log global\n    timeout connect 5s\n\
         \x20   timeout client 30s\n    timeout server 30s\n    timeout tunnel 1h\n\
         frontend websocket\n    {bind}\n    default_backend dialtone\n\
         backend dialtone\n    server dialtone1 {backend}\n"
    );
    let conf = dir.write("haproxy.cfg", conf);
    let mut cmd = Command::new(require("haproxy", "haproxy"));
    cmd.arg("-db").arg("-f").arg(conf);
    ChildGuard::spawn("haproxy", cmd, &dir.path().join("haproxy.log"))
}

/// Ten WebSockets on one HTTP/2 connection through the proxy, each echoing
/// 50 messages, then closing normally; and one `dial` over HTTP/2.
async fn check(dialer: Dialer, url: &str) {
    let dialer = dialer
        .config(Config::default().deflate(Deflate::default()))
        .protocol("chat");
    let (mut ws, response) = dialer.clone().http2(Http2::Only).dial(url).await.unwrap();
    assert_eq!(response.version, Version::HTTP_2);
    assert_eq!(response.head.status, 200);
    assert_eq!(response.protocol.as_deref(), Some("chat"));
    assert!(response.deflate.is_some(), "permessage-deflate over HTTP/2");
    let big = Message::binary(vec![7u8; 1 << 20]);
    ws.send(big.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), big);
    ws.send("over haproxy").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("over haproxy")
    );
    let answer = ws.close(CloseCode::Normal, "bye").await.unwrap();
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));

    let conn = dialer.connect_http2(url).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for tag in 0..10 {
        let (mut ws, _) = conn.open_websocket("/").await.unwrap();
        tasks.spawn(async move {
            for i in 0..50 {
                let msg = Message::text(format!("{tag}:{i}"));
                ws.send(msg.clone()).await.unwrap();
                assert_eq!(ws.recv().await.unwrap().unwrap(), msg);
            }
            let answer = ws.close(CloseCode::Normal, "").await.unwrap();
            assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test]
async fn haproxy_h2_frontend_over_tls_carries_websockets_on_one_connection() {
    let dir = TempDir::new("h2-haproxy-tls");
    let ca = Ca::new("h2 haproxy CA");
    let leaf = ca.issue(Leaf::default());
    let pem = dir.write("site.pem", format!("{}{}", leaf.cert, leaf.key));
    let backend = echo_server().await;
    let port = free_port();
    let bind = format!(
        "bind 127.0.0.1:{port} ssl crt {} alpn h2,http/1.1",
        pem.display()
    );
    let mut proxy = haproxy(&dir, &bind, backend);
    proxy.wait_for_port(port);
    let dialer = Dialer::new()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .add_ca_pem(ca.pem.as_bytes());
    tokio::time::timeout(
        Duration::from_secs(60),
        check(dialer, &format!("wss://localhost:{port}/")),
    )
    .await
    .expect("timed out");
}

#[tokio::test]
async fn haproxy_h2c_frontend_carries_websockets_with_prior_knowledge() {
    let dir = TempDir::new("h2-haproxy-h2c");
    let backend = echo_server().await;
    let port = free_port();
    let mut proxy = haproxy(&dir, &format!("bind 127.0.0.1:{port} proto h2"), backend);
    proxy.wait_for_port(port);
    let dialer = Dialer::new().no_proxy().timeout(Duration::from_secs(10));
    tokio::time::timeout(
        Duration::from_secs(60),
        check(dialer, &format!("ws://127.0.0.1:{port}/")),
    )
    .await
    .expect("timed out");
}
