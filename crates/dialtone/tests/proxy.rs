//! Dialing through real proxies from Debian, started on 127.0.0.1 with
//! generated configs: tinyproxy (HTTP CONNECT, Basic auth) and microsocks
//! (SOCKS5, with and without user/password), for ws:// and wss://. Every
//! dial is made by both faces (`dial` and `dial_blocking`), which share the
//! proxy negotiations.

mod support;

use std::time::Duration;

use dialtone::proxy::ProxyError;
use dialtone::tls::ServerTls;
use dialtone::{Dialer, Error};
use support::{
    each_face, echo_server, free_port, microsocks, round_trip_both, tinyproxy, Ca, Leaf,
};

fn dialer() -> Dialer {
    Dialer::new().timeout(Duration::from_secs(10))
}

fn proxy_error(r: dialtone::Result<()>) -> ProxyError {
    match r {
        Err(Error::Proxy { source, proxy }) => {
            assert!(
                !proxy.contains("wrong") && !proxy.contains("s3cret"),
                "{proxy}"
            );
            source
        }
        other => panic!("expected a proxy error, got {other:?}"),
    }
}

/// Asserts that each face's dial failed with a proxy error matching `check`.
fn each_proxy_error(results: [dialtone::Result<()>; 2], check: impl Fn(&ProxyError) -> bool) {
    each_face(results, |r| {
        let e = proxy_error(r);
        assert!(check(&e), "{e:?}");
    });
}

#[tokio::test]
async fn http_connect_through_tinyproxy_ws_and_wss() {
    let plain = echo_server(None).await;
    let ca = Ca::new("proxy test CA");
    let leaf = ca.issue(Leaf::default());
    let tls = ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap();
    let secure = echo_server(Some(tls)).await;
    let proxy = tinyproxy(&[plain.port(), secure.port()], None);
    let via = format!("http://127.0.0.1:{}", proxy.port);

    let ws = format!("ws://127.0.0.1:{}/", plain.port());
    each_face(
        round_trip_both(&dialer().proxy(&via), &ws).await,
        Result::unwrap,
    );
    let wss = format!("wss://localhost:{}/", secure.port());
    let trusting = dialer().proxy(&via).add_ca_pem(ca.pem.as_bytes());
    each_face(round_trip_both(&trusting, &wss).await, Result::unwrap);

    // A port outside tinyproxy's ConnectPort list: 403 from the proxy.
    let other = echo_server(None).await;
    let url = format!("ws://127.0.0.1:{}/", other.port());
    each_proxy_error(round_trip_both(&dialer().proxy(&via), &url).await, |e| {
        matches!(e, ProxyError::Status { status: 403, .. })
    });
}

#[tokio::test]
async fn http_connect_basic_auth_and_wrong_password() {
    let target = echo_server(None).await;
    let proxy = tinyproxy(&[target.port()], Some(("alice", "s3cret")));
    let url = format!("ws://127.0.0.1:{}/", target.port());

    let right = dialer().proxy(format!("http://alice:s3cret@127.0.0.1:{}", proxy.port));
    each_face(round_trip_both(&right, &url).await, Result::unwrap);

    // tinyproxy 1.11 answers CONNECT with bad or no credentials with 401
    // (RFC 9110 says 407): either way the status is handed back.
    for via in [
        format!("http://alice:wrong@127.0.0.1:{}", proxy.port),
        format!("http://127.0.0.1:{}", proxy.port),
    ] {
        each_proxy_error(round_trip_both(&dialer().proxy(via), &url).await, |e| {
            matches!(
                e,
                ProxyError::Status {
                    status: 401 | 407,
                    ..
                }
            )
        });
    }
}

#[tokio::test]
async fn socks5_through_microsocks_ws_and_wss() {
    let plain = echo_server(None).await;
    let ca = Ca::new("proxy test CA");
    let leaf = ca.issue(Leaf::default());
    let tls = ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap();
    let secure = echo_server(Some(tls)).await;
    let socks = microsocks(None);

    for scheme in ["socks5", "socks5h"] {
        let via = format!("{scheme}://127.0.0.1:{}", socks.port);
        let ws = format!("ws://127.0.0.1:{}/", plain.port());
        each_face(round_trip_both(&dialer().proxy(&via), &ws).await, |r| {
            r.unwrap_or_else(|e| panic!("{scheme} ws: {e}"))
        });
        let wss = format!("wss://127.0.0.1:{}/", secure.port());
        let trusting = dialer().proxy(&via).add_ca_pem(ca.pem.as_bytes());
        each_face(round_trip_both(&trusting, &wss).await, |r| {
            r.unwrap_or_else(|e| panic!("{scheme} wss: {e}"))
        });
    }
}

