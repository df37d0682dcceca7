//! Echo server on dialtone's public API.

const NAME: &str = "echo_dialtone";

/// Output waiting for a slow peer before the server stops reading.
const BACKLOG: usize = 64 * 1024;

async fn serve(incoming: dialtone::Incoming) -> dialtone::Result<()> {
    // The request is dropped at once: only the socket stays per connection.
    let (mut ws, _) = incoming.handshake().await?;
    while let Some(msg) = ws.recv().await {
        let msg = msg?;
        if !msg.is_data() {
            continue; // pings and closes are answered by the library
        }
        // Written by the next `recv` before it waits for the peer: the
        // replies to messages that arrived together go out in one write.
        ws.feed(msg)?;
        if ws.connection().pending_output() > BACKLOG {
            ws.flush().await?; // a peer that does not read is not outrun
        }
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
