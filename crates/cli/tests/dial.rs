//! `dialtone dial` as a user runs it: the real binary against servers in
//! the test, on 127.0.0.1.

mod support;

use base64::Engine as _;
use dialtone::{CloseCode, CloseFrame, Message};
use serde_json::Value;
use support::{dialtone, finish, one_connection, raw_server, run, tcp_server, within};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn base64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Reads a server's connection to the end; the client's close frame.
async fn until_closed(ws: &mut dialtone::WebSocket<dialtone::Transport>) -> Option<CloseFrame> {
    while ws.recv().await.is_some() {}
    ws.close_received().cloned()
}

#[tokio::test]
async fn jsonl_reports_open_messages_ping_timed_pongs_and_close() {
    let (url, server) = one_connection(|mut ws| async move {
        ws.send("hello").await.unwrap();
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        ws.ping(&b"are you there"[..]).await.unwrap();
        until_closed(&mut ws).await
    })
    .await;
    let mut child = dialtone(&["dial", "--jsonl", "--ping=0.05", "--protocol", "chat", &url]);
    let mut stdin = Some(child.stdin.take().unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut events = Vec::new();
    within("the events", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let event: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if event["event"] == "pong" && event["rtt_ms"].is_number() {
                // End of stdin: the client closes.
                stdin = None;
            }
            events.push(event);
        }
    })
    .await;
    drop(stdin);
    let run = finish(child).await;
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);

    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let open = &events[0];
    assert_eq!(open["event"], "open", "{kinds:?}");
    assert_eq!(open["status"], 101);
    assert_eq!(open["protocol"], "chat");
    assert!(open["extensions"]
        .as_str()
        .unwrap()
        .starts_with("permessage-deflate"));
    assert_eq!(open["url"], url);

    let messages: Vec<&Value> = events.iter().filter(|e| e["event"] == "message").collect();
    assert_eq!(messages.len(), 2, "{kinds:?}");
    assert_eq!(messages[0]["type"], "text");
    assert_eq!(messages[0]["data"], "hello");
    assert_eq!(messages[0]["len"], 5);
    assert_eq!(messages[1]["type"], "binary");
    assert_eq!(messages[1]["encoding"], "base64");
    assert_eq!(messages[1]["data"], base64(&[0, 1, 2, 255]));
    assert_eq!(messages[1]["len"], 4);

    let ping = events
        .iter()
        .find(|e| e["event"] == "ping")
        .expect("a ping event");
    assert_eq!(ping["data"], base64(b"are you there"));

    let pong = events
        .iter()
        .find(|e| e["event"] == "pong")
        .expect("a pong event");
    assert_eq!(pong["seq"], 1);
    assert!(pong["rtt_ms"].as_f64().unwrap() >= 0.0);

    let close = events.last().unwrap();
    assert_eq!(close["event"], "close", "{kinds:?}");
    assert_eq!(close["code"], 1000);
    assert_eq!(close["name"], "normal");
    assert_eq!(close["initiator"], "client");
    // Every event is stamped, in order.
    let stamps: Vec<f64> = events.iter().map(|e| e["t_ms"].as_f64().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");

    let seen = within("the server", server).await.unwrap();
    assert_eq!(seen, Some(CloseFrame::new(CloseCode::Normal, "")));
}

#[tokio::test]
async fn close_flag_sends_its_code_and_reason_at_the_end_of_stdin() {
    let (url, server) = one_connection(|mut ws| async move { until_closed(&mut ws).await }).await;
    let run = run(&["dial", &url, "--close", "4000:bye"], b"").await;
    assert_eq!(
        run.code(),
        0,
        "the server echoed our close; stderr: {}",
        run.stderr
    );
    let seen = within("the server", server).await.unwrap();
    assert_eq!(seen, Some(CloseFrame::new(CloseCode::Private(4000), "bye")));
}

#[tokio::test]
async fn lines_mode_sends_stdin_lines_and_prints_text_messages() {
    let (url, server) = one_connection(|mut ws| async move {
        let mut got = Vec::new();
        while let Some(Ok(msg)) = ws.recv().await {
            if let Message::Text(t) = &msg {
                got.push(t.to_string());
                ws.send(format!("re: {t}")).await.unwrap();
            }
        }
        got
    })
    .await;
    let run = run(&["dial", &url], b"one\r\ntwo\n").await;
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "re: one\nre: two\n");
    assert_eq!(within("the server", server).await.unwrap(), ["one", "two"]);
}

