//! Echo server on sockudo-ws (its tokio face, compression off: its default).

use bytes::BytesMut;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use sockudo_ws::handshake::{build_response, generate_accept_key, parse_request};
use sockudo_ws::protocol::Message;
use sockudo_ws::{Config, WebSocketStream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const NAME: &str = "echo_sockudo";

/// The handshake as sockudo-ws' own examples do it (the library has no
/// accept function for a bare stream).
async fn handshake(stream: &mut TcpStream) -> sockudo_ws::error::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(sockudo_ws::Error::ConnectionClosed);
        }
        if let Some((req, _)) = parse_request(&buf)? {
            let accept = generate_accept_key(req.key);
            stream
                .write_all(&build_response(&accept, None, None))
                .await?;
            return Ok(());
        }
    }
}

fn is_data(msg: &Message) -> bool {
    matches!(msg, Message::Text(_) | Message::Binary(_))
}

async fn serve(mut stream: TcpStream) -> sockudo_ws::error::Result<()> {
    handshake(&mut stream).await?;
    let mut ws = WebSocketStream::server(stream, Config::default());
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if !is_data(&msg) {
            continue; // pings and closes are answered by the library
        }
        ws.feed(msg).await?;
        while let Some(Some(more)) = ws.next().now_or_never() {
            let more = more?;
            if is_data(&more) {
                ws.feed(more).await?;
            }
        }
        ws.flush().await?;
    }
    Ok(())
}

fn main() {
    let addr = dialtone_bench::listen_addr(NAME);
    dialtone_bench::run(NAME, async move {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(tokio::task::unconstrained(async move {
                dialtone_bench::report(NAME, serve(stream).await);
            }));
        }
    });
}
