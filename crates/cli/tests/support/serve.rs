//! A running `dialtone serve` (the std process API, so that tests can read
//! its log from a thread while they dial it), shared by the `serve` and
//! `security` tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Long enough for anything here on a loaded machine; only a hang hits it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running `dialtone -v serve 127.0.0.1:0 ARGS…`, killed when dropped.
pub struct Server {
    pub child: Child,
    /// serve's stdin, for the tests of plain `serve` (else /dev/null).
    pub stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Self::spawn("-v", args, Stdio::null(), &[])
    }

    pub fn start_with(verbosity: &str, args: &[&str]) -> Server {
        Self::spawn(verbosity, args, Stdio::null(), &[])
    }

    /// With a pipe to serve's stdin in `stdin`.
    pub fn start_with_stdin(args: &[&str]) -> Server {
        Self::spawn("-v", args, Stdio::piped(), &[])
    }

    /// With these variables added to serve's environment.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn("-v", args, Stdio::null(), env)
    }

    fn spawn(verbosity: &str, args: &[&str], stdin: Stdio, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dialtone"))
            .args([verbosity, "serve", "127.0.0.1:0"])
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dialtone serve");
        let stdin = child.stdin.take();
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("listening on ws://") {
                    let _ = addr_tx.send(rest.trim_end_matches('/').to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = addr_rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("the server never said where it listens: {log:?}"))
            .parse()
            .expect("an address");
        Server {
            child,
            stdin,
            addr,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// What a page served by this server would send as its `Origin`.
    pub fn own_origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has `count` lines containing all of `needles`;
    /// returns the whole log.
    pub async fn wait_for_log(&self, needles: &[&str], count: usize) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let log = self.log();
            let found = log
                .lines()
                .filter(|line| needles.iter().all(|n| line.contains(n)))
                .count();
            if found >= count {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} log lines with {needles:?} never came; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a log line contains all of `needles`; returns that line.
    pub async fn wait_for_log_line(&self, needles: &[&str]) -> String {
        let log = self.wait_for_log(needles, 1).await;
        log.lines()
            .find(|line| needles.iter().all(|n| line.contains(n)))
            .expect("wait_for_log saw it")
            .to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