#[tokio::test]
async fn count_exits_after_n_messages_with_stdin_still_open() {
    let (url, server) = one_connection(|mut ws| async move {
        for i in 1..=5 {
            ws.send(format!("m{i}")).await.unwrap();
        }
        until_closed(&mut ws).await
    })
    .await;
    let mut child = dialtone(&["dial", &url, "-n", "3"]);
    let _stdin_kept_open = child.stdin.take();
    let run = finish(child).await;
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "m1\nm2\nm3\n");
    let seen = within("the server", server).await.unwrap();
    assert_eq!(seen.map(|f| f.code), Some(CloseCode::Normal));
}

/// The exit status when the server closes with `code` while stdin is open.
async fn status_when_server_closes_with(code: u16) -> i32 {
    let (url, _server) = one_connection(move |mut ws| async move {
        ws.close(CloseCode::from_u16(code), "server says")
            .await
            .unwrap();
    })
    .await;
    let mut child = dialtone(&["dial", &url]);
    let _stdin_kept_open = child.stdin.take();
    finish(child).await.code()
}

#[tokio::test]
async fn exit_status_is_zero_for_a_normal_close_and_100_plus_the_code_otherwise() {
    assert_eq!(status_when_server_closes_with(1000).await, 0);
    assert_eq!(status_when_server_closes_with(1001).await, 101);
    assert_eq!(status_when_server_closes_with(1008).await, 108);
    assert_eq!(status_when_server_closes_with(1011).await, 111);
    assert_eq!(status_when_server_closes_with(4321).await, 121);
}

#[tokio::test]
async fn a_connection_dropped_without_close_frame_exits_106() {
    let (url, _server) = one_connection(|ws| async move { drop(ws) }).await;
    let mut child = dialtone(&["dial", "--jsonl", &url]);
    let _stdin_kept_open = child.stdin.take();
    let run = finish(child).await;
    assert_eq!(run.code(), 106, "stderr: {}", run.stderr);
    let last: Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "close");
    assert_eq!(last["code"], 1006);
    assert_eq!(last["name"], "abruptly");
    assert_eq!(last["initiator"], Value::Null);
}

