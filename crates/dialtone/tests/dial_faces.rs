//! Every dialer feature through both faces, `Dialer::dial` and
//! `Dialer::dial_blocking`, against loopback servers: redirects, cookies,
//! credentials (Basic, Bearer, Digest with a stale nonce, none across
//! origins), timeouts, errors, subprotocols, headers, close reasons,
//! permessage-deflate and IPv6. The two faces share the dial plan and the
//! handshake steps, so each test asks both the same question.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dialtone::http::StatusCode;
use dialtone::proto::handshake::HandshakeError;
use dialtone::{
    Acceptor, Auth, CloseCode, CloseFrame, Config, CookieJar, Deflate, Dialer, Error, Listener,
    Message, Reject,
};
use support::{dial_both, each_face, echo_server, http_responder, round_trip_both, silent_server};

/// Runs `f` on tokio's blocking pool (so that the servers on this runtime
/// go on) and returns what it returns.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("the blocking face panicked")
}

/// A listener with `acceptor` that answers `whoami` with the request's
/// path and user agent, closes with 4001 on `close-me`, and echoes the rest.
async fn info_server(acceptor: Acceptor) -> String {
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(acceptor);
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                let Ok((mut ws, request)) = incoming.handshake().await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.recv().await {
                    match msg {
                        Message::Text(t) if t.as_str() == "whoami" => {
                            let ua = request
                                .headers()
                                .get("user-agent")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            let _ = ws.send(format!("{} {ua}", request.uri())).await;
                        }
                        Message::Text(t) if t.as_str() == "close-me" => {
                            let _ = ws.close(CloseCode::Private(4001), "as you wish").await;
                        }
                        msg if msg.is_data() => {
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

/// Sends `text` with each face and returns the replies `[async, blocking]`.
async fn ask_both(dialer: &Dialer, url: &str, text: &'static str) -> [Message; 2] {
    let (mut ws, _) = dialer.dial(url).await.unwrap();
    ws.send(text).await.unwrap();
    let async_reply = ws.recv().await.unwrap().unwrap();
    let (dialer, url) = (dialer.clone(), url.to_owned());
    let blocking_reply = blocking(move || {
        let (mut ws, _) = dialer.dial_blocking(&url).unwrap();
        ws.send(text).unwrap();
        ws.recv().unwrap().unwrap()
    })
    .await;
    [async_reply, blocking_reply]
}

/// The value of the `name:` line of each request a responder saw.
type Seen = Arc<Mutex<Vec<String>>>;

fn header_line(request: &str, name: &str) -> String {
    request
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{name}:").to_ascii_lowercase())
        })
        .map(|l| l[name.len() + 1..].trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn both_faces_follow_redirects_and_report_the_final_url() {
    let target = info_server(Acceptor::new()).await;
    let hop2 = {
        let target = target.replace("ws://", "http://");
        http_responder(move |_| {
            format!("HTTP/1.1 308 Permanent Redirect\r\nLocation: {target}/final?x=1\r\nContent-Length: 0\r\n\r\n")
        })
        .await
    };
    let hop1 = http_responder(move |_| {
        format!("HTTP/1.1 302 Found\r\nLocation: {hop2}/second\r\nContent-Length: 0\r\n\r\n")
    })
    .await;
    let url = format!("{hop1}/first");
    each_face(dial_both(&Dialer::new(), &url).await, |r| {
        assert_eq!(r.unwrap().url.as_str(), format!("{target}/final?x=1"))
    });
    for reply in ask_both(&Dialer::new(), &url, "whoami").await {
        assert!(
            matches!(reply, Message::Text(ref t) if t.starts_with("/final?x=1 ")),
            "{reply:?}"
        );
    }
    // A limit of 1 stops at the second hop.
    each_face(
        round_trip_both(&Dialer::new().max_redirects(1), &url).await,
        |r| assert!(matches!(r, Err(Error::Redirect(_))), "{r:?}"),
    );
}

#[tokio::test]
async fn both_faces_end_redirect_loops_at_the_limit() {
    let looping = http_responder(|_| {
        "HTTP/1.1 301 Moved\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n".to_owned()
    })
    .await;
    each_face(round_trip_both(&Dialer::new(), &looping).await, |r| {
        assert!(
            matches!(r, Err(Error::Redirect(ref m)) if m.contains("more than 5")),
            "{r:?}"
        )
    });
}

#[tokio::test]
async fn both_faces_send_basic_credentials_from_the_url_and_bearer_tokens() {
    let seen = Seen::default();
    let log = seen.clone();
    let server = http_responder(move |req| {
        log.lock().unwrap().push(header_line(req, "authorization"));
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"ws\"\r\nContent-Length: 6\r\n\r\nno way".to_owned()
    })
    .await;
    let with_user = server.replace("ws://", "ws://al%20ice:s%3Acret@");
    each_face(
        round_trip_both(&Dialer::new(), &with_user).await,
        |r| match r {
            Err(Error::Rejected(r)) => {
                assert_eq!(r.status, StatusCode::UNAUTHORIZED);
                assert_eq!(&r.body[..], b"no way");
            }
            other => panic!("{other:?}"),
        },
    );
    let bearer = Dialer::new().auth(Auth::Bearer("t0k".into()));
    each_face(round_trip_both(&bearer, &server).await, |r| {
        assert!(matches!(r, Err(Error::Rejected(_))))
    });
    // base64("al ice:s:cret"), once per face; then the token, once per face.
    let basic = "Basic YWwgaWNlOnM6Y3JldA==";
    assert_eq!(
        *seen.lock().unwrap(),
        [basic, basic, "Bearer t0k", "Bearer t0k"]
    );
}

#[tokio::test]
async fn both_faces_keep_credentials_to_the_first_origin() {
    let seen = Seen::default();
    let log = seen.clone();
    let elsewhere = http_responder(move |req| {
        log.lock().unwrap().push(header_line(req, "authorization"));
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_owned()
    })
    .await;
    let first = {
        let to = elsewhere.replace("ws://", "http://");
        http_responder(move |_| {
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}/\r\nContent-Length: 0\r\n\r\n"
            )
        })
        .await
    };
    let dialers = [
        Dialer::new().auth(Auth::Bearer("secret".into())),
        Dialer::new().auth(Auth::Basic {
            user: "u".into(),
            password: "secret".into(),
        }),
        Dialer::new(),
    ];
    let with_user = first.replace("ws://", "ws://u:secret@");
    for (dialer, url) in dialers.iter().zip([&first, &first, &with_user]) {
        each_face(round_trip_both(dialer, url).await, |r| {
            assert!(
                matches!(r, Err(Error::Rejected(ref r)) if r.status == StatusCode::FORBIDDEN),
                "{r:?}"
            )
        });
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6, "each dial reached the other origin");
    assert!(seen.iter().all(String::is_empty), "{seen:?}");
}

#[tokio::test]
async fn both_faces_answer_a_digest_challenge_and_a_stale_nonce_once_more() {
    let seen = Seen::default();
    let log = seen.clone();
    let server = http_responder(move |req| {
        let auth = header_line(req, "authorization");
        let nonce = auth
            .split("nonce=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_owned();
        log.lock().unwrap().push(nonce.clone());
        let challenge = match nonce.as_str() {
            "" => "nonce=\"n1\"",
            "n1" => "nonce=\"n2\", stale=true",
            _ => "nonce=\"n3\", stale=true",
        };
        format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"r\", qop=\"auth\", {challenge}\r\nContent-Length: 0\r\n\r\n")
    })
    .await;
    let dialer = Dialer::new().auth(Auth::Digest {
        user: "u".into(),
        password: "p".into(),
    });
    each_face(round_trip_both(&dialer, &server).await, |r| match r {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert!(r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("n3"));
        }
        other => panic!("{other:?}"),
    });
    // No password first; then the first challenge; then the stale one; no more.
    let per_face = ["", "n1", "n2"];
    assert_eq!(*seen.lock().unwrap(), [per_face, per_face].concat());
}

#[tokio::test]
async fn both_faces_store_cookies_from_redirects_and_send_them() {
    let seen = Seen::default();
    let log = seen.clone();
    let server = http_responder(move |req| {
        let cookie = header_line(req, "cookie");
        log.lock().unwrap().push(cookie.clone());
        if cookie.is_empty() {
            "HTTP/1.1 302 Found\r\nSet-Cookie: session=s1; Path=/\r\nLocation: /in\r\nContent-Length: 0\r\n\r\n".to_owned()
        } else {
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_owned()
        }
    })
    .await;
    let url = format!("{server}/login");
    for face in 0..2 {
        let jar = CookieJar::new();
        let dialer = Dialer::new().cookie_jar(jar.clone());
        let r = if face == 0 {
            dialer.dial(&url).await.map(drop)
        } else {
            let url = url.clone();
            blocking(move || dialer.dial_blocking(&url).map(drop)).await
        };
        assert!(
            matches!(r, Err(Error::Rejected(ref r)) if r.status == StatusCode::FORBIDDEN),
            "face {face}: {r:?}"
        );
        assert_eq!(jar.len(), 1);
        assert!(jar.to_netscape().contains("\tsession\ts1"));
    }
    assert_eq!(*seen.lock().unwrap(), ["", "session=s1", "", "session=s1"]);
}

#[tokio::test]
async fn both_faces_time_out_when_the_server_never_answers() {
    let port = silent_server().await;
    let dialer = Dialer::new().timeout(Duration::from_millis(300));
    each_face(
        round_trip_both(&dialer, &format!("ws://127.0.0.1:{port}/")).await,
        |r| assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}"),
    );
}

