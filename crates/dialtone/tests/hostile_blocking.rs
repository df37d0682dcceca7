//! The hostile peers of `hostile.rs`, against the blocking face: a peer that
//! never answers our close, a protocol error (answered with 1002 before the
//! error is returned), a peer that closes (answered before the close is
//! returned), a peer that stops reading, a reset mid-frame, a slowloris
//! handshake. Each server is a `blocking::WebSocket` on its own thread; the
//! peer is a raw `std::net::TcpStream` speaking bytes by hand.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use dialtone::blocking::WebSocket;
use dialtone::{Acceptor, CloseCode, Error, Message, Timeouts};

const HANDSHAKE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

const MS: Duration = Duration::from_millis(1);

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [7u8, 1, 2, 3];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend((n as u16).to_be_bytes());
        }
    }
    out.extend(key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A blocking server for one connection: `serve` runs on the accepted
/// socket, on its own thread; its result comes back through the handle.
fn server<T: Send + 'static>(
    acceptor: Acceptor,
    serve: impl FnOnce(WebSocket<TcpStream>) -> T + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<T>) {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (stream, _) = tcp.accept().unwrap();
        let (ws, _) = acceptor.accept_blocking(stream).unwrap();
        serve(ws)
    });
    (addr, handle)
}

/// Connects and completes the handshake by hand.
fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(HANDSHAKE.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

/// Reads until the peer closes or `within` passes; returns what was read
/// and whether the peer closed.
fn read_to_close(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

fn short_close() -> Acceptor {
    Acceptor::new().timeouts(Timeouts::default().close(300 * MS))
}

#[test]
fn blocking_a_peer_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let (addr, server) = server(short_close(), |mut ws| {
        let started = Instant::now();
        let answer = ws.close(CloseCode::Normal, "bye");
        (answer.map(|c| c.map(|c| c.code)).ok(), started.elapsed())
    });
    let mut s = raw_client(addr);
    // Read the close frame but never answer it, never close.
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(buf[0], 0x88, "{:?}", &buf[..n]);
    let (answer, elapsed) = server.join().unwrap();
    assert_eq!(answer, Some(Some(CloseCode::Abruptly)));
    assert!(
        elapsed >= 250 * MS && elapsed < 2000 * MS,
        "closed after {elapsed:?}"
    );
    let (_, closed) = read_to_close(&mut s, Duration::from_secs(2));
    assert!(closed, "the socket was dropped");
}

#[test]
fn blocking_a_protocol_error_is_answered_with_1002_before_it_is_returned() {
    let (tx, rx) = mpsc::channel();
    let (addr, server) = server(Acceptor::new(), move |mut ws| {
        let got = ws.recv();
        // Hold the socket until the peer has checked what it received:
        // nothing written after this point counts.
        let _ = rx.recv();
        drop(ws);
        got.map(|r| r.map_err(|e| e.to_string()))
    });
    let mut s = raw_client(addr);
    s.write_all(&[0x83, 0x80, 1, 2, 3, 4]).unwrap(); // reserved opcode 0x3
    let mut head = [0u8; 4];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1002);
    tx.send(()).unwrap();
    let got = server.join().unwrap();
    assert!(
        matches!(&got, Some(Err(e)) if e.contains("opcode")),
        "{got:?}"
    );
}

#[test]
fn blocking_the_close_answer_is_written_before_the_close_is_returned() {
    let (tx, rx) = mpsc::channel();
    let (addr, server) = server(Acceptor::new(), move |mut ws| {
        let got = ws.recv();
        let _ = rx.recv();
        drop(ws);
        got.map(|r| r.unwrap())
    });
    let mut s = raw_client(addr);
    s.write_all(&frame(0x8, &[0x0f, 0xa0, b'x'])).unwrap();
    let mut echo = [0u8; 5];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x88, 0x03, 0x0f, 0xa0, b'x']);
    tx.send(()).unwrap();
    let got = server.join().unwrap();
    assert!(
        matches!(&got, Some(Message::Close(c)) if c.code == CloseCode::from(4000)),
        "{got:?}"
    );
}

