//! `serve --exec CMD`: each connection runs `sh -c CMD` with its stdin and
//! stdout wired to the WebSocket, like websocketd.
//!
//! - Each line CMD prints is a text message (a binary one if it is not
//!   UTF-8), without its line ending; a line longer than
//!   [`MAX_LINE`](crate::exec::MAX_LINE) goes out in pieces of that size.
//! - Each text or binary message received is written to CMD's stdin
//!   followed by a newline. Writing waits for CMD to read, so a CMD that
//!   does not read slows the client down (TCP backpressure) rather than
//!   filling memory.
//! - When CMD exits, what it printed is sent (for at most [`DRAIN_GRACE`]
//!   after the exit, in case a child of it keeps stdout open), then the
//!   connection is closed: 1000 if CMD succeeded, 1011 with its exit status
//!   if not.
//! - When the client closes, its close is answered at once (RFC 6455 §7.1:
//!   an endpoint answers a close as soon as it can), CMD's stdin is closed
//!   and CMD gets `--exec-grace` to exit by itself before SIGTERM, then
//!   SIGKILL ([`crate::exec::stop`]). What it prints after the client's
//!   close cannot be sent any more: it is read and dropped, and the log
//!   says how many lines were.
//!
//! CMD sees `REMOTE_ADDR`, `REMOTE_PORT` and `REQUEST_URI` in its
//! environment; its stderr is the server's.

use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Result;
use dialtone::{CloseCode, CloseFrame, Message, Transport, WebSocket, WsReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{log_closed, summary, Opened};
use crate::exec::{self, stdout_to_lines, write_line};

/// How long output is still forwarded after CMD exits.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

pub(crate) async fn serve(
    ws: WebSocket<Transport>,
    opened: Opened,
    cmd: &str,
    grace: Duration,
) -> Result<()> {
    let peer = opened.peer;
    let env = [
        ("REMOTE_ADDR", peer.ip().to_string()),
        ("REMOTE_PORT", peer.port().to_string()),
        ("REQUEST_URI", opened.request.uri().to_string()),
    ];
    let (mut child, stdin, stdout) = exec::spawn(cmd, &env)?;
    let pid = child.id();
    opened.log();
    info!(%peer, ?pid, cmd, "command started");
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
    let drain = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain);
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
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            () = &mut drain, if exited.is_some() => break false,
            done = &mut to_stdin => {
                reader = Some(done?);
                break true;
            }
        }
    };
    if client_gone {
        // The reader has returned (or is about to): CMD's stdin is closed
        // with it. Its close was answered already.
        let reader = match reader {
            Some(reader) => reader,
            None => to_stdin.await?,
        };
        log_closed(peer, reader.close_received().as_ref());
        let (status, ended, dropped) = match exited {
            Some(status) => (status, exec::Ended::ByItself, 0),
            None => stop_dropping_output(&mut child, grace, &mut lines).await,
        };
        let dropped = dropped + drop_rest(&mut lines).await;
        info!(%peer, ?status, "client gone, command {ended}");
        if dropped > 0 {
            warn!(
                %peer,
                dropped,
                "the command printed {dropped} line(s) after the client's close; \
                 they could not be sent (the close was answered at once, RFC 6455 §7.1)"
            );
        }
        return Ok(());
    }
    // stdout is done: the command ends the connection once it exits.
    let status = match exited {
        Some(status) => status,
        None => tokio::select! {
            status = child.wait() => status,
            done = &mut to_stdin => {
                reader = Some(done?);
                let (status, ended) = exec::stop(&mut child, grace).await;
                info!(%peer, ?status, "client gone, command {ended}");
                status
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

/// Stops CMD ([`exec::stop`]) while reading and counting what it still
/// prints, so that a full pipe cannot keep it from exiting.
async fn stop_dropping_output(
    child: &mut Child,
    grace: Duration,
    lines: &mut mpsc::Receiver<Message>,
) -> (std::io::Result<ExitStatus>, exec::Ended, usize) {
    let mut dropped = 0;
    let stopping = exec::stop(child, grace);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            (status, ended) = &mut stopping => return (status, ended, dropped),
            Some(_) = lines.recv() => dropped += 1,
        }
    }
}

/// Counts what CMD printed and was not sent, up to the end of its stdout
/// (for at most [`DRAIN_GRACE`], in case a child of it keeps stdout open).
async fn drop_rest(lines: &mut mpsc::Receiver<Message>) -> usize {
    let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
    let mut dropped = 0;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, lines.recv()).await {
        dropped += 1;
    }
    dropped
}

/// Writes each message received to `stdin` as a line, until the client
/// goes; returns the reader to ask how it closed, and closes `stdin` (by
/// dropping it). Once the command stops reading (its stdin is closed),
/// further messages are dropped.
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
            if let Err(e) = write_line(pipe, &msg).await {
                debug!(%peer, "command's stdin closed: {e}");
                stdin = None;
            }
        }
    }
    reader
}
