//! The HTTP/2 dialer against a real RFC 8441 implementation in front of
//! a dialtone listener: Debian's HAProxy (which enables extended CONNECT on
//! its HTTP/2 frontends and speaks HTTP/1.1 Upgrade to the backend), over
//! TLS with ALPN `h2` and over cleartext h2c. Everything on 127.0.0.1.

#![cfg(feature = "http2")]

mod support;

use std::process::Command;
use std::time::Duration;

use dialtone::http::Version;
use dialtone::{CloseCode, Dialer, Http2, Message};
use support::{echo_server, free_port, require, Ca, ChildGuard, Leaf, TempDir};

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
    let (mut ws, response) = dialer.clone().http2(Http2::Only).dial(url).await.unwrap();
    assert_eq!(response.version, Version::HTTP_2);
    assert_eq!(response.head.status, 200);
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
    let backend = echo_server(None).await;
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
    let backend = echo_server(None).await;
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
