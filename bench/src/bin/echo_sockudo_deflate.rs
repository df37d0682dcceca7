//! Echo server on sockudo-ws 3.1 with permessage-deflate, for the
//! compression benchmark: the handshake as its own Autobahn server does it
//! (`negotiate_server_deflate` with `DeflateConfig::default()`: 15-bit
//! windows, context kept unless the offer asks otherwise), then its
//! `CompressedWebSocketStream`. A client that offers no compression is
//! served uncompressed by the plain `WebSocketStream`.

use bytes::BytesMut;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use sockudo_ws::deflate::{negotiate_server_deflate, DeflateConfig};
use sockudo_ws::handshake::{build_response, generate_accept_key, parse_request};
use sockudo_ws::protocol::Message;
use sockudo_ws::{CompressedWebSocketStream, Config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const NAME: &str = "echo_sockudo_deflate";

fn is_data(msg: &Message) -> bool {
    matches!(msg, Message::Text(_) | Message::Binary(_))
}

async fn serve(mut stream: TcpStream) -> sockudo_ws::error::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    let (deflate, leftover) = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(sockudo_ws::Error::ConnectionClosed);
        }
        if let Some((req, used)) = parse_request(&buf)? {
            let accept = generate_accept_key(req.key);
            let negotiated = req
                .extensions
                .and_then(|ext| negotiate_server_deflate(ext, &DeflateConfig::default()));
            let answer = negotiated.as_ref().map(|n| n.to_response_header());
            stream
                .write_all(&build_response(&accept, None, answer.as_deref()))
                .await?;
            let leftover = buf.split_off(used).freeze();
            break (negotiated.map(|n| n.config), leftover);
        }
    };
    let Some(deflate) = deflate else {
        return Err(sockudo_ws::Error::ConnectionClosed); // the benchmark always offers it
    };
    let leftover = (!leftover.is_empty()).then_some(leftover);
    let mut ws = CompressedWebSocketStream::server_with_leftover(
        stream,
        Config::default(),
        deflate,
        leftover,
    );
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if !is_data(&msg) {
            continue;
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