#[tokio::test]
async fn both_faces_report_connection_refused_and_bad_urls() {
    let closed = support::free_port();
    let url = format!("ws://127.0.0.1:{closed}/");
    each_face(round_trip_both(&Dialer::new(), &url).await, |r| {
        assert!(matches!(r, Err(Error::Connect { .. })), "{r:?}")
    });
    each_face(
        round_trip_both(&Dialer::new(), "http://127.0.0.1:1/").await,
        |r| {
            let e = r.unwrap_err();
            assert!(
                matches!(e, Error::UnsupportedScheme(ref s) if s == "http"),
                "{e:?}"
            );
            assert!(e.to_string().contains("\"http\""), "{e}");
        },
    );
    each_face(
        round_trip_both(&Dialer::new(), "ws://127.0.0.1:1/#frag").await,
        |r| assert!(matches!(r, Err(Error::Url(_))), "{r:?}"),
    );
}

#[tokio::test]
async fn both_faces_negotiate_a_subprotocol_in_the_clients_order() {
    let url = info_server(Acceptor::new().protocol("b").protocol("a")).await;
    let dialer = Dialer::new().protocol("x").protocol("a").protocol("b");
    each_face(dial_both(&dialer, &url).await, |r| {
        assert_eq!(r.unwrap().protocol.as_deref(), Some("a"))
    });
    let (ws, _) = blocking(move || dialer.dial_blocking(&url)).await.unwrap();
    assert_eq!(ws.protocol(), Some("a"));
}

