//! Echo server: an axum 0.8 app whose route `/` upgrades with
//! `dialtone::axum::WebSocketUpgrade`. It serves HTTP/1.1 upgrades and, to a
//! client with prior knowledge (h2c), WebSockets over HTTP/2 (RFC 8441), as
//! `axum::serve` does; `load_test --http2` measures the second.

use axum::response::Response;
use axum::routing::any;
use dialtone::axum::WebSocketUpgrade;

const NAME: &str = "echo_axum_dialtone";

/// Output waiting for a slow peer before the server stops reading.
const BACKLOG: usize = 64 * 1024;

async fn echo(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut ws| async move {
        let served: dialtone::Result<()> = async {
            while let Some(msg) = ws.recv().await {
                let msg = msg?;
                if !msg.is_data() {
                    continue; // pings and closes are answered by the library
                }
                // As echo_dialtone: the replies to messages that arrived
                // together go out in one write.
                ws.feed(msg)?;
                if ws.connection().pending_output() > BACKLOG {
                    ws.flush().await?;
                }
            }
            Ok(())
        }
        .await;
        dialtone_bench::report(NAME, served);
    })
}

fn main() {
    let addr = dialtone_bench::listen_addr(NAME);
    dialtone_bench::run(NAME, async move {
        let tcp = dialtone_bench::axum_listener(addr).await?;
        // `any`: over HTTP/2 the handshake is a CONNECT, not a GET.
        axum::serve(tcp, axum::Router::new().route("/", any(echo))).await
    });
}
