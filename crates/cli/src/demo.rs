//! `dialtone demo`: a listener and a dialer in one process, talking.

use std::process::ExitCode;

use anyhow::{Context, Result};
use dialtone::{Acceptor, CloseCode, CloseFrame, Deflate, Dialer, Listener, Message, MessageKind};

use crate::{config, describe, server_config, DeflateArgs};

pub(crate) async fn demo() -> Result<ExitCode> {
    let listener = Listener::bind("127.0.0.1:0")
        .await?
        .with_acceptor(Acceptor::new().config(server_config(&DeflateArgs {
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
