//! `dialtone serve`'s defences (docs/SECURITY.md), the real binary on
//! 127.0.0.1 (and 127.0.0.2 as a second client address): the Origin check
//! and its options, the connection and process limits, the write timeout
//! of plain HTTP answers, and what `--exec` gives its command.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::serve::{Server, PATIENCE};

use dialtone::http::StatusCode;
use dialtone::{CloseCode, Dialer, Error, Message, Transport, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn dial_with(dialer: Dialer, url: &str) -> Result<WebSocket<Transport>, Error> {
    tokio::time::timeout(PATIENCE, dialer.dial(url))
        .await
        .expect("the dial in time")
        .map(|(ws, _)| ws)
}

async fn dial(url: &str) -> WebSocket<Transport> {
    dial_with(Dialer::new(), url).await.expect("dial")
}

/// The status a refused dial was answered with.
fn refused_status(result: Result<WebSocket<Transport>, Error>) -> StatusCode {
    match result {
        Err(Error::Rejected(r)) => r.status,
        Err(e) => panic!("not refused with a status: {e}"),
        Ok(_) => panic!("not refused: the connection opened"),
    }
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

async fn assert_echoes(ws: &mut WebSocket<Transport>, text: &str) {
    ws.send(text).await.expect("send");
    assert_eq!(next_data(ws).await, Message::text(text));
}

/// Every text message until the server closes.
async fn texts_until_closed(ws: &mut WebSocket<Transport>) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, ws.recv())
            .await
            .expect("the end in time")
        {
            Some(Ok(Message::Text(t))) => got.push(t.to_string()),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return got,
        }
    }
}

/// A fresh directory for one test, under cargo's scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("security-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

// ---- Origin ---------------------------------------------------------------

#[tokio::test]
async fn a_cross_site_page_is_refused_by_default_and_the_log_names_its_origin() {
    let server = Server::start(&["--echo"]);
    let evil = Dialer::new().origin("http://127.0.0.2:8000");
    assert_eq!(
        refused_status(dial_with(evil, &server.url("/")).await),
        StatusCode::FORBIDDEN
    );
    let line = server
        .wait_for_log_line(&["refused", "origin http://127.0.0.2:8000 is not allowed"])
        .await;
    assert!(line.contains("--allow-origin"), "{line}");
    // A page of this same host and port (what --web serves) gets in, and
    // so does a client that sends no Origin.
    let own = Dialer::new().origin(server.own_origin());
    let mut ws = dial_with(own, &server.url("/")).await.expect("same host");
    assert_echoes(&mut ws, "own page").await;
    assert_echoes(&mut dial(&server.url("/")).await, "no origin").await;
}

#[tokio::test]
async fn allow_origin_lets_the_listed_sites_in_and_keeps_the_servers_own_pages() {
    let server = Server::start(&[
        "--echo",
        "--allow-origin",
        "http://127.0.0.2:8000",
        "--allow-origin",
        "https://app.example.com",
    ]);
    for origin in [
        "http://127.0.0.2:8000",
        "https://APP.example.com:443",
        &server.own_origin(),
    ] {
        let dialer = Dialer::new().origin(origin);
        let mut ws = dial_with(dialer, &server.url("/"))
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        assert_echoes(&mut ws, origin).await;
    }
    for origin in [
        "http://127.0.0.2:8001",
        "https://app.example.com.evil.net",
        "null",
    ] {
        let dialer = Dialer::new().origin(origin);
        assert_eq!(
            refused_status(dial_with(dialer, &server.url("/")).await),
            StatusCode::FORBIDDEN,
            "{origin}"
        );
    }
}

/// The status a handshake written by hand, with these `Host` and `Origin`
/// headers, is answered with.
async fn handshake_status(addr: SocketAddr, host: &str, origin: Option<&str>) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n") {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("read");
        assert_eq!(n, 1, "the connection ended before a status line");
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).into_owned();
    line[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("status line {line:?}"))
}

