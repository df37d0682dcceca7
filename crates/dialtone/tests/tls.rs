//! `wss://`: our TLS listener and dialer with certificates made by rcgen at
//! test time, and Debian's nginx as a TLS terminator in front of a plain
//! listener. Every dial is made by both faces (`dial` and `dial_blocking`),
//! which share the TLS options. Everything runs on 127.0.0.1.

mod support;

use std::time::Duration;

use dialtone::tls::rustls::{self, CertificateError};
use dialtone::tls::ServerTls;
use dialtone::{Dialer, Error, Listener};
use support::{each_face, echo_server, round_trip_both, start_nginx, Ca, Leaf, TempDir};

fn tls_for(pem: &support::Pem) -> ServerTls {
    ServerTls::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap()
}

fn trusting(ca: &Ca) -> Dialer {
    Dialer::new()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .add_ca_pem(ca.pem.as_bytes())
}

/// The rustls certificate error inside a dial's `Error::Tls`.
fn cert_error(result: dialtone::Result<()>) -> CertificateError {
    match result {
        Err(Error::Tls {
            source: Some(rustls::Error::InvalidCertificate(e)),
            reason,
            ..
        }) => {
            assert!(!reason.is_empty());
            e
        }
        other => panic!("expected a TLS certificate error, got {other:?}"),
    }
}

#[tokio::test]
async fn trusted_extra_ca_by_name_and_by_ip() {
    let ca = Ca::new("dialtone test CA");
    let addr = echo_server(Some(tls_for(&ca.issue(Leaf::default())))).await;
    let dialer = trusting(&ca);
    for url in [
        format!("wss://localhost:{}/", addr.port()),
        format!("wss://127.0.0.1:{}/", addr.port()),
    ] {
        each_face(round_trip_both(&dialer, &url).await, Result::unwrap);
    }

    let url = format!("wss://localhost:{}/x", addr.port());
    let (ws, response) = dialer.dial(&url).await.unwrap();
    assert_eq!(response.url.scheme(), "wss");
    assert!(ws.get_ref().is_tls());
    // Both ends speak HTTP/2 when the dialer's and the listener's flags are on.
    let alpn: &[u8] = if cfg!(all(feature = "http2", feature = "http2-server")) {
        b"h2"
    } else {
        b"http/1.1"
    };
    assert_eq!(ws.get_ref().alpn_protocol(), Some(alpn));
    assert_eq!(ws.get_ref().peer_certificates().map(|c| c.len()), Some(1));
    let (ws, response) = tokio::task::spawn_blocking(move || dialer.dial_blocking(&url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.url.scheme(), "wss");
    assert!(ws.get_ref().is_tls());
    assert_eq!(ws.get_ref().alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(ws.get_ref().peer_certificates().map(|c| c.len()), Some(1));
}

#[tokio::test]
async fn ca_and_server_identity_from_files() {
    let dir = TempDir::new("tls-files");
    let ca = Ca::new("dialtone file CA");
    let leaf = ca.issue(Leaf::default());
    let ca_file = dir.write("ca.pem", &ca.pem);
    let cert = dir.write("cert.pem", &leaf.cert);
    let key = dir.write("key.pem", &leaf.key);
    let tls = ServerTls::from_pem_files(&cert, &key).unwrap();
    let addr = echo_server(Some(tls)).await;
    let dialer = Dialer::new().no_proxy().add_ca_file(&ca_file);
    let url = format!("wss://localhost:{}/", addr.port());
    each_face(round_trip_both(&dialer, &url).await, Result::unwrap);

    // A missing CA file is a configuration error, not a TLS failure.
    let missing = Dialer::new()
        .no_proxy()
        .add_ca_file(dir.path().join("nope.pem"));
    each_face(round_trip_both(&missing, &url).await, |r| {
        assert!(matches!(r, Err(Error::TlsConfig(_))), "{r:?}")
    });
    // So is a key that is not the certificate's.
    let other = ca.issue(Leaf::default());
    let r = ServerTls::from_pem(leaf.cert.as_bytes(), other.key.as_bytes());
    assert!(matches!(r, Err(Error::TlsConfig(_))), "{r:?}");
    assert!(matches!(
        ServerTls::from_pem(b"not pem", leaf.key.as_bytes()),
        Err(Error::TlsConfig(_))
    ));
}

#[tokio::test]
async fn unknown_issuer_is_refused_by_default() {
    let ca = Ca::new("untrusted CA");
    let addr = echo_server(Some(tls_for(&ca.issue(Leaf::default())))).await;
    let url = format!("wss://localhost:{}/", addr.port());
    each_face(
        round_trip_both(&Dialer::new().no_proxy(), &url).await,
        |r| assert_eq!(cert_error(r), CertificateError::UnknownIssuer),
    );
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let ca = Ca::new("dialtone test CA");
    let leaf = ca.issue(Leaf {
        expired: true,
        ..Leaf::default()
    });
    let addr = echo_server(Some(tls_for(&leaf))).await;
    let url = format!("wss://localhost:{}/", addr.port());
    each_face(round_trip_both(&trusting(&ca), &url).await, |r| {
        let e = cert_error(r);
        assert!(
            matches!(
                e,
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ),
            "{e:?}"
        );
    });
}

#[tokio::test]
async fn wrong_name_is_refused_and_server_name_override_fixes_it() {
    let ca = Ca::new("dialtone test CA");
    let leaf = ca.issue(Leaf {
        names: &["ws.test"],
        ..Leaf::default()
    });
    let addr = echo_server(Some(tls_for(&leaf))).await;
    let url = format!("wss://localhost:{}/", addr.port());
    each_face(round_trip_both(&trusting(&ca), &url).await, |r| {
        // The message says why, in words.
        let msg = r.as_ref().unwrap_err().to_string();
        assert!(msg.contains("localhost"), "{msg}");
        let e = cert_error(r);
        assert!(
            matches!(
                e,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ),
            "{e:?}"
        );
    });
    let fixed = trusting(&ca).tls_server_name("ws.test");
    each_face(round_trip_both(&fixed, &url).await, Result::unwrap);
}

#[tokio::test]
async fn danger_accept_invalid_certs_accepts_anything() {
    let ca = Ca::new("untrusted CA");
    let leaf = ca.issue(Leaf {
        names: &["elsewhere.test"],
        expired: true,
        ..Leaf::default()
    });
    let addr = echo_server(Some(tls_for(&leaf))).await;
    let dialer = Dialer::new().no_proxy().danger_accept_invalid_certs(true);
    let url = format!("wss://localhost:{}/", addr.port());
    each_face(round_trip_both(&dialer, &url).await, Result::unwrap);
}

#[tokio::test]
async fn client_certificate_auth() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let tls = tls_for(&server_ca.issue(Leaf::default()))
        .require_client_cert_pem(client_ca.pem.as_bytes())
        .unwrap();
    let listener = Listener::bind("127.0.0.1:0").await.unwrap().with_tls(tls);
    let url = format!("wss://localhost:{}/", listener.local_addr().unwrap().port());
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            let seen = seen_tx.clone();
            tokio::spawn(async move {
                match incoming.handshake().await {
                    Ok((mut ws, _)) => {
                        let certs = ws.get_ref().peer_certificates().map_or(0, |c| c.len());
                        let _ = seen.send(Ok(certs));
                        while let Some(Ok(msg)) = ws.recv().await {
                            if msg.is_data() {
                                let _ = ws.send(msg).await;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = seen.send(Err(e));
                    }
                }
            });
        }
    });

    let client = client_ca.issue(Leaf {
        names: &["client.test"],
        client: true,
        ..Leaf::default()
    });
    let with_cert =
        trusting(&server_ca).client_cert_pem(client.cert.as_bytes(), client.key.as_bytes());
    each_face(round_trip_both(&with_cert, &url).await, Result::unwrap);
    for _face in 0..2 {
        assert_eq!(seen_rx.recv().await.unwrap().unwrap(), 1);
    }

    // Without a certificate the server refuses (TLS 1.3 reports it to the
    // client after its side of the handshake, so the dial fails on read).
    each_face(round_trip_both(&trusting(&server_ca), &url).await, |r| {
        assert!(r.is_err())
    });
    for _face in 0..2 {
        match seen_rx.recv().await.unwrap() {
            Err(Error::Tls { source, .. }) => assert!(
                matches!(source, Some(rustls::Error::NoCertificatesPresented)),
                "{source:?}"
            ),
            other => panic!("expected a TLS error on the server, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn tls_to_a_plain_listener_is_a_tls_error() {
    let addr = echo_server(None).await;
    let url = format!("wss://127.0.0.1:{}/", addr.port());
    each_face(
        round_trip_both(&Dialer::new().no_proxy(), &url).await,
        |r| assert!(matches!(r, Err(Error::Tls { .. })), "{r:?}"),
    );
}

#[tokio::test]
async fn silent_tls_server_times_out() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = tcp.accept().await {
            held.push(s);
        }
    });
    let dialer = Dialer::new().no_proxy().timeout(Duration::from_millis(300));
    let url = format!("wss://127.0.0.1:{port}/");
    each_face(round_trip_both(&dialer, &url).await, |r| {
        assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}")
    });
    hold.abort();
}

