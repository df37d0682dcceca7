//! Redirects, cookies and Basic authentication against a real HTTP server:
//! Debian's nginx in front of our plain listener, the way people deploy.

mod support;

use dialtone::http::StatusCode;
use dialtone::{CookieJar, Dialer, Error};
use support::{echo_server, round_trip, start_nginx, ChildGuard, TempDir};

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
    let jar = CookieJar::new();
    let dialer = Dialer::new().no_proxy().cookie_jar(jar.clone());
    let (mut ws, response) = dialer
        .dial(&format!("ws://127.0.0.1:{port}/old"))
        .await
        .unwrap();
    assert_eq!(response.url.path(), "/ws");
    ws.send("hi").await.unwrap();
    assert!(matches!(ws.recv().await, Some(Ok(dialtone::Message::Text(t))) if t == "hi"));
    assert!(jar.to_netscape().contains("\tsid\tn1"));

    // Without the jar, the cookie is missing after the redirect: 403.
    let err = Dialer::new()
        .no_proxy()
        .dial(&format!("ws://127.0.0.1:{port}/old"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Rejected(ref r) if r.status == StatusCode::FORBIDDEN),
        "{err:?}"
    );
    // And with redirects off, the 302 itself is reported.
    let err = Dialer::new()
        .no_proxy()
        .max_redirects(0)
        .dial(&format!("ws://127.0.0.1:{port}/old"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Redirect(_)), "{err:?}");
}

#[tokio::test]
async fn basic_auth_through_nginx() {
    let (_nginx, _dir, port) = nginx().await;
    let dialer = Dialer::new().no_proxy();
    match dialer.dial(&format!("ws://127.0.0.1:{port}/private")).await {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(r.headers["www-authenticate"], "Basic realm=\"dialtone\"");
            assert!(!r.body.is_empty(), "nginx's 401 page is kept");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let wrong = dialer
        .dial(&format!("ws://alice:nope@127.0.0.1:{port}/private"))
        .await;
    assert!(matches!(wrong, Err(Error::Rejected(ref r)) if r.status == StatusCode::UNAUTHORIZED));
    round_trip(
        &dialer,
        &format!("ws://alice:s3cret@127.0.0.1:{port}/private"),
    )
    .await
    .unwrap();
    let explicit = Dialer::new().no_proxy().auth(dialtone::Auth::Basic {
        user: "alice".into(),
        password: "s3cret".into(),
    });
    round_trip(&explicit, &format!("ws://127.0.0.1:{port}/private"))
        .await
        .unwrap();
}
