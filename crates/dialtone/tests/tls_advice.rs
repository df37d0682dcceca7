//! The words of a failed TLS handshake: besides what rustls says, the
//! cause and the fix for the certificate mistakes people make when they set
//! up TLS (the CA certificate `openssl req -x509` makes, served as the
//! server's own; an untrusted issuer; the wrong name; the wrong dates).
//! Certificates are made with rcgen at test time; everything runs on
//! 127.0.0.1.

mod support;

use std::time::Duration;

use dialtone::tls::rustls::{self, CertificateError};
use dialtone::tls::ServerTls;
use dialtone::{Dialer, Error};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use support::{echo_server, Ca, Leaf};

/// The `reason` of a dial's `Error::Tls`, and the rustls certificate error.
async fn dial_error(dialer: &Dialer, url: &str) -> (String, CertificateError) {
    match dialer.dial(url).await {
        Err(Error::Tls {
            source: Some(rustls::Error::InvalidCertificate(e)),
            reason,
            ..
        }) => (reason, e),
        Err(other) => panic!("expected a TLS certificate error, got {other}"),
        Ok(_) => panic!("the dial succeeded"),
    }
}

fn dialer_trusting(pem: &str) -> Dialer {
    Dialer::new()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .add_ca_pem(pem.as_bytes())
}

fn assert_says(reason: &str, words: &[&str]) {
    for w in words {
        assert!(reason.contains(w), "{w:?} missing from: {reason}");
    }
}

/// What `openssl req -x509 -newkey rsa -subj /CN=localhost -addext
/// subjectAltName=DNS:localhost,IP:127.0.0.1` makes: one self-signed
/// certificate that is a CA (basicConstraints CA:TRUE), and its key.
fn openssl_style_self_signed() -> (String, String) {
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
    let (cert, key) = openssl_style_self_signed();
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let addr = echo_server(Some(tls)).await;
    let (reason, e) = dial_error(
        &dialer_trusting(&cert),
        &format!("wss://localhost:{}/", addr.port()),
    )
    .await;
    // rustls's own words stay, for searching.
    assert!(format!("{e:?}").contains("CaUsedAsEndEntity"), "{e:?}");
    assert_says(
        &reason,
        &[
            "CaUsedAsEndEntity",
            "is a CA certificate (basicConstraints CA:TRUE",
            "used as the server's own certificate",
            "serve a leaf certificate signed by it",
            "dialtone serve --tls-self-signed",
        ],
    );
}

#[tokio::test]
async fn an_untrusted_issuer_says_to_trust_the_ca() {
    let ca = Ca::new("a CA nobody trusts");
    let tls = {
        let leaf = ca.issue(Leaf::default());
        ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap()
    };
    let addr = echo_server(Some(tls)).await;
    let other = Ca::new("another CA");
    let (reason, e) = dial_error(
        &dialer_trusting(&other.pem),
        &format!("wss://localhost:{}/", addr.port()),
    )
    .await;
    assert_eq!(e, CertificateError::UnknownIssuer);
    assert_says(
        &reason,
        &[
            "not issued by a CA this client trusts",
            "--cacert",
            "intermediate",
        ],
    );
}

#[tokio::test]
async fn a_name_mismatch_names_what_was_dialed_and_what_the_certificate_is_for() {
    let ca = Ca::new("dialtone names CA");
    let leaf = ca.issue(Leaf {
        names: &["localhost"],
        ..Leaf::default()
    });
    let tls = ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap();
    let addr = echo_server(Some(tls)).await;
    let (reason, e) = dial_error(
        &dialer_trusting(&ca.pem),
        &format!("wss://127.0.0.1:{}/", addr.port()),
    )
    .await;
    assert!(
        matches!(
            e,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "{e:?}"
    );
    assert_says(&reason, &["not valid for", "127.0.0.1", "localhost"]);
}

#[tokio::test]
async fn an_expired_certificate_says_renew_or_check_the_clock() {
    let ca = Ca::new("dialtone dates CA");
    let leaf = ca.issue(Leaf {
        expired: true,
        ..Leaf::default()
    });
    let tls = ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap();
    let addr = echo_server(Some(tls)).await;
    let (reason, _) = dial_error(
        &dialer_trusting(&ca.pem),
        &format!("wss://localhost:{}/", addr.port()),
    )
    .await;
    assert_says(&reason, &["has expired", "renew it", "clock"]);
}

#[tokio::test]
async fn a_certificate_not_valid_yet_says_check_the_clock() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dialtone future CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2090, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    let tls = ServerTls::from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let addr = echo_server(Some(tls)).await;
    let (reason, _) = dial_error(
        &dialer_trusting(&ca.pem()),
        &format!("wss://localhost:{}/", addr.port()),
    )
    .await;
    assert_says(&reason, &["not valid yet", "clock"]);
}
