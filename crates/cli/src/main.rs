//! `dialtone`: the command-line face of the library. It uses only the
//! library's public API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dialtone::{
    Acceptor, CloseCode, CloseFrame, Config, CookieJar, Deflate, Dialer, Listener, Message,
    MessageKind, ServerTls,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(name = "dialtone", version, about = "A WebSocket dialer and listener")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a listener on 127.0.0.1, dial it, exchange a few messages and
    /// print the transcript.
    Demo,
    /// Listen for WebSocket connections on ADDR (e.g. 127.0.0.1:9001).
    Serve(ServeArgs),
    /// Dial URL; send each stdin line as a text message and print what
    /// arrives.
    Dial(DialArgs),
}

#[derive(clap::Args)]
struct DeflateArgs {
    /// Do not use permessage-deflate.
    #[arg(long)]
    no_deflate: bool,
    /// Send messages shorter than this many bytes uncompressed.
    #[arg(long, default_value_t = Deflate::default().threshold)]
    deflate_threshold: usize,
}

#[derive(clap::Args)]
struct ServeArgs {
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

#[derive(clap::Args)]
struct DialArgs {
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo().await,
        Command::Serve(args) => serve(args).await,
        Command::Dial(args) => dial(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dialtone: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// permessage-deflate is offered twice, in order of preference: with
/// context takeover, then without it, for servers that accept only clients
/// that can go without (RFC 7692 §7.1.1.2). As a server policy the first
/// accepts any valid offer.
fn config(args: &DeflateArgs) -> Config {
    let (no_deflate, threshold) = (args.no_deflate, args.deflate_threshold);
    let config = Config::default();
    if no_deflate {
        return config;
    }
    let without_takeover = Deflate {
        client_no_context_takeover: true,
        ..Deflate::default()
    };
    config
        .deflate(Deflate::default().threshold(threshold))
        .deflate(without_takeover.threshold(threshold))
}

/// How a message looks in a transcript.
fn describe(msg: &Message) -> String {
    fn hex(b: &[u8]) -> String {
        let shown: Vec<String> = b.iter().take(16).map(|x| format!("{x:02x}")).collect();
        let more = if b.len() > 16 { " …" } else { "" };
        format!("{}{more}", shown.join(" "))
    }
    match msg {
        Message::Text(t) => format!("text {:?}", t.as_str()),
        Message::Binary(b) => format!("binary [{} bytes] {}", b.len(), hex(b)),
        Message::Ping(b) => format!("ping {:?}", String::from_utf8_lossy(b)),
        Message::Pong(b) => format!("pong {:?}", String::from_utf8_lossy(b)),
        Message::Close(c) => format!("close {c}"),
    }
}

async fn demo() -> Result<ExitCode> {
    let listener = Listener::bind("127.0.0.1:0")
        .await?
        .with_acceptor(Acceptor::new().config(config(&DeflateArgs {
            no_deflate: false,
            deflate_threshold: Deflate::default().threshold,
        })));
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let incoming = listener.accept().await?;
        let (mut ws, _) = incoming.handshake().await?;
        while let Some(msg) = ws.recv().await {
            let msg = msg?;
            if msg.is_data() {
                ws.send(msg).await?;
            }
        }
        anyhow::Ok(ws.close_received().cloned())
    });

    let url = format!("ws://{addr}/demo");
    println!("listener   ws://{addr}/ (echo)");
    let (mut ws, response) = Dialer::new()
        .config(config(&DeflateArgs {
            no_deflate: false,
            deflate_threshold: Deflate::default().threshold,
        }))
        .dial(&url)
        .await?;
    println!(
        "dialed     {url} → {} {}",
        response.head.status.as_u16(),
        response.head.reason
    );
    if let Some(ext) = response.head.headers.get("sec-websocket-extensions") {
        println!("extension  {}", ext.to_str().unwrap_or("?"));
    }

    let text = Message::text("hello, dialtone");
    println!("→ sent     {}", describe(&text));
    ws.send(text.clone()).await?;
    let reply = next(&mut ws).await?;
    println!("← received {}", describe(&reply));
    anyhow::ensure!(reply == text, "echo differs");

    let binary = Message::binary(vec![0x00, 0x01, 0xfe, 0xff]);
    println!("→ sent     {}", describe(&binary));
    ws.send(binary.clone()).await?;
    let reply = next(&mut ws).await?;
    println!("← received {}", describe(&reply));
    anyhow::ensure!(reply == binary, "echo differs");

    let pieces = ["frag", "men", "ted ✓"];
    println!("→ sent     text in {} frames {:?}", pieces.len(), pieces);
    for (i, piece) in pieces.iter().enumerate() {
        ws.send_fragment(MessageKind::Text, piece.as_bytes(), i + 1 == pieces.len())
            .await?;
    }
    let reply = next(&mut ws).await?;
    println!("← received {} (reassembled)", describe(&reply));
    anyhow::ensure!(reply == Message::text(pieces.concat()), "echo differs");

    let ping = Message::Ping("are you there?".into());
    println!("→ sent     {}", describe(&ping));
    ws.send(ping).await?;
    let reply = next(&mut ws).await?;
    println!("← received {}", describe(&reply));
    anyhow::ensure!(matches!(reply, Message::Pong(ref p) if &p[..] == b"are you there?"));

    let close = CloseFrame::new(CloseCode::Normal, "demo finished");
    println!("→ sent     close {close}");
    let answer = ws.close(close.code, &close.reason).await?;
    let answer = answer.context("no close frame from the server")?;
    println!("← received close {answer}");
    let seen_by_server = server.await??;
    if let Some(frame) = seen_by_server {
        println!("server saw close {frame}");
    }
    println!(
        "closed     cleanly: code {} ({})",
        answer.code.name(),
        answer.code.as_u16()
    );
    Ok(if answer.code == CloseCode::Normal {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn next<S>(ws: &mut dialtone::WebSocket<S>) -> Result<Message>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.recv()
        .await
        .context("the connection ended early")?
        .map_err(Into::into)
}

async fn serve(args: ServeArgs) -> Result<ExitCode> {
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

async fn dial(args: DialArgs) -> Result<ExitCode> {
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