#[tokio::test]
async fn socks5_names_resolved_here_or_by_the_proxy() {
    // socks5:// sends the address we resolve, socks5h:// sends the name
    // for microsocks to resolve; either way `localhost`'s first address.
    let ca = Ca::new("proxy test CA");
    let leaf = ca.issue(Leaf::default());
    let tls = ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap();
    let secure = support::echo_server_on(support::localhost_ip().await, Some(tls)).await;
    let socks = microsocks(None);
    for scheme in ["socks5", "socks5h"] {
        let via = format!("{scheme}://127.0.0.1:{}", socks.port);
        // wss:// checks the certificate against the name, not the address.
        let trusting = dialer().proxy(&via).add_ca_pem(ca.pem.as_bytes());
        let url = format!("wss://localhost:{}/", secure.port());
        each_face(round_trip_both(&trusting, &url).await, |r| {
            r.unwrap_or_else(|e| panic!("{scheme}: {e}"))
        });
    }
}

#[tokio::test]
async fn socks5_user_password_and_wrong_password() {
    let target = echo_server(None).await;
    let socks = microsocks(Some(("bob", "s3cret")));
    let url = format!("ws://127.0.0.1:{}/", target.port());

    let right = dialer().proxy(format!("socks5h://bob:s3cret@127.0.0.1:{}", socks.port));
    each_face(round_trip_both(&right, &url).await, Result::unwrap);

    let wrong = dialer().proxy(format!("socks5://bob:wrong@127.0.0.1:{}", socks.port));
    each_proxy_error(round_trip_both(&wrong, &url).await, |e| {
        matches!(e, ProxyError::AuthFailed)
    });

    let none = dialer().proxy(format!("socks5://127.0.0.1:{}", socks.port));
    each_proxy_error(round_trip_both(&none, &url).await, |e| {
        matches!(e, ProxyError::NoAcceptableMethod)
    });
}

#[tokio::test]
async fn socks5_target_refused_is_a_proxy_error() {
    let socks = microsocks(None);
    let closed = free_port();
    let via = dialer().proxy(format!("socks5://127.0.0.1:{}", socks.port));
    let url = format!("ws://127.0.0.1:{closed}/");
    each_proxy_error(round_trip_both(&via, &url).await, |e| {
        matches!(e, ProxyError::Refused { .. })
    });
}

#[tokio::test]
async fn unreachable_proxy_is_a_proxy_error() {
    let target = echo_server(None).await;
    let closed = free_port();
    let url = format!("ws://127.0.0.1:{}/", target.port());
    for scheme in ["http", "socks5"] {
        let via = dialer().proxy(format!("{scheme}://127.0.0.1:{closed}"));
        each_proxy_error(round_trip_both(&via, &url).await, |e| {
            matches!(e, ProxyError::Connect(_))
        });
    }
    // A bad proxy URL is reported by the dial.
    let bad = dialer().proxy("ftp://127.0.0.1:1");
    each_face(round_trip_both(&bad, &url).await, |r| {
        assert!(matches!(r, Err(Error::Url(_))), "{r:?}")
    });
}

/// A proxy that accepts TCP and never answers: the dial timeout covers
/// the negotiation, whichever the face.
#[tokio::test]
async fn a_silent_proxy_is_bounded_by_the_dial_timeout() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = tcp.accept().await {
            held.push(s);
        }
    });
    for scheme in ["http", "socks5h"] {
        let via = Dialer::new()
            .timeout(Duration::from_millis(300))
            .proxy(format!("{scheme}://127.0.0.1:{port}"));
        each_face(round_trip_both(&via, "ws://127.0.0.1:9/").await, |r| {
            assert!(matches!(r, Err(Error::Timeout(_))), "{scheme}: {r:?}")
        });
    }
    hold.abort();
}
