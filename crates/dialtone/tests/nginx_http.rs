//! Redirects, cookies and Basic authentication against a real HTTP server:
//! Debian's nginx in front of our plain listener, the way people deploy.
//! Both faces (`dial` and `dial_blocking`) dial it.

mod support;

use dialtone::http::StatusCode;
use dialtone::{CookieJar, Dialer, Error};
use support::{
    dial_each, each_face, echo_server, round_trip_both, start_nginx, ChildGuard, TempDir,
};

/// nginx on a free port: `/old` redirects to `/ws` and sets a cookie, `/ws`
/// proxies to our echo listener only with that cookie, `/private` only with
/// Basic credentials alice:s3cret.
async fn nginx() -> (ChildGuard, TempDir, u16) {
    let dir = TempDir::new("nginx-http");
    dir.write("htpasswd", "alice:{PLAIN}s3cret\n");
    let backend = echo_server(None).await;
    let port = support::free_port();
    let prefix = dir.path().display();
    let proxy = format!(
        "proxy_pass http://127.0.0.1:{};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection \"upgrade\";",
        backend.port()
    );
    let servers = format!(
        r#"
    server {{
        listen 127.0.0.1:{port};
        location = /old {{
            add_header Set-Cookie "sid=n1; Path=/" always;
            return 302 /ws;
        }}
        location = /ws {{
            if ($cookie_sid != "n1") {{ return 403; }}
            {proxy}
        }}
        location = /private {{
            auth_basic "dialtone";
            auth_basic_user_file {prefix}/htpasswd;
            {proxy}
        }}
    }}
"#
    );
    let child = start_nginx(&dir, &servers, port);
    (child, dir, port)
}

#[tokio::test]
async fn follows_nginx_redirect_with_the_cookie_it_set() {
    let (_nginx, _dir, port) = nginx().await;
    let url = format!("ws://127.0.0.1:{port}/old");
    // A jar for each face, to see that each stored the cookie.
    let jars = [CookieJar::new(), CookieJar::new()];
    let dialers = jars
        .clone()
        .map(|jar| Dialer::new().no_proxy().cookie_jar(jar));
    let [async_face, blocking_face] = dial_each([&dialers[0], &dialers[1]], &url).await;
    let [async_jar, blocking_jar] = jars;
    each_face(
        [(async_face, async_jar), (blocking_face, blocking_jar)],
        |(response, jar)| {
            assert_eq!(response.unwrap().url.path(), "/ws");
            assert!(jar.to_netscape().contains("\tsid\tn1"));
        },
    );

    // Without the jar, the cookie is missing after the redirect: 403.
    each_face(
        round_trip_both(&Dialer::new().no_proxy(), &url).await,
        |r| {
            assert!(
                matches!(r, Err(Error::Rejected(ref r)) if r.status == StatusCode::FORBIDDEN),
                "{r:?}"
            )
        },
    );
    // And with redirects off, the 302 itself is reported.
    let no_redirects = Dialer::new().no_proxy().max_redirects(0);
    each_face(round_trip_both(&no_redirects, &url).await, |r| {
        assert!(matches!(r, Err(Error::Redirect(_))), "{r:?}")
    });
}

#[tokio::test]
async fn basic_auth_through_nginx() {
    let (_nginx, _dir, port) = nginx().await;
    let dialer = Dialer::new().no_proxy();
    let url = format!("ws://127.0.0.1:{port}/private");
    each_face(round_trip_both(&dialer, &url).await, |r| match r {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(r.headers["www-authenticate"], "Basic realm=\"dialtone\"");
            assert!(!r.body.is_empty(), "nginx's 401 page is kept");
        }
        other => panic!("expected a 401, got {other:?}"),
    });
    let wrong = format!("ws://alice:nope@127.0.0.1:{port}/private");
    each_face(round_trip_both(&dialer, &wrong).await, |r| {
        assert!(matches!(r, Err(Error::Rejected(ref r)) if r.status == StatusCode::UNAUTHORIZED))
    });
    let right = format!("ws://alice:s3cret@127.0.0.1:{port}/private");
    each_face(round_trip_both(&dialer, &right).await, Result::unwrap);
    let explicit = Dialer::new().no_proxy().auth(dialtone::Auth::Basic {
        user: "alice".into(),
        password: "s3cret".into(),
    });
    each_face(round_trip_both(&explicit, &url).await, Result::unwrap);
}
