//! What a client can make a server hold: connections in all and per
//! address (`ConnectionLimits` + `Incoming::refuse`), and plain HTTP
//! responses to a client that never reads (`Acceptor::write_timeout`).

use std::time::Duration;

use dialtone::http::{HeaderMap, StatusCode};
use dialtone::limits::ConnectionLimits;
use dialtone::{Accepted, Acceptor, Dialer, Error, Listener, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An echo server counting connections against `limits`; its port.
async fn limited_server(limits: ConnectionLimits) -> u16 {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            match limits.try_acquire(incoming.peer_addr().ip()) {
                Ok(permit) => {
                    tokio::spawn(async move {
                        let _permit = permit;
                        let Ok((mut ws, _)) = incoming.handshake().await else {
                            return;
                        };
                        while let Some(Ok(msg)) = ws.recv().await {
                            if msg.is_data() && ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(reject) => {
                    tokio::spawn(incoming.refuse(reject));
                }
            }
        }
    });
    port
}

async fn echo(ws: &mut dialtone::WebSocket<dialtone::Transport>, text: &str) {
    ws.send(text).await.unwrap();
    match ws.recv().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("no echo: {other:?}"),
    }
}

#[tokio::test]
async fn the_connection_past_the_limit_gets_503_while_the_others_keep_working() {
    let port = limited_server(ConnectionLimits::new(Some(3), None)).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Dialer::new().dial(&url).await.unwrap().0);
    }
    match Dialer::new().dial(&url).await {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(r.headers.contains_key("retry-after"));
        }
        other => panic!("the 4th connection was not refused: {other:?}"),
    }
    for ws in &mut open {
        echo(ws, "still here").await;
    }
    // A place comes free when a connection ends.
    let ws = open.pop().unwrap();
    drop(ws);
    let mut again = None;
    for _ in 0..50 {
        match Dialer::new().dial(&url).await {
            Ok((ws, _)) => {
                again = Some(ws);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    echo(again.as_mut().expect("no place came free"), "in").await;
}

#[tokio::test]
async fn the_per_address_limit_refuses_with_429() {
    let port = limited_server(ConnectionLimits::new(None, Some(2))).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut a, _) = Dialer::new().dial(&url).await.unwrap();
    let (_b, _) = Dialer::new().dial(&url).await.unwrap();
    match Dialer::new().dial(&url).await {
        Err(Error::Rejected(r)) => assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS),
        other => panic!("the 3rd connection from one address was accepted: {other:?}"),
    }
    echo(&mut a, "fine").await;
}

#[tokio::test]
async fn a_plain_http_client_that_never_reads_is_dropped_after_the_write_timeout() {
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(Acceptor::new().write_timeout(Duration::from_millis(300)));
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let incoming = listener.accept().await.unwrap();
        let Accepted::Http(http) = incoming.handshake_or_http().await.unwrap() else {
            panic!("not plain HTTP");
        };
        // Far more than the socket buffers hold.
        let len = 256 << 20;
        let body = tokio::io::repeat(b'x').take(len);
        http.respond_with(StatusCode::OK, &HeaderMap::new(), len, body)
            .await
    });
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the response was never given up")
        .unwrap();
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    drop(client);
}

#[tokio::test]
async fn a_slow_reader_of_a_plain_response_still_gets_all_of_it() {
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(Acceptor::new().write_timeout(Duration::from_millis(500)));
    let port = listener.local_addr().unwrap().port();
    let len = 8u64 << 20;
    tokio::spawn(async move {
        let incoming = listener.accept().await.unwrap();
        if let Ok(Accepted::Http(http)) = incoming.handshake_or_http().await {
            let body = tokio::io::repeat(b'y').take(len);
            let _ = http
                .respond_with(StatusCode::OK, &HeaderMap::new(), len, body)
                .await;
        }
    });
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut piece = vec![0; 256 * 1024];
    loop {
        // Each pause is shorter than the write timeout; together they are
        // far longer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = client.read(&mut piece).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&piece[..n]);
    }
    let body_start = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!((got.len() - body_start) as u64, len);
}
