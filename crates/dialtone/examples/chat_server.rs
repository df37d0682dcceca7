//! A chat room: every text and binary message goes to every client.
//!
//! Against the command-line tool, in three terminals:
//!
//! ```sh
//! cargo run -p dialtone --example chat_server            # or: -- 127.0.0.1:PORT
//! dialtone dial ws://127.0.0.1:9001/                     # type lines here...
//! dialtone dial ws://127.0.0.1:9001/                     # ...and see them here
//! ```

use dialtone::{Listener, Message};
use tokio::sync::broadcast;

#[tokio::main]
async fn main() -> dialtone::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = Listener::bind(addr.as_str()).await?;
    println!("chat room on ws://{}/", listener.local_addr()?);
    // A bounded queue: a client that falls 256 messages behind misses some
    // rather than making the server hold everything for it.
    let (room, _) = broadcast::channel::<Message>(256);
    loop {
        let incoming = listener.accept().await?;
        let room = room.clone();
        tokio::spawn(async move {
            let (ws, _request) = incoming.handshake().await?;
            // One task writes what the room says, this one reads.
            let (mut reader, mut writer) = ws.split();
            let mut inbox = room.subscribe();
            let forward = tokio::spawn(async move {
                loop {
                    let msg = match inbox.recv().await {
                        Ok(msg) => msg,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            Message::text(format!("({n} messages missed: too slow)"))
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if writer.send(msg).await.is_err() {
                        return;
                    }
                }
            });
            while let Some(msg) = reader.recv().await {
                let msg = msg?;
                if msg.is_data() {
                    let _ = room.send(msg); // fails only when no one listens
                }
            }
            forward.abort();
            Ok::<(), dialtone::Error>(())
        });
    }
}
