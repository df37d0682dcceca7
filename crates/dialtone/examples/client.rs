//! A client: dials, sends one text message, prints the reply, closes.
//!
//! Against the command-line tool:
//!
//! ```sh
//! dialtone serve 127.0.0.1:9001 --echo
//! cargo run -p dialtone --example client                 # or: -- ws://HOST:PORT/PATH
//! ```

use dialtone::{CloseCode, Dialer, Message};

#[tokio::main]
async fn main() -> dialtone::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    let (mut ws, _response) = Dialer::new().dial(&url).await?;
    ws.send("hello from dialtone").await?;

    // Pings are answered by the library; wait for the first data message.
    while let Some(msg) = ws.recv().await {
        match msg? {
            Message::Text(text) => {
                println!("got: {text}");
                break;
            }
            Message::Binary(bytes) => {
                println!("got {} bytes", bytes.len());
                break;
            }
            Message::Close(frame) => {
                println!("the server closed: {frame}");
                return Ok(());
            }
            _ => {}
        }
    }

    // Sends our close, waits for the server's answer and the end of TCP.
    let answer = ws.close(CloseCode::Normal, "bye").await?;
    println!("closed; the server answered {answer:?}");
    Ok(())
}
