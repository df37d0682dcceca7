//! `serve --exec CMD`: each connection runs `sh -c CMD` with its stdin and
//! stdout wired to the WebSocket, like websocketd.
//!
//! - Each line CMD prints is a text message (a binary one if it is not
//!   UTF-8), without its line ending; a line longer than [`MAX_LINE`] goes
//!   out in pieces of that size.
//! - Each text or binary message received is written to CMD's stdin
//!   followed by a newline. Writing waits for CMD to read, so a CMD that
//!   does not read slows the client down (TCP backpressure) rather than
//!   filling memory.
//! - When CMD exits, what it printed is sent (for at most [`DRAIN_GRACE`]
//!   after the exit, in case a child of it keeps stdout open), then the
//!   connection is closed: 1000 if CMD succeeded, 1011 with its exit status
//!   if not.
//! - When the client goes, CMD is killed.
//!
//! CMD sees `REMOTE_ADDR`, `REMOTE_PORT` and `REQUEST_URI` in its
//! environment; its stderr is the server's.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use dialtone::{CloseCode, CloseFrame, Message, Transport, WebSocket, WsReader};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{log_closed, summary, Opened};

/// The longest line sent as one message.
const MAX_LINE: u64 = 1 << 20;

/// How long output is still forwarded after CMD exits.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

pub(crate) async fn serve(ws: WebSocket<Transport>, opened: Opened, cmd: &str) -> Result<()> {
    let peer = opened.peer;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("REMOTE_ADDR", peer.ip().to_string())
        .env("REMOTE_PORT", peer.port().to_string())
        .env("REQUEST_URI", opened.request.uri().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // A backstop: every path below kills and reaps it already.
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let pid = child.id();
    opened.log();
    info!(%peer, ?pid, cmd, "command started");
    let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
        (Some(stdin), Some(stdout)) => (stdin, stdout),
        _ => anyhow::bail!("{cmd:?}: no pipes to the command"),
    };
    let (reader, mut writer) = ws.split();
    let mut to_stdin = tokio::spawn(messages_to_stdin(reader, stdin, peer));
    // A few lines of slack between the pipe and the socket; the pipe and the
    // socket's send path bound the rest.
    let (lines_tx, mut lines) = mpsc::channel(16);
    tokio::spawn(stdout_to_lines(stdout, lines_tx));

    let mut exited: Option<std::io::Result<ExitStatus>> = None;
    // The reader, once `to_stdin` has returned it (a finished task's handle
    // cannot be awaited again).
    let mut reader: Option<WsReader<Transport>> = None;
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let client_gone = loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(msg) => {
                    debug!(%peer, "sending {}", summary(&msg));
                    if writer.send(msg).await.is_err() {
                        // The connection is gone; the reader tells how.
                        break true;
                    }
                }
                None => break false,
            },
            status = child.wait(), if exited.is_none() => {
                exited = Some(status);
                grace.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = &mut grace, if exited.is_some() => break false,
            done = &mut to_stdin => {
                reader = Some(done?);
                break true;
            }
        }
    };
    if client_gone {
        let _ = child.start_kill();
        let status = child.wait().await;
        info!(%peer, ?status, "client gone, command killed");
        let reader = match reader {
            Some(reader) => reader,
            None => to_stdin.await?,
        };
        log_closed(peer, reader.close_received().as_ref());
        return Ok(());
    }
    // stdout is done: the command ends the connection once it exits.
    let status = match exited {
        Some(status) => status,
        None => tokio::select! {
            status = child.wait() => status,
            done = &mut to_stdin => {
                reader = Some(done?);
                let _ = child.start_kill();
                child.wait().await
            }
        },
    };
    let close = match &status {
        Ok(s) if s.success() => CloseFrame::new(CloseCode::Normal, ""),
        Ok(s) => CloseFrame::new(CloseCode::ServerError, format!("command {s}")),
        Err(e) => CloseFrame::new(CloseCode::ServerError, format!("command lost: {e}")),
    };
    info!(%peer, ?status, code = close.code.as_u16(), reason = ?close.reason, "command exited, closing");
    // Fails only if the client has gone meanwhile; the reader tells.
    let _ = writer.close(close.code, &close.reason).await;
    let reader = match reader {
        Some(reader) => reader,
        None => to_stdin.await?,
    };
    log_closed(peer, reader.close_received().as_ref());
    Ok(())
}

/// Writes each message received to `stdin` as a line, until the client
/// goes; returns the reader to ask how it closed. Once the command stops
/// reading (its stdin is closed), further messages are dropped.
async fn messages_to_stdin(
    mut reader: WsReader<Transport>,
    stdin: ChildStdin,
    peer: std::net::SocketAddr,
) -> WsReader<Transport> {
    let mut stdin = Some(stdin);
    while let Some(msg) = reader.recv().await {
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                debug!(%peer, "receiving: {e}");
                continue;
            }
        };
        debug!(%peer, "received {}", summary(&msg));
        if !msg.is_data() {
            continue;
        }
        if let Some(pipe) = &mut stdin {
            let written = async {
                pipe.write_all(msg.as_payload()).await?;
                pipe.write_all(b"\n").await?;
                pipe.flush().await
            };
            if let Err(e) = written.await {
                debug!(%peer, "command's stdin closed: {e}");
                stdin = None;
            }
        }
    }
    reader
}

/// Reads lines from the command's stdout into messages, until it ends or
/// the receiver is gone.
async fn stdout_to_lines(stdout: ChildStdout, lines: mpsc::Sender<Message>) {
    let mut stdout = BufReader::new(stdout);
    loop {
        let mut line = Vec::new();
        match (&mut stdout)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let msg = match String::from_utf8(line) {
            Ok(text) => Message::text(text),
            Err(e) => Message::binary(e.into_bytes()),
        };
        if lines.send(msg).await.is_err() {
            return;
        }
    }
}
