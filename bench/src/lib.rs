//! What the echo servers of the benchmark share: the command line and the
//! runtime. Every server is single-threaded (a tokio `current_thread`
//! runtime), runs each connection in its own task, turns Nagle off, leaves
//! compression off (none of the libraries enables it unasked) and keeps its
//! library's default limits; each echoes text and binary messages and lets
//! its library answer pings and closes.
//!
//! Connection errors are not printed (a load generator that exits drops its
//! connections mid-stream) unless `ECHO_VERBOSE` is set.

use std::future::Future;
use std::net::SocketAddr;

/// The address to listen on: the first argument, by default `127.0.0.1:9001`.
pub fn listen_addr(name: &str) -> SocketAddr {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        None => SocketAddr::from(([127, 0, 0, 1], 9001)),
        Some("-h" | "--help") => {
            println!("usage: {name} [HOST:PORT]   (default 127.0.0.1:9001)");
            std::process::exit(0);
        }
        Some(a) => a.parse().unwrap_or_else(|e| {
            eprintln!("{name}: bad address {a:?}: {e}");
            std::process::exit(2);
        }),
    }
}

/// Runs `main` on a single-threaded tokio runtime.
pub fn run<F: Future<Output = std::io::Result<()>>>(name: &str, main: F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(main) {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}

/// Reports a connection's error if `ECHO_VERBOSE` is set.
pub fn report<E: std::fmt::Display>(name: &str, r: Result<(), E>) {
    if let Err(e) = r {
        if std::env::var_os("ECHO_VERBOSE").is_some() {
            eprintln!("{name}: connection: {e}");
        }
    }
}

/// Output waiting for a slow peer before a dialtone echo stops reading.
const BACKLOG: usize = 64 * 1024;

/// The echo loop of the dialtone servers (`echo_dialtone`,
/// `echo_axum_dialtone`), on dialtone's public API: each message is queued
/// with `feed` and written by the next `recv` before it waits for the peer,
/// so the replies to messages that arrived together go out in one write;
/// `flush` only past 64 KiB of unwritten replies, so that a peer that does
/// not read is not outrun. Pings and closes are answered by the library.
pub async fn echo_dialtone<S>(ws: &mut dialtone::WebSocket<S>) -> dialtone::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(msg) = ws.recv().await {
        let msg = msg?;
        if !msg.is_data() {
            continue;
        }
        ws.feed(msg)?;
        if ws.connection().pending_output() > BACKLOG {
            ws.flush().await?;
        }
    }
    Ok(())
}

pub mod dialer;

/// A listener for `axum::serve` that turns Nagle off on every connection,
/// as the other servers do.
pub async fn axum_listener(
    addr: SocketAddr,
) -> std::io::Result<impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = SocketAddr>> {
    use axum::serve::ListenerExt as _;
    let tcp = tokio::net::TcpListener::bind(addr).await?;
    Ok(tcp.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    }))
}
