//! Dialer ↔ listener over loopback TCP, async and blocking, and raw TCP peers
//! that send malformed handshakes and frames.

use std::io::{Read, Write};
use std::time::Duration;

use dialtone::http::StatusCode;
use dialtone::proto::handshake::HandshakeError;
use dialtone::{Acceptor, CloseCode, CloseFrame, Dialer, Error, Listener, Message, Reject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts an echo listener with `acceptor`; returns its ws:// base URL.
async fn echo_server(acceptor: Acceptor) -> String {
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(acceptor);
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok(incoming) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok((mut ws, request)) = incoming.handshake().await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.recv().await {
                    match msg {
                        Message::Text(t) if t.as_str() == "whoami" => {
                            let path = request.uri().to_string();
                            let ua = request
                                .headers()
                                .get("user-agent")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            ws.send(format!("{path} {ua}")).await.unwrap();
                        }
                        Message::Text(t) if t.as_str() == "close-me" => {
                            ws.close(CloseCode::Private(4001), "as you wish")
                                .await
                                .unwrap();
                        }
                        msg if msg.is_data() => {
                            // A failed send shows in the next receive.
                            let _ = ws.send(msg).await;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn echoes_text_binary_and_large_fragmented_messages() {
    let url = echo_server(Acceptor::new()).await;
    let config = dialtone::Config::default().max_send_frame_size(64 * 1024);
    let (mut ws, response) = Dialer::new()
        .config(config)
        .dial(&format!("{url}/echo"))
        .await
        .unwrap();
    assert_eq!(response.head.status, StatusCode::SWITCHING_PROTOCOLS);

    ws.send("héllo").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("héllo"));

    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7) as u8).collect();
    ws.send(big.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(big));

    ws.send(Vec::new()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(vec![]));

    ws.ping("p1").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Pong("p1".into())
    );

    let answer = ws.close(CloseCode::GoingAway, "bye").await.unwrap();
    assert_eq!(answer, Some(CloseFrame::new(CloseCode::GoingAway, "bye")));
    assert!(ws.recv().await.is_none());
}

#[tokio::test]
async fn sends_user_agent_path_and_query() {
    let url = echo_server(Acceptor::new()).await;
    let (mut ws, _) = Dialer::new().dial(&format!("{url}/a/b?c=d")).await.unwrap();
    ws.send("whoami").await.unwrap();
    let reply = ws.recv().await.unwrap().unwrap();
    assert_eq!(
        reply,
        Message::text(format!("/a/b?c=d dialtone/{}", env!("CARGO_PKG_VERSION")))
    );
}

#[tokio::test]
async fn reports_the_servers_close_code_and_reason() {
    let url = echo_server(Acceptor::new()).await;
    let (mut ws, _) = Dialer::new().dial(&url).await.unwrap();
    ws.send("close-me").await.unwrap();
    let msg = ws.recv().await.unwrap().unwrap();
    assert_eq!(
        msg,
        Message::Close(CloseFrame::new(CloseCode::Private(4001), "as you wish"))
    );
    assert!(ws.recv().await.is_none());
    assert_eq!(ws.close_received().unwrap().code.as_u16(), 4001);
}

#[tokio::test]
async fn negotiates_a_subprotocol_in_the_clients_order() {
    let url = echo_server(Acceptor::new().protocol("b").protocol("a")).await;
    let (ws, response) = Dialer::new()
        .protocol("x")
        .protocol("a")
        .protocol("b")
        .dial(&url)
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("a"));
    assert_eq!(response.protocol.as_deref(), Some("a"));
}

#[tokio::test]
async fn callback_can_refuse_with_a_status_the_dialer_sees() {
    let acceptor = Acceptor::new().on_request(|req, _| {
        if req.headers().get("authorization").is_some() {
            Ok(None)
        } else {
            Err(
                Reject::new(StatusCode::UNAUTHORIZED, "who are you?").with_header(
                    "www-authenticate".parse().unwrap(),
                    "Bearer".parse().unwrap(),
                ),
            )
        }
    });
    let url = echo_server(acceptor).await;
    match Dialer::new().dial(&url).await {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(r.headers["www-authenticate"], "Bearer");
            assert_eq!(&r.body[..], b"who are you?\n");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let ok = Dialer::new()
        .header("Authorization", "Bearer t")
        .dial(&url)
        .await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn refuses_handshake_headers_given_as_extra_headers() {
    let url = echo_server(Acceptor::new()).await;
    let err = Dialer::new()
        .header("sec-websocket-key", "x")
        .dial(&url)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Handshake(HandshakeError::ReservedHeader(_))
    ));
}

