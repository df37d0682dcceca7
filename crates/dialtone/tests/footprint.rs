//! What an idle server connection holds stays small: the state a task keeps
//! for each accepted WebSocket (see docs/BENCHMARKS.md, memory per idle
//! connection). These guard against a field or a future growing it unseen.

use std::mem::size_of_val;

/// The socket with its core: no masking keys, codec or large error inline.
#[test]
fn an_idle_websocket_is_under_a_kibibyte() {
    let size = std::mem::size_of::<dialtone::WebSocket<dialtone::Transport>>();
    assert!(size <= 1024, "WebSocket<Transport> is {size} bytes");
}

/// The handshake's state is boxed and freed when it ends, so that the
/// future a connection's task awaits it in does not keep its size.
#[tokio::test]
async fn the_handshake_future_keeps_its_state_on_the_heap() {
    let listener = dialtone::Listener::bind("127.0.0.1:0").await.unwrap();
    let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let incoming = listener.accept().await.unwrap();
    let handshake = incoming.handshake();
    assert!(
        size_of_val(&handshake) <= 256,
        "Incoming::handshake's future is {} bytes",
        size_of_val(&handshake)
    );
    let (io, _peer) = tokio::io::duplex(64);
    let accept = dialtone::accept(io);
    assert!(
        size_of_val(&accept) <= 1024,
        "accept's future is {} bytes",
        size_of_val(&accept)
    );
}
