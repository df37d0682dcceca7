//! `serve --exec PROGRAM ARGS…` (or `--exec-shell CMD`): each connection
//! runs the command with its stdin and stdout wired to the WebSocket, like
//! websocketd; at most `--max-procs` at once ([`Procs`]).
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
//! CMD's environment is the request's, as websocketd gives it
//! ([`super::cgi`]), and the `--passenv` variables; its stderr is the
//! server's.

use std::ffi::OsString;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use dialtone::http::{header, HeaderValue, StatusCode};
use dialtone::Reject;
use dialtone::{CloseCode, CloseFrame, Message, Transport, WebSocket, WsReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use super::{cgi, log_closed, summary, Opened};
use crate::exec::{self, stdout_to_lines, write_line, Env, Program};

/// How long output is still forwarded after CMD exits.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What each connection runs, and how.
pub(crate) struct Spec {
    pub(crate) program: Program,
    /// `--exec-grace`.
    pub(crate) grace: Duration,
    /// The `--passenv` variables, read once at start.
    pub(crate) parent_env: Vec<(OsString, OsString)>,
    /// Whether the listener is wss:// (`HTTPS=on`).
    pub(crate) tls: bool,
    pub(crate) procs: Procs,
}

/// `--max-procs`: how many commands may run at once. The place is taken
/// after the handshake, before the command starts, and given back once it
/// has been reaped; so the limit is never exceeded. Handshakes are turned
/// away with 503 while no place is free ([`Procs::check`]), so that a
/// client is told before it is let in; one that slips through as the last
/// place is taken is closed with 1013.
#[derive(Clone)]
pub(crate) struct Procs(Option<Arc<Semaphore>>);

impl Procs {
    /// At most `max` at once; `None`: no limit.
    pub(crate) fn new(max: Option<usize>) -> Procs {
        Procs(max.map(|n| Arc::new(Semaphore::new(n))))
    }

    /// Refuses a handshake with 503 while every place is taken.
    pub(crate) fn check(&self) -> Result<(), Reject> {
        match &self.0 {
            Some(places) if places.available_permits() == 0 => Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "every command this server may run at once (--max-procs) is running; try again later",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))),
            _ => Ok(()),
        }
    }

    /// A place for one command, if one is free (`Some(None)`: no limit).
    fn take(&self) -> Option<Option<OwnedSemaphorePermit>> {
        match &self.0 {
            None => Some(None),
            Some(places) => places.clone().try_acquire_owned().ok().map(Some),
        }
    }
}

pub(crate) async fn serve(mut ws: WebSocket<Transport>, opened: Opened, spec: &Spec) -> Result<()> {
    let peer = opened.peer;
    let Some(_place) = spec.procs.take() else {
        opened.log();
        warn!(%peer, "--max-procs commands are running: closing with 1013");
        // Fails only if the client has gone meanwhile.
        let _ = ws
            .close(
                CloseCode::TryAgainLater,
                "too many commands running; try again later",
            )
            .await;
        log_closed(peer, ws.close_received());
        return Ok(());
    };
    let env = cgi::environment(&spec.parent_env, peer, &opened.request, spec.tls);
    let (mut child, stdin, stdout) = exec::spawn(&spec.program, Env::Only(&env))?;
    let grace = spec.grace;
    let pid = child.id();
    opened.log();
    info!(%peer, ?pid, cmd = %spec.program, "command started");
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
