//! Echo server on dialtone's public API.

use std::task::Poll;

const NAME: &str = "echo_dialtone";

async fn serve(incoming: dialtone::Incoming) -> dialtone::Result<()> {
    // The request is dropped at once: only the socket stays per connection.
    let (mut ws, _) = incoming.handshake().await?;
    while let Some(msg) = ws.recv().await {
        let msg = msg?;
        if !msg.is_data() {
            continue; // pings and closes are answered by the library
        }
        ws.feed(msg)?;
        // Queue whatever else is already decoded or readable, then write it
        // all at once.
        while let Poll::Ready(Some(more)) = ws.try_recv() {
            let more = more?;
            if more.is_data() {
                ws.feed(more)?;
            }
        }
        ws.flush().await?;
    }
    Ok(())
}

fn main() {
    let addr = dialtone_bench::listen_addr(NAME);
    dialtone_bench::run(NAME, async move {
        let listener = dialtone::Listener::bind(addr).await?;
        loop {
            let incoming = listener.accept().await?;
            tokio::spawn(tokio::task::unconstrained(async move {
                dialtone_bench::report(NAME, serve(incoming).await);
            }));
        }
    });
}