#[tokio::test]
async fn nginx_terminates_tls_in_front_of_a_plain_listener() {
    let dir = TempDir::new("nginx");
    let ca = Ca::new("dialtone nginx CA");
    let leaf = ca.issue(Leaf::default());
    dir.write("cert.pem", &leaf.cert);
    dir.write("key.pem", &leaf.key);
    let backend = echo_server(None).await;
    let port = support::free_port();
    let prefix = dir.path().display();
    let servers = format!(
        r#"
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {prefix}/cert.pem;
        ssl_certificate_key {prefix}/key.pem;
        location / {{
            proxy_pass http://127.0.0.1:{backend_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 60s;
        }}
    }}
"#,
        backend_port = backend.port()
    );
    let child = start_nginx(&dir, &servers, port);

    let dialer = trusting(&ca);
    let url = format!("wss://localhost:{port}/through-nginx");
    each_face(round_trip_both(&dialer, &url).await, |r| {
        r.unwrap_or_else(|e| panic!("{e}\nnginx log:\n{}", child.log_text()))
    });
    // nginx's certificate is checked like any other.
    let url = format!("wss://localhost:{port}/");
    each_face(
        round_trip_both(&Dialer::new().no_proxy(), &url).await,
        |r| assert_eq!(cert_error(r), CertificateError::UnknownIssuer),
    );
}
