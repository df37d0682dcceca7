//! The io_uring face (`dialtone::uring`, feature `io-uring`) against
//! hostile and plain peers, over raw TCP on loopback: the guarantees of the
//! tokio face (limits, timeouts, the close handshake, backpressure) hold.
//!
//! Where the kernel has no io_uring (missing, or disabled by
//! `kernel.io_uring_disabled`), each test says so and skips: the one skip
//! the project allows.

#![cfg(all(feature = "io-uring", target_os = "linux"))]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use dialtone::uring::{Handler, Server, Ws};
use dialtone::{Acceptor, Config, Message, Timeouts};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ws: &mut Ws<'_>, msg: Message) {
        if msg.is_data() {
            let _ = ws.send(&msg);
        }
    }
}

/// An echo server on its own thread (it lives as long as the test
/// process), or `None` where io_uring cannot be used.
fn server(acceptor: Acceptor) -> Option<SocketAddr> {
    serve_with(acceptor, 1, || Echo)
}

/// A server of `threads` rings whose handlers `make` makes.
fn serve_with<H: Handler + 'static>(
    acceptor: Acceptor,
    threads: usize,
    make: impl Fn() -> H + Send + Sync + 'static,
) -> Option<SocketAddr> {
    if let Err(e) = dialtone::uring::supported() {
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
        eprintln!(
            "SKIP: io_uring is not available here ({e}; kernel.io_uring_disabled = {disabled})"
        );
        return None;
    }
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), threads)
        .expect("bind")
        .with_acceptor(acceptor);
    let addr = server.local_addr().expect("local_addr");
    std::thread::spawn(move || server.run(make).expect("server ring"));
    Some(addr)
}

const REQUEST: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A raw TCP client past the handshake.
fn open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(REQUEST.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    s
}

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
}

/// One server frame: (opcode, payload); `None` at the end of the stream.
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    match s.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("read: {e}"),
    }
    assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    Some((head[0] & 0x0F, payload))
}

/// Reads until the server closes the TCP connection (EOF or reset).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// A deterministic pseudo-random payload.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn echoes_messages_from_0_bytes_to_1_mib_intact() {
    let Some(addr) = server(Acceptor::new()) else {
        return;
    };
    let mut s = open(addr);
    for (i, len) in [0, 1, 125, 126, 4095, 4096, 65535, 65536, 100_000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let data = payload(len, i as u64 + 1);
        s.write_all(&frame(0x2, &data)).unwrap();
        let (op, got) = read_frame(&mut s).expect("echo");
        assert_eq!(op, 0x2, "binary of {len} B");
        assert!(got == data, "binary of {len} B came back changed");
        let text: String = data.iter().map(|b| char::from(b'a' + b % 26)).collect();
        s.write_all(&frame(0x1, text.as_bytes())).unwrap();
        let (op, got) = read_frame(&mut s).expect("echo");
        assert_eq!(op, 0x1, "text of {len} B");
        assert!(got == text.as_bytes(), "text of {len} B came back changed");
    }
    // Several messages in one write come back in order.
    let burst: Vec<u8> = (0..50u8).flat_map(|i| frame(0x2, &[i; 20])).collect();
    s.write_all(&burst).unwrap();
    for i in 0..50u8 {
        assert_eq!(read_frame(&mut s), Some((0x2, vec![i; 20])));
    }
}

#[test]
fn close_handshake_is_answered_and_server_closes_tcp_first() {
    let Some(addr) = server(Acceptor::new()) else {
        return;
    };
    let mut s = open(addr);
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    s.write_all(&frame(0x8, &close)).unwrap();
    let (op, payload) = read_frame(&mut s).expect("close frame");
    assert_eq!(op, 0x8);
    assert_eq!(&payload[..2], &1000u16.to_be_bytes(), "the code is echoed");
    // The client has not closed: the end of the stream is the server's FIN.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the server closes cleanly");
    assert!(rest.is_empty(), "nothing after the close frame");
}

