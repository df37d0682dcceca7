//! Keepalive, the idle timeout and the close timeout on the blocking face,
//! over loopback TCP with short durations: the same deadlines as the async
//! face (`keepalive.rs`), kept by bounding each blocking read and write.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use dialtone::blocking::WebSocket;
use dialtone::{Acceptor, CloseCode, CloseFrame, Dialer, Error, Message, Timeouts};

const MS: Duration = Duration::from_millis(1);

/// What a server received (and when), and the close frame it sent.
type Served = (Vec<(Message, Duration)>, Option<CloseFrame>);

/// A blocking echo server for one connection, with these timeouts.
fn echo_server(timeouts: Timeouts) -> (SocketAddr, thread::JoinHandle<Served>) {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (stream, _) = tcp.accept().unwrap();
        let acceptor = Acceptor::new().timeouts(timeouts);
        let (mut ws, _) = acceptor.accept_blocking(stream).unwrap();
        let start = Instant::now();
        let mut seen = Vec::new();
        while let Some(msg) = ws.recv() {
            let msg = msg.unwrap();
            if msg.is_data() {
                let _ = ws.send(msg.clone());
            }
            seen.push((msg, start.elapsed()));
        }
        (seen, ws.connection().close_sent().cloned())
    });
    (addr, handle)
}

/// A peer that completes the opening handshake by hand, then never answers
/// a ping nor a close; it reads (and drops) everything if `reads`, and
/// nothing at all otherwise. It holds the connection for ten seconds.
fn deaf_server(reads: bool) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = tcp.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the client left during the handshake");
            request.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8(request).unwrap();
        let key = request
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .unwrap();
        let accept = dialtone::proto::handshake::accept_key(key.as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        s.write_all(answer.as_bytes()).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        s.set_read_timeout(Some(100 * MS)).unwrap();
        while Instant::now() < until {
            if !reads {
                thread::sleep(100 * MS);
                continue;
            }
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    });
    addr
}

fn dial(addr: SocketAddr, timeouts: Timeouts) -> WebSocket<dialtone::blocking::Transport> {
    Dialer::new()
        .timeouts(timeouts)
        .dial_blocking(&format!("ws://{addr}/"))
        .unwrap()
        .0
}