#[tokio::test]
async fn both_faces_send_user_agent_path_and_query() {
    let url = info_server(Acceptor::new()).await;
    let dialer = Dialer::new().user_agent(Some("agent/7".into()));
    for reply in ask_both(&dialer, &format!("{url}/p/q?r=1"), "whoami").await {
        assert_eq!(reply, Message::text("/p/q?r=1 agent/7"));
    }
}

#[tokio::test]
async fn both_faces_refuse_handshake_headers_given_as_extra_headers() {
    let url = info_server(Acceptor::new()).await;
    let dialer = Dialer::new().header("Sec-WebSocket-Key", "x");
    each_face(round_trip_both(&dialer, &url).await, |r| {
        assert!(
            matches!(r, Err(Error::Handshake(HandshakeError::ReservedHeader(_)))),
            "{r:?}"
        )
    });
}

#[tokio::test]
async fn both_faces_see_a_refusals_status_headers_and_body() {
    let acceptor = Acceptor::new().on_request(|req, _| match req.headers().get("authorization") {
        Some(_) => Ok(None),
        None => Err(
            Reject::new(StatusCode::UNAUTHORIZED, "who are you?").with_header(
                "www-authenticate".parse().unwrap(),
                "Bearer".parse().unwrap(),
            ),
        ),
    });
    let url = info_server(acceptor).await;
    each_face(round_trip_both(&Dialer::new(), &url).await, |r| match r {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(r.headers["www-authenticate"], "Bearer");
            assert_eq!(&r.body[..], b"who are you?\n");
        }
        other => panic!("expected a 401, got {other:?}"),
    });
    let with_header = Dialer::new().header("Authorization", "Bearer t");
    each_face(round_trip_both(&with_header, &url).await, Result::unwrap);
}