#[tokio::test]
async fn dial_times_out_when_the_server_never_answers() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (_s, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let err = Dialer::new()
        .timeout(Duration::from_millis(300))
        .dial(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    hold.abort();
}

#[tokio::test]
async fn dial_reports_connection_refused() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let err = Dialer::new()
        .dial(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn refuses_other_schemes_and_fragments() {
    assert!(matches!(
        Dialer::new().dial("http://127.0.0.1:1/").await,
        Err(Error::UnsupportedScheme(_))
    ));
    assert!(matches!(
        Dialer::new().dial("ws://127.0.0.1:1/#frag").await,
        Err(Error::Url(_))
    ));
}

#[tokio::test]
async fn dials_an_ipv6_literal() {
    let Ok(listener) = Listener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        let msg = ws.recv().await.unwrap().unwrap();
        ws.send(msg).await.unwrap();
        ws.recv().await
    });
    let (mut ws, _) = Dialer::new()
        .dial(&format!("ws://[::1]:{}/", addr.port()))
        .await
        .unwrap();
    ws.send("six").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("six"));
    ws.close(CloseCode::Normal, "").await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn split_halves_work_from_two_tasks() {
    let url = echo_server(Acceptor::new()).await;
    let (ws, _) = Dialer::new().dial(&url).await.unwrap();
    let (mut reader, mut writer) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..1000 {
            writer.send(format!("m{i}")).await.unwrap();
        }
        writer.close(CloseCode::Normal, "done").await.unwrap();
    });
    let mut n = 0;
    while let Some(msg) = reader.recv().await {
        match msg.unwrap() {
            Message::Text(t) => {
                assert_eq!(t.as_str(), format!("m{n}"));
                n += 1;
            }
            Message::Close(c) => assert_eq!(c.code, CloseCode::Normal),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(n, 1000);
    sender.await.unwrap();
}

/// Sends raw bytes to a fresh listener connection and returns all it answers.
async fn raw_exchange(url: &str, bytes: &[u8]) -> Vec<u8> {
    let addr = url.trim_start_matches("ws://");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    out
}

const GOOD_REQUEST: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test]
async fn malformed_handshakes_get_the_right_status_and_the_server_lives_on() {
    let url = echo_server(Acceptor::new()).await;
    let cases: [(String, &str); 4] = [
        ("\x16\x03\x01garbage\r\n\r\n".into(), "HTTP/1.1 400 "),
        (
            GOOD_REQUEST.replace("Version: 13", "Version: 8"),
            "HTTP/1.1 426 ",
        ),
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n", "y".repeat(20_000)),
            "HTTP/1.1 431 ",
        ),
        (
            GOOD_REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
            "HTTP/1.1 400 ",
        ),
    ];
    for (request, status) in cases {
        let answer = raw_exchange(&url, request.as_bytes()).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(status), "{request:?} → {answer:?}");
        if status.contains("426") {
            assert!(answer
                .to_lowercase()
                .contains("sec-websocket-version: 13\r\n"));
        }
    }
    // Still serving.
    let (mut ws, _) = Dialer::new().dial(&url).await.unwrap();
    ws.send("alive").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("alive"));
}

#[tokio::test]
async fn unmasked_client_frame_is_answered_with_1002() {
    let url = echo_server(Acceptor::new()).await;
    let mut bytes = GOOD_REQUEST.as_bytes().to_vec();
    bytes.extend([0x81, 0x02, b'h', b'i']); // unmasked text from a "client"
    let answer = raw_exchange(&url, &bytes).await;
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let frames = &answer[head_end..];
    assert_eq!(frames[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([frames[2], frames[3]]), 1002);
}

#[tokio::test]
async fn a_dropped_connection_is_reported_as_abruptly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (ws, _) = dialtone::accept(tcp).await.unwrap();
        drop(ws); // no close frame
    });
    let (mut ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    let msg = ws.recv().await.unwrap().unwrap();
    assert_eq!(
        msg,
        Message::Close(CloseFrame::new(CloseCode::Abruptly, ""))
    );
    assert!(ws.recv().await.is_none());
}

#[tokio::test]
async fn oversized_message_is_refused_with_1009() {
    let acceptor = Acceptor::new().config(dialtone::Config::default().max_message_size(1000));
    let url = echo_server(acceptor).await;
    let (mut ws, _) = Dialer::new().dial(&url).await.unwrap();
    ws.send(vec![0u8; 1001]).await.unwrap();
    let msg = ws.recv().await.unwrap().unwrap();
    match msg {
        Message::Close(c) => assert_eq!(c.code, CloseCode::TooBig),
        other => panic!("{other:?}"),
    }
}