#[test]
fn slowloris_handshake_is_dropped_after_the_handshake_timeout() {
    let acceptor = Acceptor::new().handshake_timeout(Duration::from_millis(500));
    let Some(addr) = server(acceptor) else {
        return;
    };
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let mut dropped = false;
    // One byte of the request every 100 ms: it would take 15 s to finish.
    for &b in REQUEST.as_bytes() {
        if s.write_all(&[b]).is_err() || closed_by_server(&mut s) {
            dropped = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    assert!(dropped, "a client trickling its handshake was not dropped");
}

#[test]
fn huge_frame_claim_is_closed_with_1009() {
    let Some(addr) = server(Acceptor::new()) else {
        return;
    };
    let mut s = open(addr);
    // A binary frame announcing 2^40 bytes, and only its header.
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&(1u64 << 40).to_be_bytes());
    f.extend_from_slice(&KEY);
    s.write_all(&f).unwrap();
    let (op, payload) = read_frame(&mut s).expect("close frame");
    assert_eq!(op, 0x8);
    assert_eq!(&payload[..2], &1009u16.to_be_bytes());
    assert!(closed_by_server(&mut s), "the server closes after failing");
}

#[test]
fn peer_that_stops_reading_is_not_read_from_and_is_dropped_after_the_timeouts() {
    let timeouts = Timeouts::default()
        .idle(Duration::from_secs(1))
        .close(Duration::from_secs(1));
    let Some(addr) = server(Acceptor::new().config(Config::default().timeouts(timeouts))) else {
        return;
    };
    let mut s = open(addr);
    s.set_nonblocking(true).unwrap();
    let msg = frame(0x2, &payload(64 * 1024, 7));
    let mut sent = 0usize;
    let mut blocked_since: Option<Instant> = None;
    // Send echoes and never read them: once the server stops reading, the
    // writes block (or fail, once it dropped the connection).
    let mut offset = 0;
    loop {
        match s.write(&msg[offset..]) {
            Ok(n) => {
                sent += n;
                offset = (offset + n) % msg.len();
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(1500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => break, // dropped already
        }
        assert!(
            sent < 256 << 20,
            "the server kept reading from a peer that does not read"
        );
    }
    // Kernel buffers on both sides plus the server's bound, not more.
    assert!(
        sent < 64 << 20,
        "{sent} bytes taken from a peer that does not read"
    );
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    assert!(
        closed_by_server(&mut s),
        "a peer that does not read was not dropped after the idle and close timeouts"
    );
}

#[test]
fn ping_flood_is_answered_without_unbounded_growth() {
    let Some(addr) = server(Acceptor::new()) else {
        return;
    };
    let mut s = open(addr);
    const PINGS: usize = 300_000;
    let mut writer = s.try_clone().unwrap();
    // Written without reading a pong: a server that queued every pong
    // would hold them all (39 MB), one that stops reading would block this.
    let flood = std::thread::spawn(move || {
        let ping = frame(0x9, &[b'p'; 125]);
        let batch: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 1000)
            .collect();
        for _ in 0..PINGS / 1000 {
            writer.write_all(&batch).unwrap();
        }
        writer.write_all(&frame(0x1, b"after the flood")).unwrap();
    });
    flood.join().expect("the server kept reading the pings");
    let mut pongs = 0;
    loop {
        let (op, payload) = read_frame(&mut s).expect("frames until the echo");
        match op {
            0xA => {
                assert_eq!(payload, [b'p'; 125]);
                pongs += 1;
            }
            0x1 => {
                assert_eq!(payload, b"after the flood");
                break;
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    assert!(pongs > 0, "pings were not answered");
    assert!(
        pongs < PINGS * 9 / 10,
        "{pongs} pongs: they were not bounded"
    );
}

/// A dialed connection: sends `sizes`, checks each echo, then closes.
#[derive(Default)]
struct Prober {
    sizes: Vec<usize>,
    echoed: usize,
    opened: bool,
    closed: Option<Option<dialtone::CloseFrame>>,
}

impl Handler for Prober {
    fn on_open(&mut self, ws: &mut Ws<'_>, request: Option<&dialtone::http::Request<()>>) {
        assert!(request.is_none(), "a dialed connection has no request");
        self.opened = true;
        for (i, &len) in self.sizes.iter().enumerate() {
            ws.send(&Message::binary(payload(len, i as u64 + 1)))
                .unwrap();
        }
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, msg: Message) {
        let i = self.echoed;
        assert_eq!(msg, Message::binary(payload(self.sizes[i], i as u64 + 1)));
        self.echoed += 1;
        if self.echoed == self.sizes.len() {
            ws.close(dialtone::CloseCode::Normal, "done").unwrap();
        }
    }

    fn on_close(&mut self, _: dialtone::uring::ConnId, close: Option<&dialtone::CloseFrame>) {
        self.closed = Some(close.cloned());
    }
}

#[test]
fn client_dials_echoes_and_closes_with_the_servers_answer() {
    let Some(addr) = server(Acceptor::new()) else {
        return;
    };
    let mut client = dialtone::uring::Client::new(Config::default());
    client.connect(&format!("ws://{addr}/echo")).unwrap();
    let sizes = vec![0, 20, 1000, 70_000, 1 << 20, 5];
    let prober = Prober {
        sizes: sizes.clone(),
        ..Prober::default()
    };
    let prober = client.run(prober).expect("client ring");
    assert!(prober.opened);
    assert_eq!(prober.echoed, sizes.len());
    let close = prober.closed.expect("on_close").expect("opened");
    assert_eq!(
        close.code,
        dialtone::CloseCode::Normal,
        "the server echoes our code"
    );
}

#[test]
fn client_reports_a_refused_handshake_as_never_opened() {
    let refusing = Acceptor::new().on_request(|_, _| {
        Err(dialtone::Reject::new(
            dialtone::http::StatusCode::FORBIDDEN,
            "no",
        ))
    });
    let Some(addr) = server(refusing) else {
        return;
    };
    let mut client = dialtone::uring::Client::new(Config::default());
    client.connect(&format!("ws://{addr}/")).unwrap();
    let prober = client.run(Prober::default()).expect("client ring");
    assert!(!prober.opened);
    assert_eq!(prober.closed, Some(None));
}

#[test]
fn request_that_arrives_with_the_clients_end_is_still_answered() {
    let Some(addr) = server(Acceptor::new()) else {
        return;
    };
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(REQUEST.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .expect("the answer, then the end");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
}

/// Closes each connection at its first message.
struct CloseAtFirst;

impl Handler for CloseAtFirst {
    fn on_message(&mut self, ws: &mut Ws<'_>, _: Message) {
        ws.close(dialtone::CloseCode::PolicyViolation, "enough")
            .unwrap();
    }
}

#[test]
fn handler_close_runs_the_close_handshake_and_server_closes_tcp_first() {
    let Some(addr) = serve_with(Acceptor::new(), 1, || CloseAtFirst) else {
        return;
    };
    let mut s = open(addr);
    s.write_all(&frame(0x1, b"hi")).unwrap();
    let (op, payload) = read_frame(&mut s).expect("close frame");
    assert_eq!(op, 0x8);
    assert_eq!(&payload[..2], &1008u16.to_be_bytes());
    assert_eq!(&payload[2..], b"enough");
    // Our answer completes the handshake: the server then closes TCP.
    s.write_all(&frame(0x8, &1008u16.to_be_bytes())).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("the server closes cleanly");
    assert!(rest.is_empty(), "nothing after the close frame");
}

#[test]
fn server_of_two_rings_serves_every_connection() {
    let Some(addr) = serve_with(Acceptor::new(), 2, || Echo) else {
        return;
    };
    let mut clients: Vec<TcpStream> = (0..16).map(|_| open(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&frame(0x2, &[i as u8; 33])).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(read_frame(c), Some((0x2, vec![i as u8; 33])));
    }
}
