//! The reverse-proxy configurations of docs/DEPLOY.md, tested: Debian's
//! nginx and HAProxy run with exactly `docs/deploy/nginx.conf` and
//! `docs/deploy/haproxy.cfg` (only their two addresses replaced by free
//! ports on 127.0.0.1) in front of a dialtone listener, and a dialer talks
//! to the listener through each: permessage-deflate agreed end to end, text,
//! 1 MiB of binary, the headers the config promises, and close codes from
//! either side seen at the other end.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dialtone::{Acceptor, CloseCode, CloseFrame, Config, Deflate, Dialer, Listener, Message};
use support::{free_port, require, start_nginx, ChildGuard, TempDir};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// The backend address written in the config files.
const BACKEND_IN_FILE: &str = "127.0.0.1:9001";

/// What the backend saw of one connection.
#[derive(Debug)]
enum Seen {
    /// The handshake's Host, X-Forwarded-For and X-Forwarded-Proto.
    Request {
        host: String,
        forwarded_for: String,
        forwarded_proto: String,
    },
    /// The close frame the client sent.
    Close(CloseFrame),
}

/// The text of `docs/deploy/<name>` with each `(from, to)` replaced; each
/// `from` must occur exactly once, so that an edit of the file that moves
/// an address fails here rather than testing something else.
fn deploy_file(name: &str, replacements: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/deploy")
        .join(name);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    for (from, to) in replacements {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{name} should contain `{from}` exactly once"
        );
        text = text.replace(from, to);
    }
    text
}

