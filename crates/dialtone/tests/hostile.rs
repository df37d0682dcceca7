//! Hostile peers over loopback: slow handshakes, huge claims, peers that
//! never close, resets mid-frame, half-closed sockets, peers that never
//! read, and ping floods. Each test asserts the outcome and that what we
//! hold stays bounded.

use std::time::{Duration, Instant};

use dialtone::{Acceptor, CloseCode, Dialer, Error, Listener, Message, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HANDSHAKE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [7u8, 1, 2, 3];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    out.extend(key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Connects and completes the handshake by hand; returns the stream with
/// the 101 response consumed.
async fn raw_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(HANDSHAKE.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

/// Reads until EOF or error, with a deadline; returns what was read and
/// whether the peer closed within it.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (out, closed)
}

#[tokio::test]
async fn slowloris_handshake_is_cut_at_the_handshake_timeout() {
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(Acceptor::new().handshake_timeout(Duration::from_millis(400)));
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { listener.accept().await.unwrap().handshake().await });
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // One byte every 50 ms: the whole request would take seconds.
    for b in HANDSHAKE.bytes().take(20) {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = server.await.unwrap();
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    let (_, closed) = read_to_close(&mut s, Duration::from_secs(2)).await;
    assert!(closed, "the socket is dropped after the timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_clients_do_not_stop_a_normal_one() {
    let _ = rlimit::increase_nofile_limit(8192);
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(Acceptor::new().handshake_timeout(Duration::from_secs(5)));
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok(incoming) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if let Ok((mut ws, _)) = incoming.handshake().await {
                    while let Some(Ok(msg)) = ws.recv().await {
                        if msg.is_data() {
                            let _ = ws.send(msg).await;
                        }
                    }
                }
            });
        }
    });
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    let (mut ws, _) = Dialer::new()
        .timeout(Duration::from_secs(3))
        .dial(&format!("ws://{addr}/"))
        .await
        .expect("a normal client gets through");
    ws.send("hi").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(slow);
}

#[tokio::test]
async fn a_frame_claiming_2_pow_63_bytes_gets_1009_at_once() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        ws.recv().await
    });
    let mut s = raw_client(addr).await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend(((1u64 << 63) - 1).to_be_bytes());
    header.extend([1, 2, 3, 4]);
    s.write_all(&header).await.unwrap();
    let (bytes, closed) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(closed);
    assert_eq!(bytes[0], 0x88);
    assert_eq!(u16::from_be_bytes([bytes[2], bytes[3]]), 1009);
    let got = server.await.unwrap();
    assert!(matches!(got, Some(Err(Error::Protocol(_)))), "{got:?}");
}

#[tokio::test]
async fn a_peer_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap().with_acceptor(
        Acceptor::new().timeouts(Timeouts::default().close(Duration::from_millis(300))),
    );
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        let started = Instant::now();
        let answer = ws.close(CloseCode::Normal, "bye").await;
        (answer, started.elapsed())
    });
    let mut s = raw_client(addr).await;
    // Read the close frame but never answer it, never close.
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(buf[0], 0x88, "{:?}", &buf[..n]);
    let (answer, elapsed) = server.await.unwrap();
    let answer = answer.unwrap().unwrap();
    assert_eq!(answer.code, CloseCode::Abruptly);
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    let (_, closed) = read_to_close(&mut s, Duration::from_secs(2)).await;
    assert!(closed, "the socket was dropped");
}

#[tokio::test]
async fn a_reset_in_the_middle_of_a_frame_is_reported_not_panicked() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        let mut seen = Vec::new();
        while let Some(msg) = ws.recv().await {
            seen.push(msg.map_err(|e| e.to_string()));
        }
        (seen, ws.close_received().cloned())
    });
    let s = raw_client(addr).await;
    let mut s = s;
    let f = frame(0x2, &[9u8; 1000]);
    s.write_all(&f[..500]).await.unwrap();
    #[allow(deprecated)] // a zero linger is the point: drop sends a RST
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s); // RST
    let (seen, close) = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert!(seen
        .iter()
        .all(|m| !matches!(m, Ok(Message::Binary(_)) | Ok(Message::Text(_)))));
    assert_eq!(close.unwrap().code, CloseCode::Abruptly);
}

#[tokio::test]
async fn a_half_closed_peer_gets_its_close_answered() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        let mut last = None;
        while let Some(msg) = ws.recv().await {
            last = Some(msg.unwrap());
        }
        last
    });
    let mut s = raw_client(addr).await;
    s.write_all(&frame(0x1, b"last words")).await.unwrap();
    s.write_all(&frame(0x8, &[0x03, 0xe8])).await.unwrap();
    s.shutdown().await.unwrap(); // half-close: we still read
    let (bytes, closed) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(closed);
    assert_eq!(&bytes[..4], &[0x88, 0x02, 0x03, 0xe8], "close echoed");
    let last = server.await.unwrap();
    assert!(matches!(last, Some(Message::Close(c)) if c.code == CloseCode::Normal));
}

