//! The end of stdin is not the end of the replies: `dial`'s most common
//! one-liners print every reply, against the servers people have. The loss
//! was a race (dial closed at the end of stdin, and a server that stops at a
//! close dropped the replies it had not sent: 0 of 20 against Python
//! `websockets`), so each one-liner runs [`RUNS`] times.
//!
//! Needs, in the test env ([`support::test_env`], `target/test-env` unless
//! `DIALTONE_TEST_ENV` says otherwise; `cargo xtask test` provisions both):
//! - `venv/bin/python` with `websockets==17.4`
//!   (`python3 -m venv target/test-env/venv &&
//!   target/test-env/venv/bin/pip install websockets==17.4`);
//! - `node/node_modules/ws` (`npm install --prefix target/test-env/node ws@8`)
//!   and `node` on PATH.

mod support;

use std::time::Duration;

use support::{provisioned, run, script, serve, ScriptServer};
use tokio::process::Command;

/// How many times each one-liner runs against each server.
const RUNS: usize = 20;

/// `printf 'hello\n' | dialtone dial URL` and `printf 'a\nb\n' | dialtone
/// dial -n 2 URL`, each [`RUNS`] times: every reply printed, exit 0.
async fn every_reply_printed(url: &str, server: &str) {
    for (args, input, expected) in [
        (vec!["dial", url], "hello\n", "hello\n"),
        (vec!["dial", "-n", "2", url], "a\nb\n", "a\nb\n"),
    ] {
        let mut lost = Vec::new();
        for i in 0..RUNS {
            let run = run(&args, input.as_bytes()).await;
            if run.stdout != expected || run.code() != 0 {
                lost.push(format!(
                    "run {i}: exit {}, stdout {:?}, stderr {:?}",
                    run.code(),
                    run.stdout,
                    run.stderr
                ));
            }
        }
        assert!(
            lost.is_empty(),
            "`printf {input:?} | dialtone {}` against {server}: {} of {RUNS} runs lost replies:\n{}",
            args.join(" "),
            lost.len(),
            lost.join("\n")
        );
    }
}

#[tokio::test]
async fn no_reply_lost_against_python_websockets() {
    let python = provisioned("venv/bin/python", "a Python venv with websockets==17.4");
    let check = std::process::Command::new(&python)
        .args(["-c", "import websockets; print(websockets.__version__)"])
        .output()
        .expect("running the venv's python");
    let version = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        version.trim(),
        "17.4",
        "the venv at {} needs websockets==17.4 (`cargo xtask test` installs it); {}",
        python.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut command = Command::new(python);
    command.arg(script("echo_server.py"));
    let server = ScriptServer::start(command, "the Python websockets echo server").await;
    every_reply_printed(&server.url(), "Python websockets 17.4").await;
}

#[tokio::test]
async fn no_reply_lost_against_node_ws() {
    let modules = provisioned("node/node_modules/ws", "the npm package ws (ws@8)");
    let node_path = modules.parent().expect("node_modules").to_owned();
    let mut command = Command::new("node");
    command
        .arg(script("echo_server.js"))
        .env("NODE_PATH", node_path);
    let server = ScriptServer::start(command, "the Node ws echo server (is node installed?)").await;
    every_reply_printed(&server.url(), "Node ws").await;
}

#[tokio::test]
async fn no_reply_lost_against_serve_exec_cat() {
    let (_server, url) = serve(&["--exec", "cat"]).await;
    every_reply_printed(&url, "dialtone serve --exec cat").await;
}

/// A server that answers each message some time after the last answer:
/// the whole exchange takes longer than the linger, but as long as replies
/// keep coming, dial keeps waiting (the linger counts from the last one).
#[tokio::test]
async fn replies_that_keep_coming_are_waited_for_past_the_linger() {
    const MESSAGES: usize = 5;
    const PACE: Duration = Duration::from_millis(400);
    let (url, server) = support::one_connection(|mut ws| async move {
        let mut got = Vec::new();
        while got.len() < MESSAGES {
            match ws.recv().await {
                Some(Ok(msg)) if msg.is_data() => got.push(msg),
                Some(Ok(_)) => {}
                other => panic!("the client went before sending everything: {other:?}"),
            }
        }
        for msg in got {
            tokio::time::sleep(PACE).await;
            ws.send(msg).await.unwrap();
        }
        while ws.recv().await.is_some() {}
        ws.close_received().cloned()
    })
    .await;
    // 5 × 0.4 s of answers, a linger of 1 s.
    let run = run(&["dial", "--linger", "1", &url], b"1\n2\n3\n4\n5\n").await;
    assert_eq!(run.stdout, "1\n2\n3\n4\n5\n", "stderr: {}", run.stderr);
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    let close = server.await.unwrap().expect("the client closed");
    assert_eq!(close.code, dialtone::CloseCode::Normal);
}
