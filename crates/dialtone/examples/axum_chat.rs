//! An axum 0.8 app with dialtone WebSockets: a page at `/`, a chat room at
//! `/ws` (every message goes to everyone), and an echo at `/echo` (the one
//! the Autobahn suite drives in `conformance/run.sh` with
//! `CONFORMANCE_SERVER=axum`). HTTP/1.1 and, with a client that speaks it
//! (h2c prior knowledge here; browsers need TLS), HTTP/2.
//!
//! ```text
//! cargo run -p dialtone --example axum_chat --features axum -- 127.0.0.1:3000
//! dialtone dial ws://127.0.0.1:3000/ws       # in two terminals: a chat
//! ```
//!
//! Options after the address: `--deflate-threshold N` (messages shorter
//! than N bytes go uncompressed; default 32), `--no-deflate`.

use std::net::SocketAddr;

use axum::response::{Html, Response};
use axum::routing::{any, get};
use axum::Router;
use dialtone::axum::WebSocketUpgrade;
use dialtone::{Config, Deflate, Message};
use tokio::sync::broadcast;

const PAGE: &str = r#"<!doctype html>
<title>dialtone axum chat</title>
<ul id="log"></ul>
<form id="f"><input id="m" autofocus><button>send</button></form>
<script>
const ws = new WebSocket(location.href.replace(/^http/, "ws") + "ws");
ws.onmessage = (e) => { const li = document.createElement("li"); li.textContent = e.data; log.append(li); };
f.onsubmit = (e) => { e.preventDefault(); ws.send(m.value); m.value = ""; };
</script>
"#;

#[derive(Clone)]
struct App {
    room: broadcast::Sender<Message>,
    config: Config,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3000".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let (mut threshold, mut deflate) = (32, true);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-deflate" => deflate = false,
            "--deflate-threshold" => {
                threshold = args.next().and_then(|n| n.parse().ok()).unwrap_or(32)
            }
            other => eprintln!("ignoring {other:?}"),
        }
    }
    let mut config = Config::default();
    if deflate {
        config = config.deflate(Deflate::default().threshold(threshold));
    }
    let tcp = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("listening on http://{}/", tcp.local_addr()?);
    axum::serve(tcp, app(config)).await
}

/// The app: its WebSockets use `config` (limits, permessage-deflate).
pub fn app(config: Config) -> Router {
    let app = App {
        room: broadcast::channel(256).0,
        config,
    };
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        // `any`: over HTTP/2 a WebSocket handshake is a CONNECT, not a GET.
        .route("/ws", any(chat))
        .route("/echo", any(echo))
        .with_state(app)
}

async fn chat(
    axum::extract::State(app): axum::extract::State<App>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .config(app.config)
        .on_upgrade(move |mut ws| async move {
            let mut room = app.room.subscribe();
            loop {
                tokio::select! {
                    msg = ws.recv() => match msg {
                        Some(Ok(msg)) if msg.is_data() => {
                            // No one listening is not an error.
                            let _ = app.room.send(msg);
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    said = room.recv() => match said {
                        Ok(msg) => {
                            if ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                        // Too slow to keep up: what was missed is gone.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        })
}

async fn echo(
    axum::extract::State(app): axum::extract::State<App>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.config(app.config).on_upgrade(|mut ws| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    })
}