#[tokio::test]
async fn a_dns_rebinding_page_is_refused_on_a_loopback_listener() {
    let server = Server::start(&["--echo"]);
    let port = server.addr.port();
    // evil.example made to resolve to 127.0.0.1: its page is "same host".
    let rebound = format!("evil.example:{port}");
    let page = format!("http://evil.example:{port}");
    assert_eq!(
        handshake_status(server.addr, &rebound, Some(&page)).await,
        403
    );
    server
        .wait_for_log_line(&["refused", "\"evil.example", "DNS rebinding"])
        .await;
    // The loopback names pass; a client that is not a browser passes.
    let local = format!("localhost:{port}");
    let local_page = format!("http://localhost:{port}");
    assert_eq!(
        handshake_status(server.addr, &local, Some(&local_page)).await,
        101
    );
    assert_eq!(handshake_status(server.addr, &rebound, None).await, 101);
    // A listed origin may use any name.
    let listed = Server::start(&["--echo", "--allow-origin", "http://evil.example:8000"]);
    let rebound = format!("evil.example:{}", listed.addr.port());
    assert_eq!(
        handshake_status(listed.addr, &rebound, Some("http://evil.example:8000")).await,
        101
    );
}

/// A program from a Debian package, found on PATH or in the sbin dirs; a
/// missing one fails the test and says how to get it.
fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` not found: this test needs the Debian package `{package}`; \
                 `cargo xtask test` installs it (or: apt-get install -y \
                 --no-install-recommends {package})"
            )
        })
}

/// HAProxy with `docs/deploy/haproxy.cfg` (its two addresses replaced) in
/// front of `backend`; its port. Killed when the guard drops.
struct Haproxy {
    child: Child,
    port: u16,
}

impl Haproxy {
    async fn start(backend: SocketAddr, dir: &Path) -> Haproxy {
        let haproxy = require("haproxy", "haproxy");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy/haproxy.cfg");
        let conf = std::fs::read_to_string(&file).expect("docs/deploy/haproxy.cfg");
        for from in ["bind 127.0.0.1:8081", "server dialtone1 127.0.0.1:9001"] {
            assert_eq!(conf.matches(from).count(), 1, "haproxy.cfg: {from}");
        }
        let conf = conf
            .replace("bind 127.0.0.1:8081", &format!("bind 127.0.0.1:{port}"))
            .replace(
                "server dialtone1 127.0.0.1:9001",
                &format!("server dialtone1 {backend}"),
            );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).expect("write haproxy.cfg");
        let child = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "haproxy never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Haproxy { child, port }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_sites_page_through_a_reverse_proxy_is_let_in_on_a_loopback_listener() {
    let server = Server::start(&["--echo"]);
    let dir = scratch("haproxy");
    let proxy = Haproxy::start(server.addr, &dir).await;
    let front: SocketAddr = ([127, 0, 0, 1], proxy.port).into();
    // The site's page, through the proxy: Host is the site's name, and
    // the proxy adds X-Forwarded-For.
    let host = format!("ws.example.test:{}", proxy.port);
    let page = format!("http://{host}");
    assert_eq!(handshake_status(front, &host, Some(&page)).await, 101);
    // The very same request straight to serve is a rebinding page's.
    assert_eq!(handshake_status(server.addr, &host, Some(&page)).await, 403);
    // Through the proxy, the Origin check still holds.
    let other = "http://evil.example";
    assert_eq!(handshake_status(front, &host, Some(other)).await, 403);
}

#[tokio::test]
async fn allow_any_origin_accepts_every_site() {
    let server = Server::start(&["--echo", "--allow-any-origin"]);
    for origin in ["http://127.0.0.2:8000", "https://evil.example", "null"] {
        let dialer = Dialer::new().origin(origin);
        let mut ws = dial_with(dialer, &server.url("/"))
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        assert_echoes(&mut ws, origin).await;
    }
}

#[tokio::test]
async fn allow_origin_refuses_what_is_not_an_origin() {
    let out = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["serve", "127.0.0.1:0", "--echo"])
        .args(["--allow-origin", "https://example.com/app"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-origin"), "{stderr}");
}

// ---- Connection limits ----------------------------------------------------

#[tokio::test]
async fn the_connection_past_max_connections_gets_503_while_the_others_keep_echoing() {
    let server = Server::start(&["--echo", "--max-connections", "3"]);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(dial(&server.url("/")).await);
    }
    match dial_with(Dialer::new(), &server.url("/")).await {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
        }
        Err(e) => panic!("the 4th connection failed without a 503: {e}"),
        Ok(_) => panic!("the 4th connection was let in"),
    }
    server.wait_for_log_line(&["refused", "503"]).await;
    for ws in &mut open {
        assert_echoes(ws, "still here").await;
    }
    // A place comes free when a connection ends.
    let mut ws = open.pop().expect("three");
    ws.close(CloseCode::Normal, "bye").await.expect("close");
    drop(ws);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut again = loop {
        match dial_with(Dialer::new(), &server.url("/")).await {
            Ok(ws) => break ws,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no place came free: {e}"),
        }
    };
    assert_echoes(&mut again, "in again").await;
}

/// Dials `url` from the local address `from` (127.0.0.2: another client).
async fn dial_from(from: &str, url: &str) -> Result<WebSocket<Transport>, Error> {
    let server: SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .expect("an address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind");
    let tcp = socket.connect(server).await.expect("connect");
    tokio::time::timeout(PATIENCE, Dialer::new().handshake(Transport::Tcp(tcp), url))
        .await
        .expect("the handshake in time")
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn max_connections_per_ip_refuses_with_429_and_counts_each_address_alone() {
    let server = Server::start(&["--echo", "--max-connections-per-ip", "2"]);
    let url = server.url("/");
    let mut a = dial_from("127.0.0.1", &url).await.expect("first");
    let mut b = dial_from("127.0.0.1", &url).await.expect("second");
    assert_eq!(
        refused_status(dial_from("127.0.0.1", &url).await),
        StatusCode::TOO_MANY_REQUESTS
    );
    let mut other = dial_from("127.0.0.2", &url)
        .await
        .expect("another address has its own count");
    for ws in [&mut a, &mut b, &mut other] {
        assert_echoes(ws, "still here").await;
    }
}

// ---- Process limit --------------------------------------------------------

/// The pids of the live processes whose parent is `parent`.
fn children_of(parent: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid …`; comm may hold spaces and parens.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let mut fields = after.split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
            ppid == Some(parent) && state != Some("Z")
        })
        .count()
}