#[test]
fn blocking_keepalive_keeps_a_connection_to_a_peer_that_answers() {
    let (addr, server) = echo_server(Timeouts::default());
    let mut ws = dial(addr, Timeouts::default().keepalive(100 * MS, 150 * MS));
    let start = Instant::now();
    let mut pongs = 0;
    while start.elapsed() < 800 * MS {
        match ws.recv() {
            Some(Ok(Message::Pong(payload))) => {
                assert!(payload.is_empty());
                pongs += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((5..=9).contains(&pongs), "{pongs} pongs in 800 ms");
    ws.send("still there").unwrap();
    let echo = loop {
        match ws.recv().unwrap().unwrap() {
            Message::Pong(_) => continue,
            other => break other,
        }
    };
    assert_eq!(echo, Message::text("still there"));
    let close = ws.close(CloseCode::Normal, "").unwrap();
    assert_eq!(close.unwrap().code, CloseCode::Normal);
    server.join().unwrap();
}

#[test]
fn blocking_keepalive_drops_a_peer_that_never_answers_after_the_deadline() {
    let addr = deaf_server(true);
    let mut ws = dial(addr, Timeouts::default().keepalive(100 * MS, 200 * MS));
    let start = Instant::now();
    // The first ping at 100 ms, its deadline at 300 ms.
    let first = ws.recv();
    let elapsed = start.elapsed();
    assert!(
        matches!(first, Some(Err(Error::Timeout(d))) if d == 200 * MS),
        "{first:?}"
    );
    assert!(
        elapsed >= 300 * MS && elapsed < 800 * MS,
        "dropped after {elapsed:?}"
    );
    assert_eq!(
        ws.recv().unwrap().unwrap(),
        Message::Close(CloseFrame::new(CloseCode::Abruptly, ""))
    );
    assert!(ws.recv().is_none());
    assert_eq!(ws.close_received().unwrap().code, CloseCode::Abruptly);
    assert!(ws.send("late").is_err());
}

#[test]
fn blocking_keepalive_fails_a_send_to_a_peer_that_stopped_reading() {
    // The write waits at most until the core's deadlines: the pings it
    // queues go unanswered, and the pong deadline ends the send.
    let addr = deaf_server(false);
    let mut ws = dial(addr, Timeouts::default().keepalive(100 * MS, 200 * MS));
    let start = Instant::now();
    let sent = ws.send(vec![0u8; 64 << 20]);
    assert!(
        matches!(sent, Err(Error::Timeout(d)) if d == 200 * MS),
        "{sent:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ws.connection().pending_output(), 0, "given up");
    assert_eq!(
        ws.recv().unwrap().unwrap(),
        Message::Close(CloseFrame::new(CloseCode::Abruptly, ""))
    );
    assert!(ws.recv().is_none());
}

#[test]
fn blocking_idle_timeout_closes_with_going_away() {
    let (addr, server) = echo_server(Timeouts::default().idle(300 * MS));
    let mut ws = dial(addr, Timeouts::default());
    // Traffic every 100 ms for 600 ms keeps the server from timing out.
    let mut last_sent = Instant::now();
    for i in 0..6 {
        ws.send(format!("tick {i}")).unwrap();
        last_sent = Instant::now();
        assert_eq!(
            ws.recv().unwrap().unwrap(),
            Message::text(format!("tick {i}"))
        );
        thread::sleep(100 * MS);
    }
    let close = ws.recv().unwrap().unwrap();
    // Timed from the last message, so that a late wake-up of the sleep
    // above (a loaded machine) cannot make the close look early.
    let elapsed = last_sent.elapsed();
    let going_away = CloseFrame::new(CloseCode::GoingAway, "idle timeout");
    assert_eq!(close, Message::Close(going_away.clone()));
    assert!(
        elapsed >= 250 * MS && elapsed < 1000 * MS,
        "closed {elapsed:?} after the last message"
    );
    assert!(ws.recv().is_none());

    let (seen, sent) = server.join().unwrap();
    assert_eq!(sent, Some(going_away.clone()));
    assert_eq!(seen.iter().filter(|(m, _)| m.is_data()).count(), 6);
    let (last, at) = seen.last().unwrap();
    assert_eq!(last, &Message::Close(going_away));
    assert!(*at >= 800 * MS, "closed at {at:?}");
}

#[test]
fn blocking_idle_timeout_with_a_silent_peer_ends_within_the_close_timeout() {
    let addr = deaf_server(true);
    let mut ws = dial(addr, Timeouts::default().idle(200 * MS).close(300 * MS));
    let start = Instant::now();
    // The deaf peer never answers our close: the close timeout ends it.
    let msg = ws.recv().unwrap().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(
        msg,
        Message::Close(CloseFrame::new(CloseCode::Abruptly, ""))
    );
    assert!(
        elapsed >= 500 * MS && elapsed < 1200 * MS,
        "ended after {elapsed:?}"
    );
    assert!(ws.recv().is_none());
    assert_eq!(
        ws.connection().close_sent(),
        Some(&CloseFrame::new(CloseCode::GoingAway, "idle timeout"))
    );
}

#[test]
fn blocking_close_timeout_bounds_a_client_whose_server_never_closes_tcp() {
    // RFC 6455 §7.1.1: the client waits for the server's end, but only as
    // long as the close timeout; here the server answers the close frame
    // and keeps TCP open.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = tcp.accept().unwrap();
        let (ws, _) = Acceptor::new().accept_blocking(stream).unwrap();
        // Read the client's close frame by hand and answer it, never close.
        let mut tcp = ws.get_ref().try_clone().unwrap();
        let mut head = [0u8; 8];
        tcp.read_exact(&mut head).unwrap(); // 2 + mask 4 + code 2
        tcp.write_all(&[0x88, 0x02, 0x03, 0xe8]).unwrap();
        thread::sleep(Duration::from_secs(3));
        drop(ws);
    });
    let mut ws = dial(addr, Timeouts::default().close(300 * MS));
    let start = Instant::now();
    let answer = ws.close(CloseCode::Normal, "").unwrap();
    let elapsed = start.elapsed();
    assert_eq!(answer, Some(CloseFrame::new(CloseCode::Normal, "")));
    assert!(
        elapsed >= 250 * MS && elapsed < 1500 * MS,
        "gave up after {elapsed:?}"
    );
    assert!(
        ws.connection().is_aborted(),
        "given up, not ended by the server"
    );
    drop(ws);
    server.join().unwrap();
}
