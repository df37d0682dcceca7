//! `dialtone serve`, the real binary, driven by clients made with the
//! library's `Dialer` (and raw TCP for plain HTTP), on 127.0.0.1 only.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use support::serve::{Server, PATIENCE};

use dialtone::{CloseCode, Config, Deflate, Dialer, Message, Transport, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn dial(url: &str) -> WebSocket<Transport> {
    Dialer::new().dial(url).await.expect("dial").0
}

/// The next text or binary message (pings and pongs skipped).
async fn next_data(ws: &mut WebSocket<Transport>) -> Message {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.recv())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a valid message");
        if msg.is_data() {
            return msg;
        }
    }
}

/// The rest of the connection: the close frame the server sent, after any
/// data messages (which fail the test).
async fn expect_close(ws: &mut WebSocket<Transport>) -> dialtone::CloseFrame {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.recv())
            .await
            .expect("the close in time")
            .expect("a close before the end")
            .expect("a valid message");
        match msg {
            Message::Close(frame) => return frame,
            other if other.is_data() => panic!("unexpected {other:?} before the close"),
            _ => {}
        }
    }
}

/// A plain HTTP request, written as is (no normalisation of the target):
/// the status code, the head and the body.
async fn http(addr: SocketAddr, method: &str, target: &str) -> (u16, String, Vec<u8>) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer))
        .await
        .expect("the answer in time")
        .expect("read");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(answer[..split].to_vec()).expect("an ASCII head");
    let status = head[9..12].parse().expect("a status code");
    (status, head, answer[split + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A fresh directory for one test, under cargo's scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test]
async fn broadcast_delivers_every_message_to_every_client_including_the_sender() {
    let server = Server::start(&["--broadcast"]);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(dial(&server.url("/room")).await);
    }
    // "open" is logged once a client is in the room.
    server.wait_for_log(&["open", "path=/room"], 3).await;
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(format!("from client {i}")).await.expect("send");
    }
    for ws in &mut clients {
        let mut got = Vec::new();
        for _ in 0..3 {
            match next_data(ws).await {
                Message::Text(t) => got.push(t.as_str().to_owned()),
                other => panic!("expected text, got {other:?}"),
            }
        }
        got.sort();
        assert_eq!(got, ["from client 0", "from client 1", "from client 2"]);
    }
    // Binary goes to everyone too, untouched.
    clients[1]
        .send(Message::binary(vec![0u8, 255, 7]))
        .await
        .expect("send");
    for ws in &mut clients {
        assert_eq!(next_data(ws).await, Message::binary(vec![0u8, 255, 7]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_closes_a_client_that_stops_reading_and_keeps_serving_the_others() {
    // Enough to fill any loopback buffers many times over; the loop stops
    // as soon as the slow client is evicted.
    const MAX_MESSAGES: usize = 3000;
    const SIZE: usize = 64 << 10;
    let server = Server::start(&["--broadcast", "--broadcast-queue", "1048576"]);
    // Never reads until the end: the kernel's buffers fill, then its queue.
    let mut slow = dial(&server.url("/slow")).await;
    // Reads everything, at its own pace, until "done".
    let mut reader = dial(&server.url("/reader")).await;
    let reader_addr = reader.get_ref().local_addr().unwrap().to_string();
    let mut fast = dial(&server.url("/fast")).await;
    server.wait_for_log(&["open"], 3).await;
    let reading = tokio::spawn(async move {
        let mut count = 0;
        loop {
            match next_data(&mut reader).await {
                Message::Text(t) if t.as_str() == "done" => return count,
                _ => count += 1,
            }
        }
    });
    let payload = vec![0x5a_u8; SIZE];
    let mut sent = 0;
    while sent < MAX_MESSAGES && !server.log().contains("evicting") {
        let mut msg = payload.clone();
        msg[..8].copy_from_slice(&(sent as u64).to_be_bytes());
        fast.send(Message::binary(msg.clone())).await.expect("send");
        // The room does not wait for the slow client: every message
        // comes back to the fast one.
        assert_eq!(next_data(&mut fast).await, Message::binary(msg));
        sent += 1;
    }
    let log = server.wait_for_log(&["evicting", "too slow"], 1).await;
    let slow_addr = slow.get_ref().local_addr().unwrap().to_string();
    let evicted: Vec<&str> = log.lines().filter(|l| l.contains("evicting")).collect();
    assert!(
        evicted.iter().all(|l| l.contains(&slow_addr)),
        "only the slow client ({slow_addr}) is evicted:\n{log}"
    );
    // The room goes on without it: the reading client got everything.
    fast.send("done").await.expect("send");
    assert_eq!(next_data(&mut fast).await, Message::text("done"));
    let got = tokio::time::timeout(PATIENCE, reading)
        .await
        .expect("the reader in time")
        .expect("the reader");
    assert_eq!(
        got, sent,
        "the reading client ({reader_addr}) lost messages"
    );
    // What reached the slow client is less than everything, then the end.
    let mut received = 0;
    let end = loop {
        match tokio::time::timeout(PATIENCE, slow.recv())
            .await
            .expect("the end in time")
        {
            Some(Ok(msg)) if msg.is_data() => received += 1,
            Some(Ok(Message::Close(frame))) => break Some(frame),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(
        received < sent,
        "the slow client got all {received} of {sent}"
    );
    if let Some(frame) = end {
        // If the close frame made it out, it says why.
        assert!(
            frame.code == CloseCode::PolicyViolation || frame.code == CloseCode::Abruptly,
            "{frame:?}"
        );
    }
}

#[tokio::test]
async fn exec_sends_each_output_line_and_writes_each_message_as_a_line() {
    let server = Server::start(&["--exec", "cat"]);
    let mut ws = dial(&server.url("/cat")).await;
    ws.send("hello").await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("hello"));
    ws.send("two\nlines").await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("two"));
    assert_eq!(next_data(&mut ws).await, Message::text("lines"));
    ws.send(Message::binary(b"bytes".to_vec()))
        .await
        .expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("bytes"));
}

#[tokio::test]
async fn exec_closes_with_1000_when_the_command_exits() {
    let server = Server::start(&["--exec-shell", "read x; echo got:$x"]);
    let mut ws = dial(&server.url("/")).await;
    ws.send("ping").await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("got:ping"));
    let frame = expect_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::Normal);
}

#[tokio::test]
async fn exec_closes_with_1011_and_the_status_when_the_command_fails() {
    let server = Server::start(&["--exec-shell", "echo before; exit 3"]);
    let mut ws = dial(&server.url("/")).await;
    assert_eq!(next_data(&mut ws).await, Message::text("before"));
    let frame = expect_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::ServerError);
    assert!(frame.reason.contains('3'), "{frame:?}");
}

