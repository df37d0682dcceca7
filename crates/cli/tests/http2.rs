//! `dial --http2 {auto,never,only}` against a TLS listener that offers only
//! ALPN `http/1.1`: auto and never speak HTTP/1.1 (and `-v` says so), only
//! fails with the handshake-refused status and says why. All on 127.0.0.1.

mod support;

use std::sync::Arc;

use dialtone::tls::ServerTls;
use dialtone::{Listener, Message};
use support::run;

/// A TLS echo listener whose ALPN is `http/1.1` alone, whatever the
/// listener would offer by itself.
async fn http1_only_tls_echo() -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = ServerTls::from_pem(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut config = (**pem.config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_tls(ServerTls::from_config(Arc::new(config)));
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                let Ok((mut ws, _)) = incoming.handshake().await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.recv().await {
                    if matches!(msg, Message::Text(_)) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("wss://localhost:{}/", addr.port())
}

#[tokio::test]
async fn http2_flag_logs_the_version_and_only_fails_clearly_against_an_http1_server() {
    let url = http1_only_tls_echo().await;
    for mode in ["auto", "never"] {
        let done = run(
            &["-v", "dial", "--insecure", "--http2", mode, &url],
            b"hi\n",
        )
        .await;
        assert_eq!(done.stdout, "hi\n", "{mode}: stderr: {}", done.stderr);
        assert_eq!(done.code(), 0, "{mode}: stderr: {}", done.stderr);
        assert!(
            done.stderr.contains("over HTTP/1.1"),
            "{mode}: {}",
            done.stderr
        );
    }
    let only = run(&["dial", "--insecure", "--http2", "only", &url], b"hi\n").await;
    assert_eq!(only.code(), 5, "stderr: {}", only.stderr);
    assert!(
        only.stderr.contains("did not agree to HTTP/2"),
        "{}",
        only.stderr
    );
    let bad = run(&["dial", "--http2", "sometimes", &url], b"").await;
    assert_eq!(bad.code(), 2, "stderr: {}", bad.stderr);
}
