//! dialtone in axum: the `axum_chat` example's own router (its source is
//! compiled into this test), served by `axum::serve` on 127.0.0.1, reached
//! by our Dialer over HTTP/1.1, by raw requests for the refusals, and by
//! the `h2` crate over HTTP/2 (h2c prior knowledge) for an extended CONNECT.

#[allow(dead_code)]
#[path = "../examples/axum_chat.rs"]
mod axum_chat;
#[path = "support/h2_client.rs"]
mod h2_client;

use std::net::SocketAddr;
use std::time::Duration;

use dialtone::http::StatusCode;
use dialtone::proto::{Connection, Role};
use dialtone::{CloseCode, Config, Deflate, Dialer, Message, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn serve(config: Config) -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(tcp, axum_chat::app(config)).await });
    addr
}

fn dialer() -> Dialer {
    Dialer::new().no_proxy().timeout(Duration::from_secs(10))
}

/// Sends `request` raw; the whole answer (the server closes or the read
/// stops after the head for a refusal with a body).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out[..n]).into_owned()
}

#[tokio::test]
async fn the_examples_echo_route_works_over_http11_with_deflate() {
    let config = Config::default().deflate(Deflate::default());
    let addr = serve(config.clone()).await;
    let (mut ws, response) = dialer()
        .config(config)
        .dial(&format!("ws://{addr}/echo"))
        .await
        .unwrap();
    assert_eq!(response.head.status, StatusCode::SWITCHING_PROTOCOLS);
    assert!(response.deflate.is_some(), "permessage-deflate agreed");
    for size in [0, 10, 100_000, 3 << 20] {
        let text = "x".repeat(size);
        ws.send(text.as_str()).await.unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Text(t))) if t.as_str() == text));
        let binary = vec![(size % 251) as u8; size];
        ws.send(Message::binary(binary.clone())).await.unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Binary(b))) if b[..] == binary[..]));
    }
    let answer = ws.close(CloseCode::Private(4000), "bye").await.unwrap();
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::Private(4000)));
}

#[tokio::test]
async fn the_chat_route_broadcasts_and_the_page_is_served() {
    let addr = serve(Config::default()).await;
    let url = format!("ws://{addr}/ws");
    let (mut alice, _) = dialer().dial(&url).await.unwrap();
    let (mut bob, _) = dialer().dial(&url).await.unwrap();
    // Both are subscribed once their sockets are open; a round of pings
    // makes sure their tasks are past `subscribe`.
    for ws in [&mut alice, &mut bob] {
        ws.ping("ready").await.unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Pong(_)))));
    }
    alice.send("hello, room").await.unwrap();
    for ws in [&mut alice, &mut bob] {
        assert!(matches!(ws.recv().await, Some(Ok(Message::Text(t))) if t == "hello, room"));
    }
    let page = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
}

#[tokio::test]
async fn refusals_are_axum_responses_with_the_listeners_statuses() {
    let addr = serve(Config::default()).await;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        ("no Upgrade", "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), "426"),
        (
            "version 8",
            format!("GET /echo HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Version: 8\r\n\r\n"),
            "426",
        ),
        (
            "no key",
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".to_owned(),
            "400",
        ),
        (
            "a POST",
            format!("POST /echo HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"),
            "405",
        ),
        (
            "a cross-site page",
            format!("GET /echo HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n"),
            "403",
        ),
    ];
    for (what, request, status) in cases {
        let answer = raw(addr, &request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {answer}"
        );
        if what == "version 8" {
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{answer}"
            );
        }
    }
}

#[tokio::test]
async fn the_examples_echo_route_works_over_http2_extended_connect() {
    let addr = serve(Config::default()).await;
    let mut client = h2_client::h2_client(TcpStream::connect(addr).await.unwrap()).await;
    assert!(
        client.is_extended_connect_protocol_enabled(),
        "axum::serve enables RFC 8441"
    );
    let request = h2_client::connect_request(
        addr.port(),
        "/echo",
        Some("websocket"),
        &[("sec-websocket-version", "13")],
    );
    let (status, _headers, io) = h2_client::open(&mut client, request).await;
    assert_eq!(status, StatusCode::OK);
    let mut ws =
        WebSocket::from_connection(io, Connection::new(Role::Client, Config::default()), None);
    ws.send("over h2").await.unwrap();
    assert!(matches!(ws.recv().await, Some(Ok(Message::Text(t))) if t == "over h2"));
    let answer = ws.close(CloseCode::Normal, "").await.unwrap();
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));
    // The same request on HTTP/1.1's terms (a key) is refused on HTTP/2.
    let request = h2_client::connect_request(
        addr.port(),
        "/echo",
        Some("websocket"),
        &[
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    let (status, _, _) = h2_client::open(&mut client, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
