//! Plain `serve` (no mode): each line of stdin goes to every client
//! connected at the time, as a text message (websocat's default).
//!
//! The lines pass through a bounded broadcast channel: a client that falls
//! more than [`BACKLOG`] lines behind misses the oldest ones (the log says
//! how many) rather than holding memory for them, and a line is cut at
//! [`MAX_LINE`](crate::exec::MAX_LINE) bytes.

use std::io::{BufRead, Read};
use std::sync::Arc;

use tokio::sync::broadcast;
use tracing::{info, warn};

/// Lines kept for a client that is slow to take them.
const BACKLOG: usize = 256;

/// Where clients subscribe to our stdin's lines.
#[derive(Clone)]
pub(crate) struct Lines {
    /// Weak, so that subscribers see the end of stdin once the reading
    /// thread (which holds the only strong sender) is done.
    sender: broadcast::WeakSender<Arc<str>>,
}

impl Lines {
    /// Starts reading stdin, on a thread of its own (a blocking read would
    /// hold up the runtime's shutdown).
    pub(crate) fn from_stdin() -> Lines {
        let (sender, _) = broadcast::channel(BACKLOG);
        let lines = Lines {
            sender: sender.downgrade(),
        };
        if in_the_background() {
            // Reading would stop the whole process (SIGTTIN), not just
            // this thread: `dialtone serve ADDR &` must keep serving.
            info!("stdin is the terminal of a background job: not sending it to clients");
            return lines;
        }
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut line = Vec::new();
                match (&mut stdin)
                    .take(crate::exec::MAX_LINE)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("dialtone: reading stdin: {e}");
                        return;
                    }
                }
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                // No client connected is not an error: the line is for
                // those there now.
                let _ = sender.send(String::from_utf8_lossy(text).into());
            }
        });
        lines
    }

    /// The lines from now on.
    pub(crate) fn subscribe(&self) -> Subscription {
        Subscription(self.sender.upgrade().map(|s| s.subscribe()))
    }
}

/// Whether stdin is a terminal whose foreground is another process group
/// (we were started with `&`).
fn in_the_background() -> bool {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    stdin.is_terminal()
        && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|fg| fg != nix::unistd::getpgrp())
}

/// One client's place in the stream of lines.
pub(crate) struct Subscription(Option<broadcast::Receiver<Arc<str>>>);

impl Subscription {
    /// The next line; `None` once at the end of stdin, and after that
    /// never ready again.
    pub(crate) async fn next(&mut self) -> Option<String> {
        let Some(rx) = &mut self.0 else {
            return std::future::pending().await;
        };
        loop {
            match rx.recv().await {
                Ok(line) => return Some(line.to_string()),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "a client was too slow for stdin: lines skipped");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.0 = None;
                    return None;
                }
            }
        }
    }
}