#[test]
fn blocking_a_half_closed_peer_gets_its_close_answered_and_the_server_closes_first() {
    let (addr, server) = server(Acceptor::new(), |mut ws| {
        let mut seen = Vec::new();
        while let Some(msg) = ws.recv() {
            seen.push(msg.unwrap());
        }
        seen
    });
    let mut s = raw_client(addr);
    s.write_all(&frame(0x1, b"last words")).unwrap();
    s.write_all(&frame(0x8, &[0x03, 0xe8])).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap(); // half-close: we still read
    let (bytes, closed) = read_to_close(&mut s, Duration::from_secs(5));
    assert!(closed, "the server closed the transport");
    assert_eq!(&bytes[..4], &[0x88, 0x02, 0x03, 0xe8], "close echoed");
    let seen = server.join().unwrap();
    assert_eq!(seen[0], Message::text("last words"));
    assert!(matches!(&seen[1], Message::Close(c) if c.code == CloseCode::Normal));
}

#[test]
fn blocking_close_is_bounded_even_when_the_peer_does_not_read() {
    let (addr, server) = server(short_close(), |mut ws| {
        // More than the socket buffers hold, queued, then a close behind it.
        ws.feed(vec![0u8; 32 << 20]).unwrap();
        let started = Instant::now();
        let answer = ws.close(CloseCode::GoingAway, "");
        (answer.map(|c| c.map(|c| c.code)).ok(), started.elapsed())
    });
    let _s = raw_client(addr); // never reads
    let (answer, elapsed) = server.join().unwrap();
    assert_eq!(answer, Some(Some(CloseCode::Abruptly)));
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn blocking_a_peer_that_stops_reading_makes_send_wait_without_growing_memory() {
    let (tx, rx) = mpsc::channel();
    let (addr, _server) = server(Acceptor::new(), move |mut ws| {
        let chunk = vec![0u8; 256 * 1024];
        let mut sent = 0usize;
        while ws.send(chunk.clone()).is_ok() {
            sent += 1;
            if tx.send((sent, ws.connection().pending_output())).is_err() {
                return;
            }
        }
    });
    let _s = raw_client(addr); // never reads
    thread::sleep(1500 * MS);
    let sent_a = rx.try_iter().last().map_or(0, |(n, _)| n);
    thread::sleep(500 * MS);
    let (sent_b, pending) = rx.try_iter().last().unwrap_or((sent_a, 0));
    assert_eq!(sent_a, sent_b, "send waits once the peer stops reading");
    assert!(pending <= 256 * 1024 + 16, "pending output {pending}");
    assert!(sent_b * 256 * 1024 < 64 << 20, "sent {sent_b} chunks");
}

#[test]
fn blocking_a_reset_in_the_middle_of_a_frame_is_reported_not_panicked() {
    let (addr, server) = server(Acceptor::new(), |mut ws| {
        let mut seen = Vec::new();
        while let Some(msg) = ws.recv() {
            seen.push(msg.map_err(|e| e.to_string()));
        }
        (seen, ws.close_received().cloned())
    });
    let mut s = raw_client(addr);
    let f = frame(0x2, &[9u8; 1000]);
    s.write_all(&f[..500]).unwrap();
    thread::sleep(50 * MS);
    // A zero linger makes the close a RST (std has no setter: tokio's).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let _entered = rt.enter();
    s.set_nonblocking(true).unwrap();
    let s = tokio::net::TcpStream::from_std(s).unwrap();
    #[allow(deprecated)] // a zero linger is the point: drop sends a RST
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
    let (seen, close) = server.join().unwrap();
    assert!(seen
        .iter()
        .all(|m| !matches!(m, Ok(Message::Binary(_)) | Ok(Message::Text(_)))));
    assert_eq!(close.unwrap().code, CloseCode::Abruptly);
}

#[test]
fn blocking_slowloris_handshake_is_cut_at_the_handshake_timeout() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = tcp.accept().unwrap();
        let acceptor = Acceptor::new().handshake_timeout(400 * MS);
        let started = Instant::now();
        let result = acceptor.accept_blocking(stream).map(|_| ());
        (result, started.elapsed())
    });
    let mut s = TcpStream::connect(addr).unwrap();
    // One byte every 50 ms: the whole request would take seconds.
    for b in HANDSHAKE.bytes().take(20) {
        if s.write_all(&[b]).is_err() {
            break;
        }
        thread::sleep(50 * MS);
    }
    let (result, elapsed) = server.join().unwrap();
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    let (_, closed) = read_to_close(&mut s, Duration::from_secs(2));
    assert!(closed, "the socket is dropped after the timeout");
}
