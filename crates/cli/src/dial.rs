//! `dialtone dial`: a dialer on the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use dialtone::{CloseCode, CloseFrame, CookieJar, Dialer, Message, MessageKind};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::{config, describe, DeflateArgs};

#[derive(clap::Args)]
pub(crate) struct DialArgs {
    /// A ws:// or wss:// URL.
    url: String,
    /// Echo every received message back instead of reading stdin.
    #[arg(long)]
    echo: bool,
    /// Send stdin as a byte stream of binary messages (EFL's streaming
    /// mode) and write received binary messages to stdout.
    #[arg(long, conflicts_with = "echo")]
    binary: bool,
    /// Offer a subprotocol (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Add a request header, "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The User-Agent header.
    #[arg(long)]
    user_agent: Option<String>,
    /// Proxy URL: http://, socks5://, socks5h://, socks4://, socks4a://.
    /// Without it, the *_PROXY environment variables are used, like curl.
    #[arg(long, conflicts_with = "no_proxy")]
    proxy: Option<String>,
    /// Connect directly, whatever the environment says.
    #[arg(long)]
    no_proxy: bool,
    /// Trust this CA certificate (PEM file) too (repeatable).
    #[arg(long = "cacert")]
    cacerts: Vec<PathBuf>,
    /// Client certificate (PEM) for TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Do not verify the server's certificate. For testing only.
    #[arg(long)]
    insecure: bool,
    /// Load cookies from this Netscape cookie file and save them back.
    #[arg(long)]
    cookie_jar: Option<PathBuf>,
    /// Follow at most this many handshake redirects.
    #[arg(long, default_value_t = Dialer::DEFAULT_MAX_REDIRECTS)]
    max_redirects: usize,
    /// Ping the server every this many seconds (pong deadline: the same).
    #[arg(long)]
    ping_interval: Option<f64>,
    /// Dial timeout in seconds (DNS, connect, proxy, TLS, handshake).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    #[command(flatten)]
    deflate: DeflateArgs,
}

fn dialer(args: &DialArgs) -> Result<Dialer> {
    let mut d = Dialer::new()
        .config(config(&args.deflate))
        .max_redirects(args.max_redirects)
        .timeout(Duration::from_secs_f64(args.timeout));
    for p in &args.protocols {
        d = d.protocol(p.clone());
    }
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?} is not \"Name: value\""))?;
        d = d.header(name.trim(), value.trim());
    }
    if let Some(ua) = &args.user_agent {
        d = d.user_agent(Some(ua.clone()));
    }
    if let Some(proxy) = &args.proxy {
        d = d.proxy(proxy.clone());
    } else if args.no_proxy {
        d = d.no_proxy();
    }
    for ca in &args.cacerts {
        d = d.add_ca_file(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        d = d.client_cert_files(cert.clone(), key.clone());
    }
    if args.insecure {
        d = d.danger_accept_invalid_certs(true);
    }
    if let Some(secs) = args.ping_interval {
        let every = Duration::from_secs_f64(secs);
        d = d.keepalive(every, every);
    }
    Ok(d)
}

pub(crate) async fn dial(args: DialArgs) -> Result<ExitCode> {
    let mut dialer = dialer(&args)?;
    let jar = match &args.cookie_jar {
        Some(path) => {
            let jar = CookieJar::load(path).with_context(|| format!("reading {path:?}"))?;
            dialer = dialer.cookie_jar(jar.clone());
            Some((jar, path))
        }
        None => None,
    };
    let url = &args.url;
    let dialed = dialer.dial(url).await;
    if let Some((jar, path)) = &jar {
        jar.save(path)
            .with_context(|| format!("writing {path:?}"))?;
    }
    let (ws, _) = dialed.with_context(|| format!("dialing {url}"))?;
    if args.binary {
        return stream_binary(ws).await;
    }
    let (mut reader, mut writer) = ws.split();
    if args.echo {
        while let Some(msg) = reader.recv().await {
            match msg {
                Ok(msg) if msg.is_data() => writer.send(msg).await?,
                Ok(_) => {}
                Err(e) => eprintln!("dialtone: {e}"),
            }
        }
    } else {
        let stdin = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if writer.send(Message::text(line)).await.is_err() {
                    return;
                }
            }
            let _ = writer.close(CloseCode::Normal, "").await;
        });
        while let Some(msg) = reader.recv().await {
            match msg {
                Ok(Message::Text(t)) => println!("{t}"),
                Ok(msg) => eprintln!("< {}", describe(&msg)),
                Err(e) => eprintln!("dialtone: {e}"),
            }
        }
        stdin.abort();
    }
    Ok(exit_code(reader.close_received()))
}

/// `--binary`: stdin → binary messages, binary messages → stdout, until
/// the server closes (exit 0) or the connection fails.
async fn stream_binary(ws: dialtone::WebSocket<dialtone::Transport>) -> Result<ExitCode> {
    let stream = ws.into_stream(MessageKind::Binary);
    let (mut from_ws, mut to_ws) = tokio::io::split(stream);
    let upload = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut to_ws).await;
        // End of stdin: close, and keep receiving until the server answers.
        let _ = to_ws.shutdown().await;
    });
    let received = tokio::io::copy(&mut from_ws, &mut tokio::io::stdout()).await;
    tokio::io::stdout().flush().await?;
    upload.abort();
    received.context("receiving")?;
    Ok(ExitCode::SUCCESS)
}

fn exit_code(close: Option<CloseFrame>) -> ExitCode {
    match close {
        Some(c) if c.code == CloseCode::Normal => ExitCode::SUCCESS,
        Some(c) => {
            eprintln!("closed: {c}");
            ExitCode::FAILURE
        }
        None => ExitCode::FAILURE,
    }
}