/// Answers a client's handshake `head` with a plain 101 (no extension).
async fn upgrade(tcp: &mut tokio::net::TcpStream, head: &str) {
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap();
    let accept = dialtone::proto::handshake::accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(answer.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn a_server_that_stops_answering_pings_is_dropped_with_106() {
    let (url, _server) = raw_server(|mut tcp, head| async move {
        upgrade(&mut tcp, &head).await;
        // Read (so the client's pings are taken) but never answer.
        let mut sink = [0; 1024];
        while tcp.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    let mut child = dialtone(&["dial", "--ping-interval", "0.2", &url]);
    let _stdin_kept_open = child.stdin.take();
    let run = finish(child).await;
    assert_eq!(run.code(), 106, "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("no pong within 0.2 s"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_protocol_error_by_the_server_is_answered_with_1002_and_exits_102() {
    let (url, server) = raw_server(|mut tcp, head| async move {
        upgrade(&mut tcp, &head).await;
        // Opcode 0x3 is reserved (RFC 6455 §5.2).
        tcp.write_all(&[0x83, 0x00]).await.unwrap();
        // The client's close frame: masked, code in the first two bytes.
        let mut frame = [0u8; 8];
        tcp.read_exact(&mut frame).await.unwrap();
        assert_eq!(frame[0], 0x88, "a close frame");
        let mask = &frame[2..6];
        u16::from_be_bytes([frame[6] ^ mask[0], frame[7] ^ mask[1]])
    })
    .await;
    let mut child = dialtone(&["dial", &url]);
    let _stdin_kept_open = child.stdin.take();
    let run = finish(child).await;
    assert_eq!(run.code(), 102, "stderr: {}", run.stderr);
    assert!(run.stderr.contains("protocol error"), "{}", run.stderr);
    assert_eq!(within("the server", server).await.unwrap(), 1002);
}

#[tokio::test]
async fn a_refused_connection_is_said_plainly_and_exits_3() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = run(&["dial", &format!("ws://127.0.0.1:{port}/")], b"").await;
    assert_eq!(run.code(), 3);
    assert_eq!(
        run.stderr.trim(),
        format!("dialtone: connection refused by 127.0.0.1:{port}")
    );
}

#[tokio::test]
async fn a_refused_handshake_prints_the_status_line_and_exits_5() {
    let (url, _server) = raw_server(|mut tcp, _head| async move {
        let body = "no entry for you\n";
        let answer = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(answer.as_bytes()).await.unwrap();
        // Keep the socket until the client has read the answer.
        let _ = tcp.read(&mut [0; 64]).await;
    })
    .await;
    let run = run(&["dial", &url], b"").await;
    assert_eq!(run.code(), 5);
    assert!(
        run.stderr
            .starts_with("dialtone: handshake refused: HTTP/1.1 403 Forbidden\n  no entry for you"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_tls_failure_is_said_and_exits_4() {
    // A server that answers the ClientHello with plain HTTP.
    let (addr, _server) = tcp_server(|mut tcp| async move {
        let _ = tcp.read(&mut [0; 1024]).await;
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let _ = tcp.read(&mut [0; 64]).await;
    })
    .await;
    let run = run(&["dial", &format!("wss://{addr}/")], b"").await;
    assert_eq!(run.code(), 4, "stderr: {}", run.stderr);
    assert!(
        run.stderr
            .starts_with("dialtone: TLS handshake with 127.0.0.1 failed: "),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn echo_mode_sends_back_what_arrives_and_count_closes_after_n() {
    let (url, server) = one_connection(|mut ws| async move {
        let sent = [
            Message::text("a"),
            Message::binary(vec![1u8, 2]),
            Message::text("c"),
        ];
        for msg in &sent {
            ws.send(msg.clone()).await.unwrap();
        }
        let mut echoed = Vec::new();
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() {
                echoed.push(msg);
            }
        }
        (echoed == sent, ws.close_received().cloned())
    })
    .await;
    let mut child = dialtone(&[
        "dial",
        "--echo",
        "-n",
        "3",
        "--close",
        "going_away:enough",
        &url,
    ]);
    let _stdin_kept_open = child.stdin.take();
    let run = finish(child).await;
    assert_eq!(
        run.code(),
        0,
        "our own close answered; stderr: {}",
        run.stderr
    );
    let (echoed_all, close) = within("the server", server).await.unwrap();
    assert!(echoed_all, "the echoes differ from what was sent");
    assert_eq!(close, Some(CloseFrame::new(CloseCode::GoingAway, "enough")));
}

#[tokio::test]
async fn binary_mode_passes_bytes_through_unchanged() {
    let (url, _server) = one_connection(|mut ws| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() {
                ws.send(msg).await.unwrap();
            }
        }
    })
    .await;
    // Not valid UTF-8, and more than one read of stdin.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut child = dialtone(&["dial", "--binary", &url]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let writing = tokio::spawn(async move {
        stdin.write_all(&data).await.unwrap();
        data
    });
    let mut echoed = Vec::new();
    within("the echo", stdout.read_to_end(&mut echoed))
        .await
        .unwrap();
    let data = writing.await.unwrap();
    assert!(
        echoed == data,
        "{} bytes back for {}",
        echoed.len(),
        data.len()
    );
    assert_eq!(finish(child).await.code(), 0);
}

#[tokio::test]
async fn help_documents_the_exit_statuses() {
    let run = run(&["dial", "--help"], b"").await;
    assert_eq!(run.code(), 0);
    for row in [
        "Exit status:",
        "106    dropped without a close frame",
        "5    handshake refused",
    ] {
        assert!(
            run.stdout.contains(row),
            "{row:?} missing from:\n{}",
            run.stdout
        );
    }
}

/// The server's messages, in order, until the client's close.
async fn texts_until_closed(
    ws: &mut dialtone::WebSocket<dialtone::Transport>,
) -> (Vec<String>, Option<CloseFrame>) {
    let mut got = Vec::new();
    while let Some(msg) = ws.recv().await {
        if let Ok(Message::Text(t)) = msg {
            got.push(t.to_string());
        }
    }
    (got, ws.close_received().cloned())
}

/// A pause longer than the default linger (0.3 s), so that only waiting
/// for the server gets what comes after it.
const LONGER_THAN_THE_LINGER: std::time::Duration = std::time::Duration::from_millis(1200);

#[tokio::test]
async fn no_close_keeps_reading_after_the_end_of_stdin_until_the_server_closes() {
    let (url, server) = one_connection(|mut ws| async move {
        ws.send("first").await.unwrap();
        tokio::time::sleep(LONGER_THAN_THE_LINGER).await;
        // Fails if the client has closed meanwhile.
        ws.send("second").await.unwrap();
        ws.close(CloseCode::Normal, "done").await.unwrap()
    })
    .await;
    let run = run(&["dial", "--no-close", &url], b"").await;
    assert_eq!(run.stdout, "first\nsecond\n", "stderr: {}", run.stderr);
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    assert!(run.stderr.contains("close normal (1000)"), "{}", run.stderr);
    let answer = within("the server", server).await.unwrap();
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));
}

#[tokio::test]
async fn count_waits_for_its_messages_after_the_end_of_stdin_however_slow() {
    let (url, server) = one_connection(|mut ws| async move {
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Some(Ok(Message::Text(t))) = ws.recv().await {
                got.push(t.to_string());
            }
        }
        tokio::time::sleep(LONGER_THAN_THE_LINGER).await;
        for t in &got {
            ws.send(format!("re: {t}")).await.unwrap();
        }
        until_closed(&mut ws).await
    })
    .await;
    let run = run(&["dial", "-n", "2", &url], b"a\nb\n").await;
    assert_eq!(run.stdout, "re: a\nre: b\n", "stderr: {}", run.stderr);
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    let seen = within("the server", server).await.unwrap();
    assert_eq!(seen.map(|f| f.code), Some(CloseCode::Normal));
}

#[tokio::test]
async fn exec_puts_the_command_on_the_connection_and_ends_it_gently() {
    let (url, server) = one_connection(|mut ws| async move {
        let mut answers = Vec::new();
        for word in ["hello", "bye"] {
            ws.send(word).await.unwrap();
            loop {
                match ws.recv().await {
                    Some(Ok(Message::Text(t))) => {
                        answers.push(t.to_string());
                        break;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the client went: {other:?}"),
                }
            }
        }
        let answer = ws.close(CloseCode::Normal, "done").await.unwrap();
        (answers, answer)
    })
    .await;
    // It prints "ended" on stderr once its stdin closes: it was not killed.
    let cmd = r#"while read l; do echo "got $l"; done; echo ended >&2"#;
    let run = run(&["dial", "--exec-shell", cmd, &url], b"").await;
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "", "the command's output goes to the server");
    assert!(run.stderr.contains("ended"), "stderr: {}", run.stderr);
    assert!(!run.stderr.contains("SIGTERM"), "stderr: {}", run.stderr);
    let (answers, close) = within("the server", server).await.unwrap();
    assert_eq!(answers, ["got hello", "got bye"]);
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Normal));
}

