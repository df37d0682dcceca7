//! Running the real `dialtone` binary, and servers to point it at, all on
//! 127.0.0.1.

#![allow(dead_code)] // each test file uses part of it

pub mod serve;

use std::future::Future;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use dialtone::{Acceptor, Config, Deflate, Listener, Transport, WebSocket};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// Every test step is bounded, so that a hang fails instead of blocking
/// the suite.
pub const LIMIT: Duration = Duration::from_secs(10);

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {LIMIT:?}"))
}

/// `dialtone ARGS` with piped stdin, stdout and stderr, killed if the test
/// drops it.
pub fn dialtone(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning dialtone")
}

/// What a finished run left.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.status.code().expect("exited, not killed by a signal")
    }
}

/// Runs `dialtone ARGS` with `stdin` as its input (then end of input).
pub async fn run(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = dialtone(args);
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    finish(child).await
}

/// Waits for `child` to exit and collects its output.
pub async fn finish(child: Child) -> Run {
    let out = within("dialtone to exit", child.wait_with_output())
        .await
        .unwrap();
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A listener on 127.0.0.1 with permessage-deflate and subprotocol `chat`
/// on offer, whose one connection `serve` handles; its result comes back
/// through the join handle.
pub async fn one_connection<F, Fut, T>(serve: F) -> (String, tokio::task::JoinHandle<T>)
where
    F: FnOnce(WebSocket<Transport>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = Listener::bind("127.0.0.1:0").await.unwrap().with_acceptor(
        Acceptor::new()
            .config(Config::default().deflate(Deflate::default()))
            .protocol("chat"),
    );
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let incoming = listener.accept().await.unwrap();
        let (ws, _) = incoming.handshake().await.unwrap();
        serve(ws).await
    });
    (url, server)
}

/// A raw TCP server for one connection, handed to `serve` as accepted.
pub async fn tcp_server<F, Fut, T>(serve: F) -> (String, tokio::task::JoinHandle<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        serve(tcp).await
    });
    (addr, server)
}

/// A raw TCP server for one connection: reads the request head, then hands
/// the stream and the head to `serve`.
pub async fn raw_server<F, Fut, T>(serve: F) -> (String, tokio::task::JoinHandle<T>)
where
    F: FnOnce(TcpStream, String) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let (addr, server) = tcp_server(|mut tcp| async move {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        serve(tcp, String::from_utf8(head).unwrap()).await
    })
    .await;
    (format!("ws://{addr}/"), server)
}

/// Starts `dialtone serve 127.0.0.1:0 --echo` and returns it and the URL
/// it says it listens on.
pub async fn serve_echo() -> (Child, String) {
    let mut child = dialtone(&["serve", "127.0.0.1:0", "--echo"]);
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = within("serve to print its address", async {
        loop {
            let line = stderr.next_line().await.unwrap().expect("serve exited");
            if let Some(at) = line.find("ws://") {
                let url: String = line[at..].split_whitespace().next().unwrap().into();
                break url;
            }
        }
    })
    .await;
    // Keep draining stderr so that serve never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    (child, url)
}

/// Where the provisioned test programs live: `DIALTONE_TEST_ENV` if set,
/// else `test-env` in the target dir (`CARGO_TARGET_DIR` if set, else the
/// target dir this test binary was built in). `cargo xtask test` fills it.
pub fn test_env() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(dir) = std::env::var_os("DIALTONE_TEST_ENV") {
        return PathBuf::from(dir);
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        // `<target>/tmp`, set by cargo for integration tests.
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(".."),
    };
    target.join("test-env")
}

/// A program the test needs from the test env; missing, the test fails
/// and says how to get it.
pub fn provisioned(relative: &str, what: &str) -> std::path::PathBuf {
    let path = test_env().join(relative);
    assert!(
        path.exists(),
        "{} is missing: this test needs {what}. `cargo xtask test` provisions it \
         (or by hand: see the test's module docs)",
        path.display()
    );
    path
}

/// The directory of this crate's test scripts.
pub fn script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/servers")
        .join(name)
}

/// A peer server started from a script: it prints its port on stdout and
/// exits when its stdin closes (and is killed when dropped).
pub struct ScriptServer {
    child: Child,
    pub port: u16,
}

impl ScriptServer {
    pub async fn start(mut command: Command, what: &str) -> ScriptServer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = within(&format!("{what} to print its port"), stdout.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{what} exited without printing its port"));
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{what} printed {line:?}, not a port"));
        ScriptServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts `dialtone serve 127.0.0.1:0 ARGS` and returns it and the URL it
/// says it listens on; the rest of its stderr goes to ours.
pub async fn serve(args: &[&str]) -> (Child, String) {
    let mut all = vec!["serve", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut child = dialtone(&all);
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = within("serve to print its address", async {
        loop {
            let line = stderr.next_line().await.unwrap().expect("serve exited");
            if let Some(at) = line.find("ws://") {
                let url: String = line[at..].split_whitespace().next().unwrap().into();
                break url;
            }
        }
    })
    .await;
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            eprintln!("serve: {line}");
        }
    });
    (child, url)
}
