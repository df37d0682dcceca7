//! Keepalive pings with a pong deadline, and the idle timeout, over loopback
//! TCP with short durations.

use std::net::SocketAddr;
use std::time::Duration;

use dialtone::{CloseCode, CloseFrame, Dialer, Error, Message, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

const MS: Duration = Duration::from_millis(1);

/// A listener whose connections run `serve` on the accepted socket.
async fn server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(dialtone::WebSocket<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok((ws, _)) = dialtone::accept(tcp).await {
                tokio::spawn(serve(ws));
            }
        }
    });
    addr
}

/// Receives until the end, answering pings (done by the core) and echoing.
async fn echo(mut ws: dialtone::WebSocket<TcpStream>) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() {
            let _ = ws.send(msg).await;
        }
    }
}

/// A peer that completes the opening handshake by hand, then reads and
/// drops everything: it never answers a ping (nor a close).
async fn deaf_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
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
        tcp.write_all(answer.as_bytes()).await.unwrap();
        // Swallow everything until the client goes away.
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    addr
}

#[tokio::test]
async fn keepalive_keeps_a_connection_to_a_peer_that_answers() {
    let addr = server(echo).await;
    let (mut ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    ws.set_timeouts(Timeouts::default().keepalive(100 * MS, 150 * MS));
    let start = Instant::now();
    let mut pongs = 0;
    while start.elapsed() < 800 * MS {
        match timeout(100 * MS, ws.recv()).await {
            Ok(Some(Ok(Message::Pong(payload)))) => {
                assert!(payload.is_empty());
                pongs += 1;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {} // nothing to receive yet
        }
    }
    assert!((5..=9).contains(&pongs), "{pongs} pongs in 800 ms");
    // Still open both ways.
    ws.send("still there").await.unwrap();
    let echo = loop {
        match ws.recv().await.unwrap().unwrap() {
            Message::Pong(_) => continue,
            other => break other,
        }
    };
    assert_eq!(echo, Message::text("still there"));
    let close = ws.close(CloseCode::Normal, "").await.unwrap();
    assert_eq!(close.unwrap().code, CloseCode::Normal);
}

#[tokio::test]
async fn keepalive_drops_a_peer_that_never_answers_after_the_deadline() {
    let addr = deaf_server().await;
    let (mut ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    ws.set_timeouts(Timeouts::default().keepalive(100 * MS, 200 * MS));
    let start = Instant::now();
    // The first ping at 100 ms, its deadline at 300 ms.
    let first = timeout(Duration::from_secs(2), ws.recv()).await.unwrap();
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
        ws.recv().await.unwrap().unwrap(),
        Message::Close(CloseFrame::new(CloseCode::Abruptly, ""))
    );
    assert!(ws.recv().await.is_none());
    assert_eq!(ws.close_received().unwrap().code, CloseCode::Abruptly);
    assert!(ws.send("late").await.is_err());
}

#[tokio::test]
async fn keepalive_off_by_default_leaves_a_silent_peer_alone() {
    let addr = deaf_server().await;
    let (mut ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    assert!(timeout(400 * MS, ws.recv()).await.is_err());
}

#[tokio::test]
async fn idle_timeout_closes_with_going_away() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let addr = server(move |mut ws| {
        let tx = tx.lock().unwrap().take();
        async move {
            ws.set_timeouts(Timeouts::default().idle(300 * MS));
            let start = Instant::now();
            let mut seen = Vec::new();
            while let Some(msg) = ws.recv().await {
                seen.push((msg.unwrap(), start.elapsed()));
            }
            let sent = ws.connection().close_sent().cloned();
            if let Some(tx) = tx {
                let _ = tx.send((seen, sent));
            }
        }
    })
    .await;
    let (mut ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    // Traffic every 100 ms for 600 ms keeps the server from timing out.
    let mut last_sent = Instant::now();
    for i in 0..6 {
        ws.send(format!("tick {i}")).await.unwrap();
        last_sent = Instant::now();
        tokio::time::sleep(100 * MS).await;
    }
    let close = timeout(Duration::from_secs(2), ws.recv()).await.unwrap();
    // Timed from the last message, so that a late wake-up of the sleep
    // above (a loaded machine) cannot make the close look early.
    let elapsed = last_sent.elapsed();
    assert_eq!(
        close.unwrap().unwrap(),
        Message::Close(CloseFrame::new(CloseCode::GoingAway, "idle timeout"))
    );
    assert!(
        elapsed >= 250 * MS && elapsed < 1000 * MS,
        "closed {elapsed:?} after the last message"
    );
    assert!(ws.recv().await.is_none());

    let (seen, sent) = rx.await.unwrap();
    assert_eq!(
        sent,
        Some(CloseFrame::new(CloseCode::GoingAway, "idle timeout"))
    );
    let texts = seen.iter().filter(|(m, _)| m.is_data()).count();
    assert_eq!(texts, 6);
    let (last, at) = seen.last().unwrap();
    assert_eq!(
        last,
        &Message::Close(CloseFrame::new(CloseCode::GoingAway, "idle timeout"))
    );
    assert!(*at >= 800 * MS, "closed at {at:?}");
}

#[tokio::test]
async fn idle_timeout_with_a_silent_peer_ends_within_the_close_timeout() {
    let addr = deaf_server().await;
    let (mut ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    ws.set_timeouts(Timeouts::default().idle(200 * MS).close(300 * MS));
    let start = Instant::now();
    // The deaf peer never answers our close: the close timeout ends it.
    let msg = timeout(Duration::from_secs(2), ws.recv()).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(
        msg.unwrap().unwrap(),
        Message::Close(CloseFrame::new(CloseCode::Abruptly, ""))
    );
    assert!(
        elapsed >= 500 * MS && elapsed < 1200 * MS,
        "ended after {elapsed:?}"
    );
    assert!(ws.recv().await.is_none());
    assert_eq!(
        ws.connection().close_sent(),
        Some(&CloseFrame::new(CloseCode::GoingAway, "idle timeout"))
    );
}

#[tokio::test]
async fn keepalive_timeout_fails_a_stream_mode_read_with_timed_out() {
    let addr = deaf_server().await;
    let (mut ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    ws.set_timeouts(Timeouts::default().keepalive(100 * MS, 100 * MS));
    let mut stream = ws.into_stream(dialtone::MessageKind::Binary);
    let mut buf = [0u8; 16];
    let err = timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    // The end that follows is not reported twice.
    assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
}

/// A peer that completes the handshake, then never reads again (so that
/// our writes block) and never closes, for ten seconds.
async fn mute_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok((ws, _)) = dialtone::accept(tcp).await else {
            return;
        };
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(ws);
    });
    addr
}

#[tokio::test]
async fn a_writer_waiting_on_a_peer_the_keepalive_timed_out_wakes_with_an_error() {
    let addr = mute_server().await;
    let (ws, _) = Dialer::new()
        .timeouts(Timeouts::default().keepalive(100 * MS, 200 * MS))
        .dial(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let (mut reader, mut writer) = ws.split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0u8; 1 << 20];
        let mut sent = 0;
        loop {
            match writer.send(chunk.clone()).await {
                Ok(()) => sent += 1,
                Err(e) => return (sent, e),
            }
        }
    });
    let first = timeout(Duration::from_secs(3), reader.recv())
        .await
        .unwrap();
    assert!(matches!(first, Some(Err(Error::Timeout(_)))), "{first:?}");
    let (sent, err) = timeout(Duration::from_secs(3), writer)
        .await
        .expect("the waiting writer wakes up")
        .unwrap();
    assert!(matches!(err, Error::Closed), "{err:?}");
    assert!(sent < 64, "the writer was blocked: {sent} MiB went out");
    assert_eq!(
        reader.recv().await.unwrap().unwrap(),
        Message::Close(CloseFrame::new(CloseCode::Abruptly, ""))
    );
    assert!(reader.recv().await.is_none());
}

#[tokio::test]
async fn dialer_timeouts_reach_the_connection() {
    let addr = deaf_server().await;
    let timeouts = Timeouts::default().keepalive(100 * MS, 100 * MS).close(MS);
    let (ws, _) = Dialer::new()
        .timeouts(timeouts)
        .dial(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(ws.connection().config().timeouts, timeouts);
    let mut stream = ws.into_stream(dialtone::MessageKind::Text);
    let mut buf = [0u8; 4];
    let err = timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}