#[test]
fn blocking_dialer_and_acceptor_talk() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = tcp.accept().unwrap();
        let (mut ws, _) = Acceptor::new().accept_blocking(stream).unwrap();
        while let Some(msg) = ws.recv() {
            let msg = msg.unwrap();
            if msg.is_data() {
                ws.send(msg).unwrap();
            }
        }
        ws.close_received().cloned()
    });
    let (mut ws, _) = Dialer::new()
        .dial_blocking(&format!("ws://{addr}/"))
        .unwrap();
    ws.send("sync").unwrap();
    assert_eq!(ws.recv().unwrap().unwrap(), Message::text("sync"));
    let big = vec![42u8; 3 << 20];
    ws.send(big.clone()).unwrap();
    assert_eq!(ws.recv().unwrap().unwrap(), Message::binary(big));
    let answer = ws.close(CloseCode::Normal, "fin").unwrap();
    assert_eq!(answer, Some(CloseFrame::new(CloseCode::Normal, "fin")));
    assert_eq!(
        server.join().unwrap(),
        Some(CloseFrame::new(CloseCode::Normal, "fin"))
    );
}

#[test]
fn blocking_dialer_talks_to_the_async_listener() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(echo_server(Acceptor::new()));
    let (mut ws, _) = Dialer::new().dial_blocking(&url).unwrap();
    ws.send(Message::Ping("x".into())).unwrap();
    assert_eq!(ws.recv().unwrap().unwrap(), Message::Pong("x".into()));
    ws.send("mixed").unwrap();
    assert_eq!(ws.recv().unwrap().unwrap(), Message::text("mixed"));
    ws.close(CloseCode::Normal, "").unwrap();
    drop(rt);
}

#[test]
fn blocking_acceptor_refuses_bad_requests() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = tcp.accept().unwrap();
        Acceptor::new().accept_blocking(stream).map(|_| ())
    });
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(matches!(server.join().unwrap(), Err(Error::Refused(_))));
}

/// A one-shot HTTP responder: answers each connection with `answer(request)`.
async fn http_responder<F>(answer: F) -> String
where
    F: Fn(&str) -> String + Send + Sync + 'static,
{
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = s.write_all(answer(&req).as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    format!("ws://{addr}")
}

#[tokio::test]
async fn follows_redirects_and_reports_the_final_url() {
    let target = echo_server(Acceptor::new()).await;
    let hop2 = {
        let target = target.clone();
        http_responder(move |_| {
            format!("HTTP/1.1 308 Permanent Redirect\r\nLocation: {}/final?x=1\r\nContent-Length: 0\r\n\r\n",
                target.replace("ws://", "http://"))
        })
        .await
    };
    let hop1 = http_responder(move |_| {
        format!("HTTP/1.1 302 Found\r\nLocation: {hop2}/second\r\nContent-Length: 0\r\n\r\n")
    })
    .await;
    let (mut ws, response) = Dialer::new().dial(&format!("{hop1}/first")).await.unwrap();
    assert_eq!(response.url.as_str(), format!("{target}/final?x=1"));
    ws.send("whoami").await.unwrap();
    let reply = ws.recv().await.unwrap().unwrap();
    assert!(matches!(reply, Message::Text(t) if t.starts_with("/final?x=1 ")));

    // A limit of 1 stops at the second hop.
    let err = Dialer::new()
        .max_redirects(1)
        .dial(&format!("{hop1}/first"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Redirect(_)), "{err:?}");
}

#[tokio::test]
async fn redirect_loops_end_at_the_limit() {
    let looping = http_responder(|_| {
        "HTTP/1.1 301 Moved\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n".to_owned()
    })
    .await;
    let err = Dialer::new().dial(&looping).await.unwrap_err();
    assert!(
        matches!(err, Error::Redirect(ref m) if m.contains("more than 5")),
        "{err:?}"
    );
}

#[tokio::test]
async fn sends_basic_credentials_from_the_url_and_bearer_tokens() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = http_responder(move |req| {
        let auth = req
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .unwrap_or("")
            .to_owned();
        log.lock().unwrap().push(auth);
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"ws\"\r\nContent-Length: 6\r\n\r\nno way".to_owned()
    })
    .await;
    let with_user = server.replace("ws://", "ws://al%20ice:s%3Acret@");
    let err = Dialer::new().dial(&with_user).await.unwrap_err();
    match err {
        Error::Rejected(r) => {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(&r.body[..], b"no way");
        }
        other => panic!("{other:?}"),
    }
    let _ = Dialer::new()
        .auth(dialtone::Auth::Bearer("t0k".into()))
        .dial(&server)
        .await;
    let seen: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    // base64("al ice:s:cret")
    assert_eq!(seen[0], "authorization: basic ywwgawnlonm6y3jlda==");
    assert_eq!(seen[1], "authorization: bearer t0k");
}

