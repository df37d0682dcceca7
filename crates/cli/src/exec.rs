//! A command wired to a WebSocket, shared by `serve --exec` and
//! `dial --exec`: lines it prints become messages, messages become lines on
//! its stdin, and when the connection ends it is stopped gently.
//!
//! Stopping: its stdin is closed first (most commands exit at the end of
//! their input), then it gets a grace period to exit by itself, then
//! SIGTERM, the same grace again, and only then SIGKILL. A filter such as
//! `cat` or `sed` is thus never killed in the middle of its work.

use std::fmt;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use dialtone::Message;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

/// The longest line sent as one message; a longer one goes in pieces.
pub(crate) const MAX_LINE: u64 = 1 << 20;

/// Starts `sh -c CMD` with piped stdin and stdout (stderr is ours) and the
/// given environment.
pub(crate) fn spawn(cmd: &str, env: &[(&str, String)]) -> Result<(Child, ChildStdin, ChildStdout)> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // A backstop: every path stops and reaps it already.
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    match (child.stdin.take(), child.stdout.take()) {
        (Some(stdin), Some(stdout)) => Ok((child, stdin, stdout)),
        _ => anyhow::bail!("{cmd:?}: no pipes to the command"),
    }
}

/// Writes a received message to the command's stdin as one line. Waits
/// for the command to read, so that one which does not slows the peer
/// down (TCP backpressure) rather than filling memory.
pub(crate) async fn write_line(stdin: &mut ChildStdin, msg: &Message) -> io::Result<()> {
    stdin.write_all(msg.as_payload()).await?;
    stdin.write_all(b"\n").await?;
    stdin.flush().await
}

/// Reads lines from the command's stdout into messages (text, or binary
/// if a line is not UTF-8; without the line ending), until it ends or the
/// receiver is gone.
pub(crate) async fn stdout_to_lines(stdout: ChildStdout, lines: mpsc::Sender<Message>) {
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

/// How a command that was asked to stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It exited within the grace period after its stdin closed.
    ByItself,
    /// It exited after SIGTERM.
    Terminated,
    /// It was still there after SIGTERM and the grace again: SIGKILL.
    Killed,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ended::ByItself => "exited by itself",
            Ended::Terminated => "did not exit within the grace period: terminated (SIGTERM)",
            Ended::Killed => "ignored SIGTERM: killed (SIGKILL)",
        })
    }
}

/// Stops a command whose stdin the caller has closed: waits `grace` for
/// it to exit, then sends SIGTERM and waits `grace` again, then SIGKILL.
pub(crate) async fn stop(child: &mut Child, grace: Duration) -> (io::Result<ExitStatus>, Ended) {
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return (status, Ended::ByItself);
    }
    // `id()` is None only once it has been reaped, which it has not.
    let pid = child.id().and_then(|id| i32::try_from(id).ok());
    if let Some(pid) = pid {
        // Fails only if it exited meanwhile; the wait below tells.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            return (status, Ended::Terminated);
        }
    }
    let _ = child.start_kill();
    (child.wait().await, Ended::Killed)
}
