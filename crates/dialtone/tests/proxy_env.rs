//! `*_PROXY` / `NO_PROXY` from the process environment, read at each dial
//! by both faces. A test binary of its own: it sets environment variables,
//! which every test in a binary shares.

mod support;

use dialtone::proxy::ProxyError;
use dialtone::{Dialer, Error};
use support::{each_face, echo_server, round_trip_both, tinyproxy};

#[tokio::test]
async fn env_proxies_are_used_by_both_faces_and_no_proxy_skips_them() {
    let allowed = echo_server(None).await;
    let forbidden = echo_server(None).await;
    // tinyproxy tunnels to `allowed` only: a 403 for `forbidden` shows the
    // dial went through it.
    let proxy = tinyproxy(&[allowed.port()], None);
    let via = format!("http://127.0.0.1:{}", proxy.port);
    for name in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        std::env::remove_var(name);
    }
    std::env::set_var("http_proxy", &via);

    let dialer = Dialer::new();
    let ok = format!("ws://127.0.0.1:{}/", allowed.port());
    each_face(round_trip_both(&dialer, &ok).await, Result::unwrap);
    let refused = format!("ws://127.0.0.1:{}/", forbidden.port());
    each_face(round_trip_both(&dialer, &refused).await, |r| match r {
        Err(Error::Proxy {
            source: ProxyError::Status { status: 403, .. },
            ..
        }) => {}
        other => panic!("expected tinyproxy's 403, got {other:?}"),
    });
    // `no_proxy()` ignores the environment.
    each_face(
        round_trip_both(&Dialer::new().no_proxy(), &refused).await,
        Result::unwrap,
    );

    // NO_PROXY exempts the host: dialed directly.
    std::env::set_var("NO_PROXY", "localhost, 127.0.0.0/8");
    each_face(round_trip_both(&dialer, &refused).await, Result::unwrap);
    std::env::remove_var("NO_PROXY");

    // ws:// does not use HTTPS_PROXY; ALL_PROXY is the fallback.
    std::env::remove_var("http_proxy");
    std::env::set_var("HTTPS_PROXY", "http://127.0.0.1:1");
    each_face(round_trip_both(&dialer, &refused).await, Result::unwrap);
    std::env::set_var("ALL_PROXY", &via);
    each_face(round_trip_both(&dialer, &refused).await, |r| {
        assert!(matches!(r, Err(Error::Proxy { .. })), "{r:?}")
    });
}