#[tokio::test]
async fn cookie_jar_stores_set_cookie_from_redirects_and_sends_it() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = http_responder(move |req| {
        let cookie = req
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("cookie:"))
            .unwrap_or("")
            .to_owned();
        log.lock().unwrap().push(cookie.clone());
        if cookie.is_empty() {
            "HTTP/1.1 302 Found\r\nSet-Cookie: session=s1; Path=/\r\nLocation: /in\r\nContent-Length: 0\r\n\r\n".to_owned()
        } else {
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_owned()
        }
    })
    .await;
    let jar = dialtone::CookieJar::new();
    let err = Dialer::new()
        .cookie_jar(jar.clone())
        .dial(&format!("{server}/login"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Rejected(ref r) if r.status == StatusCode::FORBIDDEN));
    assert_eq!(seen.lock().unwrap()[1].to_lowercase(), "cookie: session=s1");
    assert_eq!(jar.len(), 1);
    assert!(jar.to_netscape().contains("\tsession\ts1"));
}

/// `try_recv` hands over what has arrived without waiting, exactly as
/// `recv` would, and says `Pending` when nothing is there.
#[tokio::test]
async fn try_recv_takes_what_has_arrived_without_waiting() {
    use std::task::Poll;
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let client = tokio::spawn(async move {
        let (mut ws, _) = Dialer::new().dial(&url).await.unwrap();
        for i in 0..3 {
            ws.feed(Message::text(format!("m{i}"))).unwrap();
        }
        ws.flush().await.unwrap();
        sent_rx.await.unwrap();
        ws.close(CloseCode::Normal, "").await.unwrap();
    });
    let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
    let first = ws.recv().await.unwrap().unwrap();
    let mut got = vec![first];
    // The three were written at once; wait until all have been read.
    let mut tries = 0;
    while got.len() < 3 {
        match ws.try_recv() {
            Poll::Ready(Some(msg)) => got.push(msg.unwrap()),
            Poll::Ready(None) => panic!("ended early"),
            Poll::Pending => {
                tries += 1;
                assert!(tries < 10_000, "the messages never came through try_recv");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    assert_eq!(
        got,
        ["m0", "m1", "m2"].map(Message::text).to_vec(),
        "in order, none lost"
    );
    assert!(ws.try_recv().is_pending(), "nothing more has been sent");
    sent_tx.send(()).unwrap();
    let close = ws.recv().await.unwrap().unwrap();
    assert!(matches!(close, Message::Close(ref f) if f.code == CloseCode::Normal));
    assert!(ws.recv().await.is_none());
    assert!(matches!(ws.try_recv(), Poll::Ready(None)), "ended: as recv");
    client.await.unwrap();
}

/// The split reader's `try_recv` behaves as the whole socket's.
#[tokio::test]
async fn split_reader_try_recv_takes_what_has_arrived() {
    use std::task::Poll;
    let url = echo_server(Acceptor::new()).await;
    let (ws, _) = Dialer::new().dial(&url).await.unwrap();
    let (mut reader, mut writer) = ws.split();
    assert!(reader.try_recv().is_pending(), "nothing sent yet");
    writer.send(Message::text("one")).await.unwrap();
    writer.send(Message::text("two")).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..10_000 {
        match reader.try_recv() {
            Poll::Ready(Some(msg)) => got.push(msg.unwrap()),
            Poll::Ready(None) => panic!("ended early"),
            Poll::Pending if got.len() == 2 => break,
            Poll::Pending => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    assert_eq!(got, ["one", "two"].map(Message::text).to_vec());
    assert!(reader.try_recv().is_pending());
}

/// What `feed` queued goes out when `recv` has nothing to hand over and
/// waits for the peer, so a receive-and-reply loop needs no `flush`; the
/// replies to messages that arrived together go out in one write.
#[tokio::test]
async fn recv_writes_what_feed_queued_before_waiting() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        while let Some(msg) = ws.recv().await {
            let msg = msg.unwrap();
            if msg.is_data() {
                ws.feed(msg).unwrap(); // no flush
            }
        }
    });
    let (mut ws, _) = Dialer::new().dial(&url).await.unwrap();
    for i in 0..3 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.recv())
            .await
            .expect("the queued reply was never written");
        assert_eq!(echo.unwrap().unwrap(), Message::text(format!("m{i}")));
    }
    ws.close(CloseCode::Normal, "").await.unwrap();
    server.await.unwrap();
}
