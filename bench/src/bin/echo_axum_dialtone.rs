//! Echo server: an axum 0.8 app whose route `/` upgrades with
//! `dialtone::axum::WebSocketUpgrade`. It serves HTTP/1.1 upgrades and, to a
//! client with prior knowledge (h2c), WebSockets over HTTP/2 (RFC 8441), as
//! `axum::serve` does; `load_test --http2` measures the second.

use axum::response::Response;
use axum::routing::any;
use dialtone::axum::WebSocketUpgrade;

const NAME: &str = "echo_axum_dialtone";

async fn echo(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut ws| async move {
        // The same loop as echo_dialtone's.
        dialtone_bench::report(NAME, dialtone_bench::echo_dialtone(&mut ws).await);
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
