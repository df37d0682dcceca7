//! A client without an async runtime: each line of stdin is sent as a text
//! message and the reply printed (`std::net`, no tokio involved).
//!
//! Against the command-line tool:
//!
//! ```sh
//! dialtone serve 127.0.0.1:9001 --echo
//! printf 'hello\nworld\n' | cargo run -p dialtone --example blocking_client
//! ```

use std::io::BufRead;

use dialtone::{CloseCode, Dialer, Message};

fn main() -> dialtone::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    // `ws://` only: TLS and proxies are the async dialer's.
    let (mut ws, _response) = Dialer::new().dial_blocking(&url)?;

    for line in std::io::stdin().lock().lines() {
        ws.send(line?)?;
        // Pings are answered inside `recv`; wait for the reply itself.
        loop {
            match ws.recv() {
                Some(Ok(Message::Text(reply))) => {
                    println!("{reply}");
                    break;
                }
                Some(Ok(Message::Close(frame))) => {
                    println!("the server closed: {frame}");
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
    ws.close(CloseCode::Normal, "end of input")?;
    Ok(())
}
