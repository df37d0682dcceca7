//! `dialtone serve`: a listener on the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use dialtone::{Acceptor, Listener, ServerTls};

use crate::{config, describe, DeflateArgs};

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to bind.
    addr: String,
    /// Echo every text and binary message back (otherwise print them).
    #[arg(long)]
    echo: bool,
    #[command(flatten)]
    deflate: DeflateArgs,
    /// Certificate chain (PEM) to serve wss:// with.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub(crate) async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let addr = &args.addr;
    let mut listener = Listener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?
        .with_acceptor(Acceptor::new().config(config(&args.deflate)));
    let scheme = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            listener = listener.with_tls(ServerTls::from_pem_files(cert, key)?);
            "wss"
        }
        _ => "ws",
    };
    eprintln!("listening on {scheme}://{}/", listener.local_addr()?);
    let echo = args.echo;
    loop {
        let incoming = match listener.accept().await {
            Ok(i) => i,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        tokio::spawn(async move {
            let peer = incoming.peer_addr();
            if let Err(e) = serve_one(incoming, echo).await {
                eprintln!("{peer}: {e}");
            }
        });
    }
}

async fn serve_one(incoming: dialtone::Incoming, echo: bool) -> Result<()> {
    let peer = incoming.peer_addr();
    let (mut ws, _) = incoming.handshake().await?;
    while let Some(msg) = ws.recv().await {
        let msg = msg?;
        if echo {
            if msg.is_data() {
                ws.send(msg).await?;
            }
        } else {
            println!("{peer} {}", describe(&msg));
        }
    }
    Ok(())
}