#[tokio::test]
async fn exec_gives_the_command_the_peer_and_request_uri() {
    let server = Server::start(&["--exec-shell", "echo $REMOTE_ADDR $REQUEST_URI"]);
    let mut ws = dial(&server.url("/where?x=1")).await;
    assert_eq!(
        next_data(&mut ws).await,
        Message::text("127.0.0.1 /where?x=1")
    );
}

/// Waits until `path` exists and returns what it holds.
async fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the process `pid` is gone (killed and reaped: a zombie
/// would keep its /proc entry).
async fn wait_gone(pid: u32) {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while proc_dir.exists() {
        assert!(tokio::time::Instant::now() < deadline, "{pid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid a command printed as its first line.
async fn pid_line(ws: &mut WebSocket<Transport>) -> u32 {
    match next_data(ws).await {
        Message::Text(t) => t.as_str().parse::<u32>().expect("a pid"),
        other => panic!("expected the pid, got {other:?}"),
    }
}

#[tokio::test]
async fn exec_closes_the_commands_stdin_and_lets_it_finish_when_the_client_closes() {
    let dir = scratch("exec-finishes");
    let marker = dir.join("marker");
    // After its stdin closes, it prints (too late to be sent) and then
    // writes its marker: it was not killed.
    let cmd = format!("cat; echo late; echo done > {}", marker.display());
    let server = Server::start(&["--exec-shell", &cmd]);
    let mut ws = dial(&server.url("/")).await;
    ws.send("hello").await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("hello"));
    // Our close is answered at once, with our code: not after the command.
    let answer = tokio::time::timeout(PATIENCE, ws.close(CloseCode::Normal, "bye"))
        .await
        .expect("the answer in time")
        .expect("close");
    assert_eq!(answer.map(|f| f.code), Some(CloseCode::Normal));
    assert_eq!(wait_for_file(&marker).await.trim(), "done");
    let log = server.wait_for_log(&["command exited by itself"], 1).await;
    assert!(
        !log.contains("SIGTERM") && !log.contains("SIGKILL"),
        "{log}"
    );
    server
        .wait_for_log(&["printed 1 line(s) after the client's close"], 1)
        .await;
}

#[tokio::test]
async fn exec_terminates_a_command_that_ignores_the_end_of_its_stdin_after_the_grace() {
    let dir = scratch("exec-sigterm");
    let marker = dir.join("marker");
    // It never reads stdin; SIGTERM is what makes it write its marker.
    let cmd = format!(
        "trap 'echo term > {}; exit 0' TERM; echo $$; while :; do sleep 0.05; done",
        marker.display()
    );
    let server = Server::start(&["--exec-shell", &cmd, "--exec-grace", "0.3"]);
    let mut ws = dial(&server.url("/")).await;
    let pid = pid_line(&mut ws).await;
    ws.close(CloseCode::Normal, "bye").await.expect("close");
    assert_eq!(wait_for_file(&marker).await.trim(), "term");
    server
        .wait_for_log(
            &["did not exit within the grace period: terminated (SIGTERM)"],
            1,
        )
        .await;
    wait_gone(pid).await;
}

#[tokio::test]
async fn exec_kills_a_command_that_ignores_sigterm_too() {
    let cmd = "trap '' TERM; echo $$; while :; do sleep 0.05; done";
    let server = Server::start(&["--exec-shell", cmd, "--exec-grace", "0.2"]);
    let mut ws = dial(&server.url("/")).await;
    let pid = pid_line(&mut ws).await;
    assert!(
        PathBuf::from(format!("/proc/{pid}")).exists(),
        "the command runs while the client is there"
    );
    ws.close(CloseCode::Normal, "bye").await.expect("close");
    server.wait_for_log(&["killed (SIGKILL)"], 1).await;
    wait_gone(pid).await;
}

#[tokio::test]
async fn plain_serve_sends_each_line_of_its_stdin_to_every_client() {
    use std::io::Write as _;
    let mut server = Server::start_with_stdin(&[]);
    let mut a = dial(&server.url("/")).await;
    let mut b = dial(&server.url("/")).await;
    server.wait_for_log(&["open"], 2).await;
    let stdin = server.stdin.as_mut().expect("a pipe to serve");
    stdin.write_all(b"hello\nworld\r\n").expect("write");
    stdin.flush().expect("flush");
    for ws in [&mut a, &mut b] {
        assert_eq!(next_data(ws).await, Message::text("hello"));
        assert_eq!(next_data(ws).await, Message::text("world"));
    }
    // The end of serve's stdin ends no connection.
    drop(server.stdin.take());
    b.ping(&b"p"[..]).await.expect("ping");
    let pong = tokio::time::timeout(PATIENCE, b.recv())
        .await
        .expect("the pong in time");
    assert!(matches!(pong, Some(Ok(Message::Pong(_)))), "{pong:?}");
}

#[tokio::test]
async fn static_serves_files_with_their_content_type() {
    let root = scratch("static-files");
    std::fs::write(root.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(root.join("style.css"), "h1 { color: red }").unwrap();
    std::fs::create_dir(root.join("img")).unwrap();
    let png = [0x89, b'P', b'N', b'G', 0, 1, 2, 255];
    std::fs::write(root.join("img/dot.png"), png).unwrap();
    let server = Server::start(&["--echo", "--static", root.to_str().unwrap()]);

    let (status, head, body) = http(server.addr, "GET", "/style.css").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(body, b"h1 { color: red }");

    let (status, head, body) = http(server.addr, "GET", "/img/dot.png").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "content-type"), Some("image/png"));
    assert_eq!(body, png);

    // A directory serves its index.html.
    let (status, head, body) = http(server.addr, "GET", "/").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(body, b"<h1>home</h1>");

    // HEAD: the length, no body.
    let (status, head, body) = http(server.addr, "HEAD", "/style.css").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "content-length"), Some("17"));
    assert!(body.is_empty());

    let (status, _, _) = http(server.addr, "GET", "/missing.txt").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn static_refuses_path_traversal() {
    let base = scratch("static-traversal");
    let root = base.join("public");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("ok.txt"), "public").unwrap();
    std::fs::write(base.join("secret.txt"), "the secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt")).unwrap();
    let server = Server::start(&["--static", root.to_str().unwrap()]);

    let (status, _, body) = http(server.addr, "GET", "/ok.txt").await;
    assert_eq!((status, body.as_slice()), (200, &b"public"[..]));
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/x/../../secret.txt",
        "/..%5csecret.txt",
        "/link.txt",
    ] {
        let (status, head, body) = http(server.addr, "GET", target).await;
        assert!(status == 403 || status == 400, "{target}: {head}");
        assert!(
            !String::from_utf8_lossy(&body).contains("the secret"),
            "{target} leaked the file"
        );
    }
}

