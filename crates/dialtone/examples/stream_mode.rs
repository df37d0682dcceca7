//! A WebSocket as a byte stream: stdin is copied into binary messages and
//! the messages that come back are copied to stdout, with
//! `tokio::io::copy` on both sides (the EFL dialer's "streaming mode").
//!
//! Against the command-line tool (an echo gives the file back unchanged):
//!
//! ```sh
//! dialtone serve 127.0.0.1:9001 --echo
//! cargo run -p dialtone --example stream_mode < Cargo.toml | cmp - Cargo.toml && echo same
//! ```

use dialtone::{Dialer, MessageKind};
use tokio::io::AsyncWriteExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    let (ws, _response) = Dialer::new().dial(&url).await?;
    // Each write is one binary message; reads return the payloads of the
    // messages received, in order, and end when the peer closes.
    let (mut from_ws, mut to_ws) = tokio::io::split(ws.into_stream(MessageKind::Binary));

    let upload = async {
        tokio::io::copy(&mut tokio::io::stdin(), &mut to_ws).await?;
        // Sends a Normal close; the peer's answer ends the download.
        to_ws.shutdown().await
    };
    let download = async {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut from_ws, &mut stdout).await?;
        stdout.flush().await
    };
    tokio::try_join!(upload, download)?;
    Ok(())
}