#[tokio::test]
async fn max_procs_is_never_exceeded_under_200_concurrent_dials() {
    const MAX: usize = 3;
    let dir = scratch("max-procs");
    // Each command counts the commands alive with it: its file exists
    // from its start to just before it exits.
    let cmd = format!(
        "d={}; : > \"$d/$$\"; ls \"$d\" | wc -l; sleep 0.5; rm -f \"$d/$$\"",
        dir.display()
    );
    let server = Server::start(&["--max-procs", &MAX.to_string(), "--exec-shell", &cmd]);
    let serve_pid = server.child.id();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(children_of(serve_pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            most
        })
    };
    let url = server.url("/");
    let dials: Vec<_> = (0..200)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                match dial_with(Dialer::new(), &url).await {
                    Ok(mut ws) => {
                        let counts = texts_until_closed(&mut ws).await;
                        let code = ws.close_received().map(|f| f.code);
                        Ok((counts, code))
                    }
                    Err(Error::Rejected(r)) => Err(r.status),
                    Err(e) => panic!("a dial failed without a status: {e}"),
                }
            })
        })
        .collect();
    let (mut ran, mut refused, mut try_later) = (0, 0, 0);
    for dial in dials {
        match dial.await.expect("the dial task") {
            Ok((counts, Some(CloseCode::Normal))) => {
                let n: usize = counts
                    .first()
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no count: {counts:?}"));
                assert!(n <= MAX, "{n} commands ran at once (--max-procs {MAX})");
                ran += 1;
            }
            Ok((_, Some(CloseCode::TryAgainLater))) => try_later += 1,
            Ok(other) => panic!("a command's connection ended with {other:?}"),
            Err(status) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                refused += 1;
            }
        }
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let most_children = sampler.join().expect("the sampler");
    assert!(ran >= 1, "no command ran");
    assert!(
        refused + try_later >= 1,
        "the limit was never reached ({ran} ran)"
    );
    assert!(
        most_children <= MAX,
        "serve had {most_children} children at once (--max-procs {MAX})"
    );
    eprintln!("{ran} ran, {refused} refused with 503, {try_later} closed with 1013");
}

