//! `wss://` from the command line: `serve --tls-self-signed` and the line
//! it prints to dial it, and the words a certificate mistake gets. All on
//! 127.0.0.1.

mod support;

use std::path::PathBuf;

use dialtone::tls::ServerTls;
use dialtone::Listener;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use support::{dialtone, run, within};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn tls_self_signed_prints_a_dial_line_that_works_as_printed() {
    let mut server = dialtone(&["serve", "127.0.0.1:0", "--echo", "--tls-self-signed"]);
    let mut stderr = BufReader::new(server.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    let dial_line = within("serve to print the dial line", async {
        loop {
            let line = stderr
                .next_line()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("serve exited; it said:\n{}", said.join("\n")));
            said.push(line.clone());
            if line.trim_start().starts_with("dialtone dial ") {
                break line;
            }
        }
    })
    .await;
    let said = said.join("\n");
    assert!(said.contains("listening on wss://127.0.0.1:"), "{said}");
    let fingerprint = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("SHA-256 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint in:\n{said}"));
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
    assert!(
        fingerprint
            .split(':')
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit())),
        "{fingerprint}"
    );

    // Exactly the printed command (its words; no shell quoting in it).
    let words: Vec<&str> = dial_line.split_whitespace().collect();
    assert_eq!(&words[..3], ["dialtone", "dial", "--cacert"], "{dial_line}");
    let ca = PathBuf::from(words[3]);
    assert!(ca.is_file(), "{} is not a file", ca.display());
    assert!(words[4].starts_with("wss://127.0.0.1:"), "{dial_line}");
    let by_ip = run(&words[1..], b"hello over TLS\n").await;
    assert_eq!(by_ip.stdout, "hello over TLS\n", "stderr: {}", by_ip.stderr);
    assert_eq!(by_ip.code(), 0, "stderr: {}", by_ip.stderr);

    // The certificate is for localhost too, with the same CA.
    let localhost = words[4].replace("127.0.0.1", "localhost");
    let by_name = run(&["dial", "--cacert", words[3], &localhost], b"by name\n").await;
    assert_eq!(by_name.stdout, "by name\n", "stderr: {}", by_name.stderr);

    // Without the CA it is refused, and said why.
    let untrusted = run(&["dial", words[4]], b"").await;
    assert_eq!(untrusted.code(), 4, "stderr: {}", untrusted.stderr);
    assert!(
        untrusted.stderr.contains("--cacert"),
        "{}",
        untrusted.stderr
    );

    // Stopped, it removes its key and certificates.
    let pid = nix::unistd::Pid::from_raw(server.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = within("serve to stop", server.wait()).await.unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert!(!ca.exists(), "{} is still there", ca.display());
}

/// What `openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost
/// -addext subjectAltName=IP:127.0.0.1` makes: a self-signed CA
/// certificate (basicConstraints CA:TRUE), used as the server's own.
fn openssl_style_certificate() -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().unwrap()),
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn a_ca_certificate_served_as_the_leaf_is_explained_with_the_fix() {
    let (cert, key) = openssl_style_certificate();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tls-ca-as-leaf");
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("cert.pem");
    std::fs::write(&ca_file, &cert).unwrap();
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let listener = Listener::bind("127.0.0.1:0").await.unwrap().with_tls(tls);
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                let _ = incoming.handshake().await;
            });
        }
    });
    let url = format!("wss://127.0.0.1:{}/", addr.port());
    let run = run(&["dial", "--cacert", ca_file.to_str().unwrap(), &url], b"").await;
    assert_eq!(run.code(), 4, "stderr: {}", run.stderr);
    for words in [
        "CaUsedAsEndEntity",
        "is a CA certificate (basicConstraints CA:TRUE",
        "serve a leaf certificate signed by it",
        "dialtone serve --tls-self-signed",
    ] {
        assert!(
            run.stderr.contains(words),
            "{words:?} missing: {}",
            run.stderr
        );
    }
}
