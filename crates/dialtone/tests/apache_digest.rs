//! Digest authentication (RFC 7616) against a real server: Debian's apache2
//! with `mod_auth_digest` in front of a `mod_proxy_wstunnel` route to our
//! echo listener, started by the test on 127.0.0.1. Both faces dial it.

mod support;

use std::time::Duration;

use dialtone::http::StatusCode;
use dialtone::{Auth, Dialer, Error};
use md5::{Digest as _, Md5};
use support::{each_face, echo_server, round_trip_both, start_apache, ChildGuard, TempDir};

const REALM: &str = "dialtone digest";

/// apache2 on a free port: `/ws` needs Digest credentials alice:s3cret
/// (an htdigest file written here) and tunnels to our echo listener.
async fn apache() -> (ChildGuard, TempDir, u16) {
    let dir = TempDir::new("apache-digest");
    let ha1 = Md5::digest(format!("alice:{REALM}:s3cret").as_bytes());
    let ha1: String = ha1.iter().map(|b| format!("{b:02x}")).collect();
    dir.write("htdigest", format!("alice:{REALM}:{ha1}\n"));
    let backend = echo_server(None).await;
    let port = support::free_port();
    let root = dir.path().display();
    let body = format!(
        r#"
<Location "/ws">
    AuthType Digest
    AuthName "{REALM}"
    AuthDigestProvider file
    AuthUserFile "{root}/htdigest"
    Require valid-user
    ProxyPass "ws://127.0.0.1:{backend_port}/ws"
</Location>
"#,
        backend_port = backend.port()
    );
    let modules = [
        "authn_core",
        "authn_file",
        "authz_core",
        "authz_user",
        "auth_digest",
        "proxy",
        "proxy_http",
        "proxy_wstunnel",
    ];
    let child = start_apache(&dir, &modules, &body, port);
    (child, dir, port)
}

fn dialer() -> Dialer {
    Dialer::new().no_proxy().timeout(Duration::from_secs(10))
}

fn digest(user: &str, password: &str) -> Dialer {
    dialer().auth(Auth::Digest {
        user: user.into(),
        password: password.into(),
    })
}

#[tokio::test]
async fn digest_credentials_open_the_websocket_behind_apache() {
    let (apache, _dir, port) = apache().await;
    let url = format!("ws://127.0.0.1:{port}/ws");
    each_face(
        round_trip_both(&digest("alice", "s3cret"), &url).await,
        |r| r.unwrap_or_else(|e| panic!("{e}\napache log:\n{}", apache.log_text())),
    );
    // Credentials in the URL answer the Digest challenge too (after the
    // Basic they are first sent as, which apache refuses).
    let with_user = format!("ws://alice:s3cret@127.0.0.1:{port}/ws");
    each_face(round_trip_both(&dialer(), &with_user).await, |r| r.unwrap());
}

#[tokio::test]
async fn a_wrong_password_is_rejected_with_the_401_and_its_challenge() {
    let (_apache, _dir, port) = apache().await;
    let url = format!("ws://127.0.0.1:{port}/ws");
    for dialer in [
        digest("alice", "wrong"),
        digest("mallory", "s3cret"),
        dialer(),
    ] {
        each_face(round_trip_both(&dialer, &url).await, |r| match r {
            Err(Error::Rejected(r)) => {
                assert_eq!(r.status, StatusCode::UNAUTHORIZED);
                let challenge = r.headers["www-authenticate"].to_str().unwrap();
                assert!(challenge.starts_with("Digest "), "{challenge}");
                assert!(
                    challenge.contains(&format!("realm=\"{REALM}\"")),
                    "{challenge}"
                );
                assert!(!r.body.is_empty(), "apache's 401 page is kept");
            }
            other => panic!("expected a 401, got {other:?}"),
        });
    }
}