// ---- Write timeout --------------------------------------------------------

#[tokio::test]
async fn a_static_client_that_never_reads_is_dropped_after_the_write_timeout() {
    let dir = scratch("write-timeout");
    // Far more than the socket buffers on both sides can hold (sparse:
    // no disk is used).
    const LEN: u64 = 256 << 20;
    std::fs::File::create(dir.join("big.bin"))
        .and_then(|f| f.set_len(LEN))
        .expect("the big file");
    let server = Server::start(&[
        "--echo",
        "--static",
        dir.to_str().expect("a UTF-8 path"),
        "--write-timeout",
        "0.5",
    ]);
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let request = format!("GET /big.bin HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    tcp.write_all(request.as_bytes()).await.expect("write");
    // Not reading: the server's writes stop making progress.
    let line = server.wait_for_log_line(&["timed out"]).await;
    eprintln!("server: {line}");
    // What was on its way is still here; then the connection ends, short.
    let mut got = 0u64;
    let mut buf = vec![0; 1 << 20];
    loop {
        match tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
            .await
            .expect("the connection ends in time: it was not dropped")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    assert!(got < LEN, "the whole file came: the client was not dropped");
    // The server goes on serving.
    assert_echoes(&mut dial(&server.url("/")).await, "still serving").await;
}

// ---- --exec ---------------------------------------------------------------

/// `KEY=VALUE` lines as a map.
fn env_lines(lines: &[String]) -> HashMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn exec_gives_the_request_in_websocketds_variables_and_headers_cannot_override_them() {
    let server = Server::start_with_env(
        &["--exec", "env"],
        &[("DIALTONE_TEST_SECRET", "server-only")],
    );
    let dialer = Dialer::new()
        .origin(server.own_origin())
        .header("Remote-Addr", "6.6.6.6")
        .header("Query_String", "forged")
        .header("Path-Info", "/forged")
        .header("Proxy", "http://127.0.0.1:9")
        .header("X-Note", "a\tb");
    let mut ws = dial_with(dialer, &server.url("/room/a%20b?x=1&y=%24"))
        .await
        .expect("dial");
    let env = env_lines(&texts_until_closed(&mut ws).await);
    let port = server.addr.port().to_string();
    for (name, value) in [
        ("REMOTE_ADDR", "127.0.0.1"),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PORT", port.as_str()),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/"),
        ("PATH_INFO", "/room/a b"),
        ("QUERY_STRING", "x=1&y=%24"),
        ("REQUEST_URI", "/room/a%20b?x=1&y=%24"),
        ("HTTP_ORIGIN", server.own_origin().as_str()),
        ("HTTP_REMOTE_ADDR", "6.6.6.6"),
        ("HTTP_PATH_INFO", "/forged"),
        ("HTTP_X_NOTE", "a\tb"),
        ("GATEWAY_INTERFACE", "websocketd-CGI/0.1"),
    ] {
        assert_eq!(
            env.get(name).map(String::as_str),
            Some(value),
            "{name}: {env:?}"
        );
    }
    let port: u16 = env["REMOTE_PORT"].parse().expect("REMOTE_PORT is a port");
    assert_ne!(port, 0);
    assert!(!env.contains_key("HTTP_QUERY_STRING"), "{env:?}");
    assert!(!env.contains_key("HTTP_PROXY"), "httpoxy: {env:?}");
    assert!(!env.contains_key("DIALTONE_TEST_SECRET"), "leaked: {env:?}");
    assert!(env.contains_key("PATH"), "--passenv's default: {env:?}");
}

#[tokio::test]
async fn passenv_chooses_what_of_the_servers_environment_the_command_gets() {
    let server = Server::start_with_env(
        &["--passenv", "DIALTONE_TEST_SHARED", "--exec", "env"],
        &[
            ("DIALTONE_TEST_SHARED", "for the command"),
            ("DIALTONE_TEST_SECRET", "server-only"),
        ],
    );
    let env = env_lines(&texts_until_closed(&mut dial(&server.url("/")).await).await);
    assert_eq!(env["DIALTONE_TEST_SHARED"], "for the command");
    assert!(!env.contains_key("DIALTONE_TEST_SECRET"), "{env:?}");
}

/// A path and a query full of shell syntax, each meant to create one of
/// the marker files in `dir` if a shell ever read it.
fn shell_syntax_target(dir: &Path) -> String {
    let m = |n: u32| dir.join(format!("marker{n}")).display().to_string();
    format!(
        "/$(touch%20{})/%60touch%20{}%60;touch%20{}?a=$(touch%20{});touch${{IFS}}{}|touch%20{}",
        m(1),
        m(2),
        m(3),
        m(4),
        m(5),
        m(6)
    )
}

fn assert_no_marker(dir: &Path) {
    let made: Vec<_> = std::fs::read_dir(dir)
        .expect("the dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(
        made.is_empty(),
        "a shell ran what the client sent: {made:?}"
    );
}

/// The percent-decoded form of a path (what PATH_INFO holds).
fn decoded(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .expect("UTF-8")
        .into_owned()
}

#[tokio::test]
async fn exec_never_runs_shell_syntax_from_the_path_or_query() {
    let dir = scratch("exec-shell-syntax");
    let server = Server::start(&[
        "--exec",
        "printenv",
        "REQUEST_URI",
        "PATH_INFO",
        "QUERY_STRING",
    ]);
    let mut ws = dial(&server.url(&shell_syntax_target(&dir))).await;
    let lines = texts_until_closed(&mut ws).await;
    let [uri, path, query] = &lines[..] else {
        panic!("printenv printed {lines:?}");
    };
    let (sent_path, sent_query) = uri.split_once('?').expect("a query");
    assert_eq!(path, &decoded(sent_path));
    assert_eq!(query, sent_query);
    assert!(
        path.contains("$(touch ") && query.contains(";touch${IFS}"),
        "{lines:?}"
    );
    assert_no_marker(&dir);
}

#[tokio::test]
async fn exec_shell_expands_the_variables_but_never_runs_what_is_in_them() {
    let dir = scratch("exec-shell-variables");
    let server = Server::start(&[
        "--exec-shell",
        r#"printf '%s\n' "$REQUEST_URI" "$PATH_INFO" $QUERY_STRING"#,
    ]);
    let mut ws = dial(&server.url(&shell_syntax_target(&dir))).await;
    let lines = texts_until_closed(&mut ws).await;
    // Unquoted, the query is split into words, and still not run.
    assert!(lines.len() >= 3, "{lines:?}");
    let (sent_path, _) = lines[0].split_once('?').expect("a query");
    assert_eq!(lines[1], decoded(sent_path));
    assert_no_marker(&dir);
}

#[tokio::test]
async fn help_shows_every_security_option_with_an_example() {
    let out = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["serve", "--help"])
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for said in [
        "--exec <PROGRAM>...",
        "--exec-shell <CMD>",
        "--max-procs <N>",
        "--passenv <NAMES>",
        "--allow-origin <ORIGIN>",
        "--allow-any-origin",
        "--max-connections <N>",
        "--max-connections-per-ip <N>",
        "--write-timeout <SECS>",
        "Example: `--max-procs 16`",
        "Example: `--passenv PATH,HOME,LANG`",
        "Example: `--allow-origin https://app.example.com`",
        "--allow-any-origin`",
        "Example: `--max-connections 10000`",
        "Example: `--max-connections-per-ip 16`",
        "Example: `--write-timeout 30`",
        "Example: `--exec python3 bot.py --room lobby`",
        "docs/SECURITY.md",
    ] {
        assert!(help.contains(said), "{said:?} missing from:\n{help}");
    }
}