#[tokio::test]
async fn web_serves_the_console_at_root_and_upgrades_on_the_same_port() {
    let server = Server::start(&["--echo", "--web"]);
    let (status, head, body) = http(server.addr, "GET", "/").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = String::from_utf8(body).expect("UTF-8");
    assert!(page.contains("<title>dialtone console</title>"), "{page}");
    assert!(
        page.contains("new WebSocket("),
        "the page opens a WebSocket"
    );
    // Self-contained: nothing loaded from elsewhere.
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));

    // The same port, the same path: a WebSocket.
    let mut ws = dial(&server.url("/")).await;
    ws.send("echo me").await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("echo me"));
}

#[tokio::test]
async fn without_static_or_web_a_plain_request_is_refused_as_before() {
    let server = Server::start(&["--echo"]);
    let (status, head, _) = http(server.addr, "GET", "/").await;
    assert_eq!(status, 426, "{head}");
    assert_eq!(header(&head, "upgrade"), Some("websocket"));
    let (status, head, _) = http(server.addr, "POST", "/").await;
    assert_eq!(status, 405, "{head}");
}

#[tokio::test]
async fn verbose_log_shows_open_with_the_extension_and_the_close_code_and_reason() {
    let server = Server::start(&["--echo"]);
    let (mut ws, _) = Dialer::new()
        .config(Config::default().deflate(Deflate::default()))
        .dial(&server.url("/logged"))
        .await
        .expect("dial");
    ws.send("hi").await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("hi"));
    ws.close(CloseCode::Private(4000), "done here")
        .await
        .expect("close");
    let log = server
        .wait_for_log(&["closed", "code=4000", "reason=\"done here\""], 1)
        .await;
    assert!(
        log.lines().any(|l| l.contains("open")
            && l.contains("path=/logged")
            && l.contains("extensions=\"permessage-deflate")),
        "{log}"
    );
    // -v is info: messages are debug, not shown.
    assert!(!log.contains("received"), "{log}");
}

#[tokio::test]
async fn double_verbose_logs_messages() {
    let server = Server::start_with("-vv", &["--echo"]);
    let mut ws = dial(&server.url("/")).await;
    ws.send("visible").await.expect("send");
    assert_eq!(next_data(&mut ws).await, Message::text("visible"));
    server
        .wait_for_log(&["received text", "\"visible\""], 1)
        .await;
}