#[tokio::test]
async fn a_peer_that_stops_reading_makes_send_wait_without_growing_memory() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::watch::channel((0usize, 0usize));
    tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        let chunk = vec![0u8; 256 * 1024];
        let mut sent = 0usize;
        loop {
            if ws.send(chunk.clone()).await.is_err() {
                return;
            }
            sent += 1;
            let _ = tx.send((sent, ws.connection().pending_output()));
        }
    });
    let _s = raw_client(addr).await; // never reads
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (sent_a, _) = *rx.borrow_and_update();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent_b, pending) = *rx.borrow();
    assert_eq!(sent_a, sent_b, "send waits once the peer stops reading");
    // What the kernel buffers is the kernel's; we hold at most one message.
    assert!(pending <= 256 * 1024 + 16, "pending output {pending}");
    assert!(sent_b * 256 * 1024 < 64 << 20, "sent {sent_b} chunks");
}

#[tokio::test]
async fn a_ping_flood_does_not_grow_our_queue() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        let mut pings = 0u32;
        let mut max_pending = 0;
        while let Some(Ok(msg)) = ws.recv().await {
            if let Message::Ping(_) = msg {
                pings += 1;
                max_pending = max_pending.max(ws.connection().pending_output());
            }
            if let Message::Text(_) = msg {
                break;
            }
        }
        (pings, max_pending)
    });
    let mut s = raw_client(addr).await;
    // 100,000 pings, never reading a pong.
    let ping = frame(0x9, b"0123456789abcdef");
    let mut batch = Vec::with_capacity(ping.len() * 1000);
    for _ in 0..1000 {
        batch.extend_from_slice(&ping);
    }
    for _ in 0..100 {
        s.write_all(&batch).await.unwrap();
    }
    s.write_all(&frame(0x1, b"end")).await.unwrap();
    let (pings, max_pending) = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pings, 100_000);
    // 32 pongs of 18 bytes at most, whatever the flood's length.
    assert!(max_pending <= 32 * 18, "pongs waiting: {max_pending} bytes");
}

#[tokio::test]
async fn close_is_bounded_even_when_the_peer_does_not_read() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap().with_acceptor(
        Acceptor::new().timeouts(Timeouts::default().close(Duration::from_millis(300))),
    );
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        // Fill the socket buffers: the peer never reads.
        let chunk = vec![0u8; 1 << 20];
        while tokio::time::timeout(Duration::from_millis(300), ws.send(chunk.clone()))
            .await
            .is_ok()
        {}
        let started = Instant::now();
        let answer = ws.close(CloseCode::GoingAway, "").await;
        (answer.map(|c| c.map(|c| c.code)), started.elapsed())
    });
    let _s = raw_client(addr).await;
    let (answer, elapsed) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("close returned")
        .unwrap();
    assert_eq!(answer.unwrap(), Some(CloseCode::Abruptly));
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn the_close_answer_is_written_before_the_close_is_reported() {
    // An application that stops at the peer's close must still answer it.
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        while let Some(Ok(msg)) = ws.recv().await {
            if let Message::Close(_) = msg {
                return; // drops the socket at once
            }
        }
    });
    let mut s = raw_client(addr).await;
    s.write_all(&frame(0x8, &[0x0f, 0xa0, b'x'])).await.unwrap();
    let (bytes, closed) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(closed);
    assert_eq!(&bytes[..5], &[0x88, 0x03, 0x0f, 0xa0, b'x']);
}

#[tokio::test]
async fn handshakes_past_the_limit_get_503_and_room_comes_back() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap().with_acceptor(
        Acceptor::new()
            .max_concurrent_handshakes(2)
            .handshake_timeout(Duration::from_millis(500)),
    );
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok((mut ws, _)) = incoming.handshake().await {
                    while let Some(Ok(_)) = ws.recv().await {}
                }
            });
        }
    });
    // Two slow clients hold both places.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = Dialer::new()
        .dial(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Rejected(ref r) if r.status.as_u16() == 503),
        "{err:?}"
    );
    // Once their handshake timeout frees the places, a client gets in.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let ok = Dialer::new().dial(&format!("ws://{addr}/")).await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    drop(slow);
}

#[tokio::test]
async fn a_protocol_error_is_answered_with_1002_before_it_is_returned() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        let got = ws.recv().await;
        // Hold the socket until the peer has checked what it received:
        // nothing written after this point counts.
        let _ = rx.await;
        drop(ws);
        got.map(|r| r.map_err(|e| e.to_string()))
    });
    let mut s = raw_client(addr).await;
    s.write_all(&[0x83, 0x80, 1, 2, 3, 4]).await.unwrap(); // reserved opcode 0x3
    let mut head = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1002);
    tx.send(()).unwrap();
    let got = server.await.unwrap();
    assert!(
        matches!(&got, Some(Err(e)) if e.contains("opcode")),
        "{got:?}"
    );
}
