//! Echo server on tokio-websockets.

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_websockets::ServerBuilder;

const NAME: &str = "echo_tokio_websockets";

async fn serve(stream: TcpStream) -> Result<(), tokio_websockets::Error> {
    // The request is dropped at once: only the socket stays per connection.
    let (_, mut ws) = ServerBuilder::new().accept(stream).await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if !(msg.is_binary() || msg.is_text()) {
            continue;
        }
        ws.feed(msg).await?;
        while let Some(Some(more)) = ws.next().now_or_never() {
            let more = more?;
            if more.is_binary() || more.is_text() {
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
