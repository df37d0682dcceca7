//! `dialtone`: the command-line face of the library. It uses only the
//! library's public API.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dialtone::{
    Acceptor, CloseCode, CloseFrame, Config, Deflate, Dialer, Listener, Message, MessageKind,
};
use tokio::io::AsyncBufReadExt;

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
    Serve {
        /// Address to bind.
        addr: String,
        /// Echo every text and binary message back (otherwise print them).
        #[arg(long)]
        echo: bool,
        /// Do not accept permessage-deflate.
        #[arg(long)]
        no_deflate: bool,
        /// Send messages shorter than this many bytes uncompressed.
        #[arg(long, default_value_t = Deflate::default().threshold)]
        deflate_threshold: usize,
    },
    /// Dial URL; send each stdin line as a text message and print what
    /// arrives.
    Dial {
        /// A ws:// URL.
        url: String,
        /// Echo every received message back instead of reading stdin.
        #[arg(long)]
        echo: bool,
        /// Offer a subprotocol (repeatable).
        #[arg(long = "protocol")]
        protocols: Vec<String>,
        /// Do not offer permessage-deflate.
        #[arg(long)]
        no_deflate: bool,
        /// Send messages shorter than this many bytes uncompressed.
        #[arg(long, default_value_t = Deflate::default().threshold)]
        deflate_threshold: usize,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo().await,
        Command::Serve {
            addr,
            echo,
            no_deflate,
            deflate_threshold,
        } => serve(&addr, echo, config(no_deflate, deflate_threshold)).await,
        Command::Dial {
            url,
            echo,
            protocols,
            no_deflate,
            deflate_threshold,
        } => dial(&url, echo, protocols, config(no_deflate, deflate_threshold)).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dialtone: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Limits as the library's defaults; permessage-deflate on unless refused.
/// permessage-deflate is offered twice, in order of preference: with
/// context takeover, then without it, for servers that accept only clients
/// that can go without (RFC 7692 §7.1.1.2). As a server policy the first
/// accepts any valid offer.
fn config(no_deflate: bool, threshold: usize) -> Config {
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
        .with_acceptor(Acceptor::new().config(config(false, Deflate::default().threshold)));
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
        .config(config(false, Deflate::default().threshold))
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

async fn serve(addr: &str, echo: bool, config: Config) -> Result<ExitCode> {
    let listener = Listener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?
        .with_acceptor(Acceptor::new().config(config));
    eprintln!("listening on ws://{}/", listener.local_addr()?);
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

async fn dial(url: &str, echo: bool, protocols: Vec<String>, config: Config) -> Result<ExitCode> {
    let mut dialer = Dialer::new().config(config);
    for p in protocols {
        dialer = dialer.protocol(p);
    }
    let (ws, _) = dialer
        .dial(url)
        .await
        .with_context(|| format!("dialing {url}"))?;
    let (mut reader, mut writer) = ws.split();
    if echo {
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
    let close = reader.close_received();
    Ok(match close {
        Some(c) if c.code == CloseCode::Normal => ExitCode::SUCCESS,
        Some(c) => {
            eprintln!("closed: {c}");
            ExitCode::FAILURE
        }
        None => ExitCode::FAILURE,
    })
}
