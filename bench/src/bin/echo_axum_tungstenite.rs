//! Echo server: an axum 0.8 app with axum's own `WebSocketUpgrade`
//! (tungstenite underneath) at `/`, over HTTP/1.1 and, to a client with
//! prior knowledge (h2c), HTTP/2 (RFC 8441): the reference beside
//! echo_axum_dialtone on the same paths.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;

const NAME: &str = "echo_axum_tungstenite";

async fn serve(mut ws: WebSocket) -> Result<(), axum::Error> {
    while let Some(msg) = ws.recv().await {
        match msg? {
            m @ (Message::Binary(_) | Message::Text(_)) => ws.send(m).await?,
            Message::Close(_) => break, // axum answers the close
            _ => {}                     // and the pings
        }
    }
    Ok(())
}

async fn echo(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|ws| async move { dialtone_bench::report(NAME, serve(ws).await) })
}

fn main() {
    let addr = dialtone_bench::listen_addr(NAME);
    dialtone_bench::run(NAME, async move {
        let tcp = dialtone_bench::axum_listener(addr).await?;
        axum::serve(tcp, axum::Router::new().route("/", any(echo))).await
    });
}
