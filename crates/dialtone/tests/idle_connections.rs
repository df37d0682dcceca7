//! 10,000 idle connections on one listener: all complete their handshake,
//! all still answer afterwards, and the memory each costs is measured from
//! the process's resident set (reported; bounded loosely so a regression
//! that multiplies it fails).

use std::time::Duration;

use dialtone::Listener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HANDSHAKE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const RESPONSE_LEN: usize = 129; // the 101 answer for that key, no extensions

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Connects from 127.0.0.(2 + i / 20000) so that ports never run short.
async fn connect(addr: std::net::SocketAddr, i: usize) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i / 20_000) as u8);
    socket.bind((source, 0).into())?;
    socket.connect(addr).await
}

const N: usize = 10_000;

/// The client side, run in a child process (so each process holds N
/// descriptors, under the usual 20,000 limit, and the parent's resident set
/// measures the server side alone): connects N clients, completes their
/// handshakes, echoes a probe through every 997th, prints "ok" and waits for
/// its stdin to close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by ten_thousand_idle_connections_fit_and_stay_served"]
async fn idle_clients_child() {
    let Ok(addr) = std::env::var("DIALTONE_IDLE_TARGET") else {
        return;
    };
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let _ = rlimit::increase_nofile_limit(N as u64 + 200);
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = connect(addr, i).await.unwrap();
        s.write_all(HANDSHAKE).await.unwrap();
        clients.push(s);
    }
    for s in clients.iter_mut() {
        let mut head = [0u8; RESPONSE_LEN];
        tokio::time::timeout(Duration::from_secs(60), s.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        assert!(head.starts_with(b"HTTP/1.1 101 "));
    }
    println!("handshakes done");
    // Every one of them is still served: a masked "hi" comes back.
    for s in clients.iter_mut().step_by(997) {
        s.write_all(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2])
            .await
            .unwrap();
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, [0x81, 0x02, b'h', b'i']);
    }
    println!("ok");
    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    let _ = stdin.read_to_end(&mut sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_fit_and_stay_served() {
    let _ = rlimit::increase_nofile_limit(N as u64 + 200);
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok(incoming) = listener.accept().await else {
                return;
            };
            let done = done_tx.clone();
            tokio::spawn(async move {
                let Ok((mut ws, _)) = incoming.handshake().await else {
                    return;
                };
                let _ = done.send(());
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let before = rss_bytes();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "idle_clients_child", "--nocapture"])
        .env("DIALTONE_IDLE_TARGET", addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..N {
        tokio::time::timeout(Duration::from_secs(60), done_rx.recv())
            .await
            .expect("every handshake completes")
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_connection = rss_bytes().saturating_sub(before) / N;
    eprintln!("idle connections: {N}, server side about {per_connection} bytes each (resident)");
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 1024];
        while !out.contains("\nok\n") {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client child ended early: {out}");
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("the probes come back");
    drop(child.stdin.take());
    let status = child.wait().await.unwrap();
    assert!(status.success());
    // Loose bound: an idle connection costs a few KiB (buffers, task, socket).
    assert!(per_connection < 64 * 1024, "{per_connection} bytes each");
}
