//! `dialtone bench` against a real echo server, and against a broken one.

mod support;

use dialtone::Message;
use support::{one_connection, run, serve_echo};

#[tokio::test]
async fn bench_against_serve_echo_prints_verified_percentiles_and_rates() {
    let (_server, url) = serve_echo().await;
    let run = run(
        &[
            "bench",
            &url,
            "-c",
            "2",
            "--in-flight",
            "4",
            "--size",
            "300",
            "--duration",
            "1",
        ],
        b"",
    )
    .await;
    assert_eq!(
        run.code(),
        0,
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let echoed_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("echoed"))
        .unwrap_or_else(|| panic!("no echoed line in {}", run.stdout));
    let echoed: u64 = echoed_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(echoed > 0);
    assert!(
        echoed_line.ends_with("every echo verified"),
        "{echoed_line}"
    );
    assert!(run
        .stdout
        .contains("2 connection(s) × 4 in flight, 300-byte binary"));
    for field in ["msg/s", "MiB/s", "p50 ", "p90 ", "p99 ", "max "] {
        assert!(
            run.stdout.contains(field),
            "{field:?} missing from {}",
            run.stdout
        );
    }
    // Not a terminal: no progress bar drawn.
    assert!(!run.stderr.contains("echoes,"), "{}", run.stderr);
}

#[tokio::test]
async fn bench_fails_without_numbers_when_an_echo_differs() {
    // Echoes every message with its last byte changed.
    let (url, _server) = one_connection(|mut ws| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if let Message::Binary(b) = msg {
                let mut b = b.to_vec();
                if let Some(last) = b.last_mut() {
                    *last ^= 1;
                }
                if ws.send(Message::binary(b)).await.is_err() {
                    break;
                }
            }
        }
    })
    .await;
    let run = run(&["bench", &url, "--size", "64", "--duration", "0.5"], b"").await;
    assert_eq!(run.code(), 1, "stdout: {}", run.stdout);
    assert!(run.stdout.contains("FAILED"), "{}", run.stdout);
    assert!(run.stdout.contains("byte 63"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("p50"),
        "a broken server must not score: {}",
        run.stdout
    );
}

#[tokio::test]
async fn bench_refused_connection_exits_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = run(
        &["bench", &format!("ws://127.0.0.1:{port}/"), "-d", "0.2"],
        b"",
    )
    .await;
    assert_eq!(run.code(), 3);
    assert!(run.stderr.contains("connection refused"), "{}", run.stderr);
}
