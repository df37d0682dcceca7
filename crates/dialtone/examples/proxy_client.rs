//! A client that dials through a proxy: HTTP CONNECT (`http://`), SOCKS5
//! (`socks5://`, or `socks5h://` to let the proxy resolve the name), SOCKS4.
//! Without `.proxy(..)`, a `Dialer` follows `HTTPS_PROXY` / `HTTP_PROXY` /
//! `ALL_PROXY` / `NO_PROXY` (`.no_proxy()` turns that off).
//!
//! Against the command-line tool, through Debian's microsocks (or tinyproxy):
//!
//! ```sh
//! dialtone serve 127.0.0.1:9001 --echo
//! microsocks -i 127.0.0.1 -p 1080
//! cargo run -p dialtone --example proxy_client -- socks5://127.0.0.1:1080 ws://127.0.0.1:9001/
//! ```

use dialtone::{CloseCode, Dialer, Message};

#[tokio::main]
async fn main() -> dialtone::Result<()> {
    let mut args = std::env::args().skip(1);
    let proxy = args
        .next()
        .unwrap_or_else(|| "socks5://127.0.0.1:1080".to_owned());
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());

    // Credentials go in the proxy URL: http://user:password@host:port.
    let dialer = Dialer::new().proxy(proxy);
    let (mut ws, _response) = dialer.dial(&url).await?;
    ws.send("hello through the proxy").await?;
    if let Some(Ok(Message::Text(reply))) = ws.recv().await {
        println!("got: {reply}");
    }
    ws.close(CloseCode::Normal, "").await?;
    Ok(())
}