/// A dialtone listener that echoes data, answers "close me" with a 4002
/// close, and reports each handshake and each close it receives.
async fn backend() -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(Acceptor::new().config(Config::default().deflate(Deflate::default())));
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok((mut ws, request)) = incoming.handshake().await else {
                    return;
                };
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("(missing)")
                        .to_owned()
                };
                let _ = tx.send(Seen::Request {
                    host: header("host"),
                    forwarded_for: header("x-forwarded-for"),
                    forwarded_proto: header("x-forwarded-proto"),
                });
                while let Some(Ok(msg)) = ws.recv().await {
                    if let Message::Close(frame) = msg {
                        let _ = tx.send(Seen::Close(frame));
                    } else if msg == Message::text("close me") {
                        let _ = ws.close(CloseCode::from_u16(4002), "server bye").await;
                        return;
                    } else if msg.is_data() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// 1 MiB that does not compress to nothing.
fn mebibyte() -> Vec<u8> {
    let mut state: u32 = 0x9E37_79B9;
    (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

async fn next_data(ws: &mut dialtone::WebSocket<dialtone::Transport>) -> Message {
    loop {
        match ws.recv().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(msg)) => return msg,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Everything the deployment doc promises, through the proxy on `port`.
async fn check_through_proxy(port: u16, seen: &mut mpsc::UnboundedReceiver<Seen>) {
    let url = format!("ws://127.0.0.1:{port}/chat");
    let dialer = Dialer::new()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .config(Config::default().deflate(Deflate::default()));
    let (mut ws, response) = dialer.dial(&url).await.expect("dial through the proxy");
    assert_eq!(response.head.status, 101);
    // Sec-WebSocket-Extensions passes through: compression is end to end.
    assert!(
        response.deflate.is_some(),
        "permessage-deflate not agreed through the proxy"
    );

    match seen.recv().await {
        Some(Seen::Request {
            host,
            forwarded_for,
            forwarded_proto,
        }) => {
            assert_eq!(
                host,
                format!("127.0.0.1:{port}"),
                "Host as the client sent it"
            );
            assert_eq!(forwarded_for, "127.0.0.1", "X-Forwarded-For");
            assert_eq!(forwarded_proto, "http", "X-Forwarded-Proto");
        }
        other => panic!("expected the handshake, got {other:?}"),
    }

    ws.send("hello through the proxy").await.unwrap();
    assert_eq!(
        next_data(&mut ws).await,
        Message::text("hello through the proxy")
    );
    let big = mebibyte();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match next_data(&mut ws).await {
        Message::Binary(echo) => assert!(echo[..] == big[..], "1 MiB echo differs"),
        other => panic!("expected 1 MiB of binary, got {other:?}"),
    }

    // A client's close code and reason reach the backend, and its answer
    // comes back.
    let answer = ws
        .close(CloseCode::from_u16(4001), "client bye")
        .await
        .unwrap()
        .expect("the backend's close answer");
    assert_eq!(answer.code, CloseCode::from_u16(4001));
    match seen.recv().await {
        Some(Seen::Close(frame)) => {
            assert_eq!(frame.code, CloseCode::from_u16(4001));
            assert_eq!(frame.reason, "client bye");
        }
        other => panic!("expected the client's close at the backend, got {other:?}"),
    }

    // And the backend's close reaches the client.
    let (mut ws, _) = dialer.dial(&url).await.expect("second dial");
    assert!(matches!(seen.recv().await, Some(Seen::Request { .. })));
    ws.send("close me").await.unwrap();
    match ws.recv().await {
        Some(Ok(Message::Close(frame))) => {
            assert_eq!(frame.code, CloseCode::from_u16(4002));
            assert_eq!(frame.reason, "server bye");
        }
        other => panic!("expected the backend's close, got {other:?}"),
    }
    while let Some(msg) = ws.recv().await {
        msg.expect("a clean end after the close");
    }
}

#[tokio::test]
async fn nginx_config_of_deploy_md_proxies_websockets() {
    let (backend, mut seen) = backend().await;
    let dir = TempDir::new("deploy-nginx");
    let port = free_port();
    let listen = format!("listen 127.0.0.1:{port};");
    let upstream = format!("server {backend};");
    let conf = deploy_file(
        "nginx.conf",
        &[
            ("listen 127.0.0.1:8080;", &listen),
            (&format!("server {BACKEND_IN_FILE};"), &upstream),
        ],
    );
    let _nginx = start_nginx(&dir, &conf, port);
    timeout(
        Duration::from_secs(60),
        check_through_proxy(port, &mut seen),
    )
    .await
    .expect("timed out");
}

#[tokio::test]
async fn haproxy_config_of_deploy_md_proxies_websockets() {
    let haproxy = require("haproxy", "haproxy");
    let (backend, mut seen) = backend().await;
    let dir = TempDir::new("deploy-haproxy");
    let port = free_port();
    let bind = format!("bind 127.0.0.1:{port}");
    let server = format!("server dialtone1 {backend}");
    let conf = deploy_file(
        "haproxy.cfg",
        &[
            ("bind 127.0.0.1:8081", &bind),
            (&format!("server dialtone1 {BACKEND_IN_FILE}"), &server),
        ],
    );
    let conf = dir.write("haproxy.cfg", conf);
    let mut cmd = Command::new(haproxy);
    // -db: in the foreground, logging to our file; killed on drop.
    cmd.arg("-db").arg("-f").arg(conf);
    let mut child = ChildGuard::spawn("haproxy", cmd, &dir.path().join("haproxy.log"));
    child.wait_for_port(port);
    timeout(
        Duration::from_secs(60),
        check_through_proxy(port, &mut seen),
    )
    .await
    .expect("timed out");
}

#[test]
fn deploy_md_quotes_the_tested_config_files() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let page = std::fs::read_to_string(docs.join("DEPLOY.md")).unwrap();
    for (name, lang) in [("nginx.conf", "nginx"), ("haproxy.cfg", "haproxy")] {
        let file = deploy_file(name, &[]);
        assert!(
            page.contains(&format!("```{lang}\n{file}```")),
            "docs/DEPLOY.md should quote docs/deploy/{name} as it is, in a ```{lang} block"
        );
    }
}
