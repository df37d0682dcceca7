//! A `wss://` client that trusts an extra CA (a private or development CA)
//! besides the built-in Mozilla roots.
//!
//! Against the command-line tool, with a CA and a leaf certificate signed by
//! it (a self-signed CA certificate served as it is would be refused):
//!
//! ```sh
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
//!     -subj /CN=dev-ca -keyout ca.key -out ca.pem
//! openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
//!     -keyout key.pem -out leaf.csr
//! printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > leaf.ext
//! openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -days 30 -extfile leaf.ext -out cert.pem
//! dialtone serve 127.0.0.1:9443 --echo --tls-cert cert.pem --tls-key key.pem
//! cargo run -p dialtone --example tls_client -- ca.pem wss://localhost:9443/
//! ```

use dialtone::{CloseCode, Dialer, Message};

#[tokio::main]
async fn main() -> dialtone::Result<()> {
    let mut args = std::env::args().skip(1);
    let ca = args.next().unwrap_or_else(|| "ca.pem".to_owned());
    let url = args
        .next()
        .unwrap_or_else(|| "wss://localhost:9443/".to_owned());

    // The file is read at the first wss:// dial; a bad file fails the dial.
    let dialer = Dialer::new().add_ca_file(ca);
    let (mut ws, _response) = dialer.dial(&url).await?;
    ws.send("hello over TLS").await?;
    if let Some(Ok(Message::Text(reply))) = ws.recv().await {
        println!("got: {reply}");
    }
    ws.close(CloseCode::Normal, "").await?;
    Ok(())
}
