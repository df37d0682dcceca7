//! Echo server on dialtone's public API.

const NAME: &str = "echo_dialtone";

async fn serve(incoming: dialtone::Incoming) -> dialtone::Result<()> {
    // The request is dropped at once: only the socket stays per connection.
    let (mut ws, _) = incoming.handshake().await?;
    dialtone_bench::echo_dialtone(&mut ws).await
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