#[tokio::test]
async fn both_faces_report_the_servers_close_code_and_reason() {
    let url = info_server(Acceptor::new()).await;
    let want = Message::Close(CloseFrame::new(CloseCode::Private(4001), "as you wish"));
    for reply in ask_both(&Dialer::new(), &url, "close-me").await {
        assert_eq!(reply, want);
    }
}

#[tokio::test]
async fn both_faces_report_a_dropped_connection_as_abruptly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (ws, _) = dialtone::accept(tcp).await.unwrap();
            drop(ws); // no close frame
        }
    });
    let abruptly = Message::Close(CloseFrame::new(CloseCode::Abruptly, ""));
    let (mut ws, _) = Dialer::new().dial(&url).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), abruptly);
    assert!(ws.recv().await.is_none());
    let (first, then) = blocking(move || {
        let (mut ws, _) = Dialer::new().dial_blocking(&url).unwrap();
        (ws.recv().unwrap().unwrap(), ws.recv().is_none())
    })
    .await;
    assert_eq!(first, abruptly);
    assert!(then);
}

#[tokio::test]
async fn both_faces_negotiate_permessage_deflate() {
    let config = Config::default().deflate(Deflate::default());
    let url = info_server(Acceptor::new().config(config.clone())).await;
    let dialer = Dialer::new().config(config);
    each_face(dial_both(&dialer, &url).await, |r| {
        assert!(r.unwrap().deflate.is_some(), "permessage-deflate agreed")
    });
    let big = "compressible ".repeat(10_000);
    let (mut ws, _) = dialer.dial(&url).await.unwrap();
    ws.send(big.as_str()).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text(big.clone())
    );
    let reply = blocking(move || {
        let (mut ws, _) = dialer.dial_blocking(&url).unwrap();
        ws.send(big.as_str()).unwrap();
        (ws.recv().unwrap().unwrap(), big)
    })
    .await;
    assert_eq!(reply.0, Message::text(reply.1));
}

#[tokio::test]
async fn both_faces_dial_an_ipv6_literal_and_know_both_addresses() {
    let Ok(listener) = Listener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                let (mut ws, _) = incoming.handshake().await.unwrap();
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    let url = format!("ws://[::1]:{}/", addr.port());
    each_face(round_trip_both(&Dialer::new(), &url).await, Result::unwrap);
    let (ws, _) = Dialer::new().dial(&url).await.unwrap();
    assert_eq!(ws.get_ref().peer_addr().unwrap(), addr);
    assert!(ws.get_ref().local_addr().unwrap().is_ipv6());
    let (ws, _) = blocking(move || Dialer::new().dial_blocking(&url))
        .await
        .unwrap();
    assert_eq!(ws.get_ref().peer_addr().unwrap(), addr);
    assert!(ws.get_ref().local_addr().unwrap().is_ipv6());
    assert!(!ws.get_ref().is_tls());
}

#[tokio::test]
async fn both_faces_echo_text_binary_and_pings() {
    let addr = echo_server(None).await;
    let url = format!("ws://{addr}/");
    let (mut ws, _) = Dialer::new().dial(&url).await.unwrap();
    ws.send(Message::Ping("p".into())).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::Pong("p".into()));
    ws.send(vec![7u8; 1 << 20]).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::binary(vec![7u8; 1 << 20])
    );
    blocking(move || {
        let (mut ws, _) = Dialer::new().dial_blocking(&url).unwrap();
        ws.send(Message::Ping("p".into())).unwrap();
        assert_eq!(ws.recv().unwrap().unwrap(), Message::Pong("p".into()));
        ws.send(vec![7u8; 1 << 20]).unwrap();
        assert_eq!(
            ws.recv().unwrap().unwrap(),
            Message::binary(vec![7u8; 1 << 20])
        );
        ws.send("t").unwrap();
        assert_eq!(ws.recv().unwrap().unwrap(), Message::text("t"));
        ws.close(CloseCode::Normal, "bye").unwrap();
    })
    .await;
}
