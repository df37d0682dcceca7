//! Running the real `dialtone` binary, and servers to point it at, all on
//! 127.0.0.1.

#![allow(dead_code)] // each test file uses part of it

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
