//! Interop with an independent peer: Python's `websockets` package, with
//! permessage-deflate negotiated, as the server for our dialer and as the
//! client of our listener.
//!
//! Needs the shared test venv (`$DIALTONE_TEST_ENV/venv`, by default
//! `target/test-env/venv`) with `websockets` 17.4: `cargo xtask test` makes
//! it. Without it the tests fail and say so; they do not skip.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use dialtone::{Acceptor, CloseCode, Config, Deflate, Dialer, Listener, Message};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;

/// The `websockets` release the tests are pinned to (as in
/// xtask/python/requirements.txt, which `cargo xtask test` installs).
const WEBSOCKETS_VERSION: &str = "17.4";
/// Each test's whole run.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest message is 4 MiB.
const SIZES: [usize; 4] = [0, 1, 64 << 10, 4 << 20];

// ----- the messages (tests/interop/messages.py makes the same) -----

/// `n` bytes of UTF-8 from a repeated non-ASCII string, cut down to a char
/// boundary; "x" for 1 byte.
fn text(n: usize) -> String {
    if n == 1 {
        return "x".to_owned();
    }
    let unit = "κόσμε-dialtone ";
    let mut s = unit.repeat(n / unit.len() + 1);
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// `n` bytes: 1 KiB blocks, alternately LCG output (incompressible) and a
/// repeated filler (compressible).
fn binary(n: usize) -> Vec<u8> {
    let mut state: u64 = 0x0123_4567_89AB_CDEF;
    let mut out = Vec::with_capacity(n + 1024);
    let mut block = 0;
    while out.len() < n {
        if block % 2 == 0 {
            for _ in 0..256 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                out.extend_from_slice(&((state >> 32) as u32).to_le_bytes());
            }
        } else {
            for _ in 0..64 {
                out.extend_from_slice(b"dialtone-binary!");
            }
        }
        block += 1;
    }
    out.truncate(n);
    out
}

/// The 8 messages, in order: for each size, text then binary.
fn messages() -> Vec<Message> {
    SIZES
        .iter()
        .flat_map(|&n| [Message::text(text(n)), Message::binary(binary(n))])
        .collect()
}

fn describe(msg: &Message) -> String {
    let kind = match msg {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
    };
    format!("{kind} of {} B", msg.as_payload().len())
}

// ----- the python side -----

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Whether `venv`'s python imports the pinned `websockets`.
fn venv_ok(venv: &Path) -> bool {
    let check = format!(
        "import websockets.asyncio.client, websockets.version as v; \
         assert v.version == {WEBSOCKETS_VERSION:?}, v.version"
    );
    Command::new(venv.join("bin/python"))
        .args(["-c", &check])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The python of the shared test venv (`cargo xtask test` makes it, with
/// the `websockets` of xtask/python/requirements.txt); a missing or stale
/// venv fails the test, saying how to make it.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = support::test_env().join("venv");
        assert!(
            venv_ok(&venv),
            "no Python venv with websockets=={WEBSOCKETS_VERSION} at {}: \
             run `cargo xtask test` (it makes the venv, then runs the tests), \
             or `cargo xtask provision` before `cargo test`",
            venv.display()
        );
        venv.join("bin/python")
    })
}

/// Runs an async test body on its own runtime, within [`TEST_TIMEOUT`].
fn run<F: std::future::Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            timeout(TEST_TIMEOUT, body)
                .await
                .expect("interop test timed out");
        });
}

// ----- the tests -----

/// Our dialer against a `websockets` echo server.
#[test]
fn dialer_against_python_websockets_server() {
    let python = python();
    run(async {
        // kill_on_drop: the server goes with the test, however it ends; it
        // also exits by itself when its stdin (our pipe) closes.
        let mut server = tokio::process::Command::new(python)
            .arg(script("echo_server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start echo_server.py");
        let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
        let port: u16 = timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("echo_server.py did not print its port")
            .unwrap()
            .expect("echo_server.py exited before printing its port")
            .trim()
            .parse()
            .expect("echo_server.py printed no port");

        let config = Config::default().deflate(Deflate::default());
        let (mut ws, response) = Dialer::new()
            .config(config)
            .dial(&format!("ws://127.0.0.1:{port}/"))
            .await
            .expect("dial the websockets server");
        let agreed = response.deflate.expect("permessage-deflate not negotiated");
        eprintln!("websockets server agreed: {agreed:?}");

        for msg in messages() {
            ws.send(msg.clone()).await.unwrap();
            let echo = loop {
                match ws.recv().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(echo)) => break echo,
                    Some(Err(e)) => panic!("after sending {}: {e}", describe(&msg)),
                    None => panic!("after sending {}: connection closed", describe(&msg)),
                }
            };
            assert!(
                echo == msg,
                "sent {}, got {} back",
                describe(&msg),
                describe(&echo)
            );
        }

        let answer = ws.close(CloseCode::Normal, "bye").await.unwrap();
        let answer = answer.expect("no close frame in answer");
        assert_eq!(answer.code, CloseCode::Normal, "{answer:?}");
        assert_eq!(answer.reason, "bye", "{answer:?}");

        drop(server.stdin.take());
        let status = timeout(Duration::from_secs(10), server.wait()).await;
        assert!(
            matches!(status, Ok(Ok(s)) if s.success()),
            "echo_server.py did not exit cleanly: {status:?}"
        );
    });
}

/// A `websockets` client against our listener, which echoes.
#[test]
fn python_websockets_client_against_listener() {
    let python = python();
    run(async {
        let config = Config::default().deflate(Deflate::default());
        let listener = Listener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_acceptor(Acceptor::new().config(config));
        let addr = listener.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (mut ws, _request) = listener.accept().await.unwrap().handshake().await.unwrap();
            let mut echoed = 0;
            let mut close = None;
            // Read on past the peer's close until `None`: that is what
            // writes our answering close frame and ends TCP.
            while let Some(msg) = ws.recv().await {
                match msg {
                    Ok(Message::Close(frame)) => close = Some(frame),
                    Ok(msg) if msg.is_data() => {
                        ws.send(msg).await.unwrap();
                        echoed += 1;
                    }
                    Ok(_) => {}
                    Err(e) => panic!("listener, after {echoed} echoes: {e}"),
                }
            }
            (
                echoed,
                close.expect("listener: connection ended without a close"),
            )
        });

        let client = tokio::process::Command::new(python)
            .arg(script("echo_client.py"))
            .arg(format!("ws://{addr}/"))
            .current_dir(script(""))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run echo_client.py");
        let stdout = String::from_utf8_lossy(&client.stdout);
        let stderr = String::from_utf8_lossy(&client.stderr);
        eprintln!("{stdout}");
        assert!(
            client.status.success(),
            "echo_client.py: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            client.status
        );

        let (echoed, close) = echo.await.unwrap();
        assert_eq!(echoed, 8);
        assert_eq!(close.code, CloseCode::Normal, "{close:?}");
    });
}
