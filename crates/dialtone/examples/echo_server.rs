//! An echo server: every text and binary message goes back to its sender.
//!
//! Against the command-line tool:
//!
//! ```sh
//! cargo run -p dialtone --example echo_server            # or: -- 127.0.0.1:PORT
//! printf 'hello\nworld\n' | dialtone dial ws://127.0.0.1:9001/
//! ```

use dialtone::{Listener, Message};

#[tokio::main]
async fn main() -> dialtone::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = Listener::bind(addr.as_str()).await?;
    println!("echoing on ws://{}/", listener.local_addr()?);
    loop {
        let incoming = listener.accept().await?;
        // One task per connection: a slow client holds up no one else.
        tokio::spawn(async move {
            let (mut ws, request) = incoming.handshake().await?;
            println!("open: {}", request.uri());
            // Pings are answered and a close is answered by the library;
            // `recv` returns `None` once the connection is over.
            while let Some(msg) = ws.recv().await {
                match msg? {
                    Message::Close(frame) => println!("closed: {frame}"),
                    msg if msg.is_data() => ws.send(msg).await?,
                    _ => {}
                }
            }
            Ok::<(), dialtone::Error>(())
        });
    }
}
