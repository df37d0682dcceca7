//! A command wired to a WebSocket, shared by `serve --exec` and
//! `dial --exec`: lines it prints become messages, messages become lines on
//! its stdin, and when the connection ends it is stopped gently.
//!
//! Stopping: its stdin is closed first (most commands exit at the end of
//! their input), then it gets a grace period to exit by itself, then
//! SIGTERM, the same grace again, and only then SIGKILL. A filter such as
//! `cat` or `sed` is thus never killed in the middle of its work.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
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

/// The command `--exec` or `--exec-shell` runs.
#[derive(Clone, Debug)]
pub(crate) enum Program {
    /// `--exec PROGRAM ARGS…`: started directly (execve), each argument
    /// passed as it is: nothing in them, or in what a peer sends, is ever
    /// read by a shell.
    Direct(Vec<OsString>),
    /// `--exec-shell CMD`: `sh -c CMD`, for pipelines and redirections.
    Shell(String),
}

impl Program {
    /// The program of `--exec` or `--exec-shell` (clap lets at most one
    /// through), if any.
    pub(crate) fn from_args(direct: Option<&[OsString]>, shell: Option<&str>) -> Option<Program> {
        match (direct, shell) {
            (Some(argv), _) if !argv.is_empty() => Some(Program::Direct(argv.to_vec())),
            (_, Some(cmd)) => Some(Program::Shell(cmd.to_owned())),
            _ => None,
        }
    }

    /// Fails, before anything is served, if a `--exec` program cannot be
    /// found on `PATH`: most likely a shell command line given to `--exec`
    /// (`--exec 'sed -u s/^/x/'`), which is `--exec-shell`'s job now.
    pub(crate) fn check(&self) -> Result<()> {
        let Program::Direct(argv) = self else {
            return Ok(());
        };
        let name = &argv[0];
        if find_program(name).is_some() {
            return Ok(());
        }
        let shown = name.to_string_lossy();
        if shown.contains(char::is_whitespace) {
            anyhow::bail!(
                "--exec {shown:?}: no such program. --exec runs PROGRAM ARGS… without a shell \
                 (write `--exec sed -u s/^/x/`, every argument after --exec is the command's); \
                 for a shell command line use --exec-shell {shown:?}"
            );
        }
        anyhow::bail!("--exec {shown:?}: no such program (looked in PATH)")
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Program::Direct(argv) => {
                let words: Vec<_> = argv.iter().map(|a| a.to_string_lossy()).collect();
                write!(f, "{words:?}")
            }
            Program::Shell(cmd) => write!(f, "sh -c {cmd:?}"),
        }
    }
}

/// Where `name` is: itself if it has a `/`, else the first executable
/// file of that name in `PATH` (as execvp looks).
fn find_program(name: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.as_bytes().contains(&b'/') {
        let path = PathBuf::from(name);
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// The environment a command starts with.
pub(crate) enum Env<'a> {
    /// Ours, plus these variables (`dial --exec`: the user's own command).
    Inherit(&'a [(OsString, OsString)]),
    /// Only these (`serve --exec`: nothing of the server's environment but
    /// what `--passenv` names goes to a command that peers talk to).
    Only(&'a [(OsString, OsString)]),
}

/// Starts `program` with piped stdin and stdout (stderr is ours) and the
/// given environment.
pub(crate) fn spawn(program: &Program, env: Env<'_>) -> Result<(Child, ChildStdin, ChildStdout)> {
    let mut command = match program {
        Program::Direct(argv) => {
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            command
        }
        Program::Shell(cmd) => {
            let mut command = Command::new("sh");
            command.arg("-c").arg(cmd);
            command
        }
    };
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // A backstop: every path stops and reaps it already.
        .kill_on_drop(true);
    let vars = match env {
        Env::Inherit(vars) => vars,
        Env::Only(vars) => {
            command.env_clear();
            vars
        }
    };
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("running {program}"))?;
    match (child.stdin.take(), child.stdout.take()) {
        (Some(stdin), Some(stdout)) => Ok((child, stdin, stdout)),
        _ => anyhow::bail!("{program}: no pipes to the command"),
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