#[tokio::test]
async fn exec_closes_with_the_close_flag_when_the_commands_output_ends() {
    let (url, server) =
        one_connection(|mut ws| async move { texts_until_closed(&mut ws).await }).await;
    let run = run(
        &[
            "dial",
            "--exec-shell",
            "echo one; echo two",
            "--close",
            "4000:over",
            &url,
        ],
        b"",
    )
    .await;
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    let (got, close) = within("the server", server).await.unwrap();
    assert_eq!(got, ["one", "two"]);
    assert_eq!(
        close,
        Some(CloseFrame::new(CloseCode::Private(4000), "over"))
    );
}

#[tokio::test]
async fn exec_runs_the_program_with_its_arguments_as_given_without_a_shell() {
    let (url, server) =
        one_connection(|mut ws| async move { texts_until_closed(&mut ws).await }).await;
    // Every argument after --exec is the program's, those that look like
    // options too; `$HOME` and `;` reach it as they are: no shell reads them.
    let run = run(
        &[
            "dial", &url, "--exec", "printf", "%s|", "-n", "$HOME;", "a b",
        ],
        b"",
    )
    .await;
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    let (got, _) = within("the server", server).await.unwrap();
    assert_eq!(got, ["-n|$HOME;|a b|"]);
}

#[tokio::test]
async fn exec_given_a_shell_command_line_says_to_use_exec_shell() {
    let run = run(
        &["dial", "ws://127.0.0.1:9/", "--exec", "sed -u s/^/x/"],
        b"",
    )
    .await;
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr.contains("no such program") && run.stderr.contains("--exec-shell"),
        "stderr: {}",
        run.stderr
    );
}

#[tokio::test]
async fn help_shows_every_option_with_an_example() {
    let run = run(&["dial", "--help"], b"").await;
    assert_eq!(run.code(), 0);
    for said in [
        "--linger <SECS>",
        "--no-close",
        "--exec <PROGRAM>...",
        "--exec-shell <CMD>",
        "--exec-grace <SECS>",
        "printf 'hello\\n' | dialtone dial ws://",
        "--exec sed -u s/^/got:/",
        "--exec-shell '",
        "dialtone dial --linger 2",
        "--no-close ws://",
        "-n 2 ws://",
    ] {
        assert!(
            run.stdout.contains(said),
            "{said:?} missing from:\n{}",
            run.stdout
        );
    }
}

#[tokio::test]
async fn binary_mode_waits_for_the_replies_at_the_end_of_stdin_too() {
    let (url, server) = one_connection(|mut ws| async move {
        let mut got = Vec::new();
        while let Some(Ok(msg)) = ws.recv().await {
            if let Message::Binary(b) = msg {
                got.extend_from_slice(&b);
                if got.len() == 6 {
                    break;
                }
            }
        }
        // Slower than the linger would allow without waiting at all.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        ws.send(Message::binary(got)).await.unwrap();
        until_closed(&mut ws).await
    })
    .await;
    let run = run(
        &["dial", "--binary", "--linger", "2", &url],
        b"\x00\x01\x02abc",
    )
    .await;
    assert_eq!(run.stdout, "\u{0}\u{1}\u{2}abc", "stderr: {}", run.stderr);
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    let seen = within("the server", server).await.unwrap();
    assert_eq!(seen.map(|f| f.code), Some(CloseCode::Normal));
}
