//! Dialing through real proxies from Debian, started on 127.0.0.1 with
//! generated configs: tinyproxy (HTTP CONNECT, Basic auth) and microsocks
//! (SOCKS5, with and without user/password), for ws:// and wss://.

mod support;

use std::process::Command;
use std::time::Duration;

use dialtone::proxy::ProxyError;
use dialtone::tls::ServerTls;
use dialtone::{Dialer, Error};
use support::{echo_server, free_port, require, round_trip, Ca, ChildGuard, Leaf, TempDir};

/// A tinyproxy on 127.0.0.1 that may CONNECT only to `allowed_ports`.
struct Tinyproxy {
    port: u16,
    _child: ChildGuard,
    _dir: TempDir,
}

fn tinyproxy(allowed_ports: &[u16], basic_auth: Option<(&str, &str)>) -> Tinyproxy {
    let bin = require("tinyproxy", "tinyproxy");
    let dir = TempDir::new("tinyproxy");
    let port = free_port();
    let d = dir.path().display();
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\n\
         LogFile \"{d}/tinyproxy.log\"\nLogLevel Info\nPidFile \"{d}/tinyproxy.pid\"\n\
         Allow 127.0.0.1\n"
    );
    // Without ConnectPort lines tinyproxy would allow every port; with
    // them, only these (Debian's default config allows 443 and 563 only).
    for p in allowed_ports {
        conf.push_str(&format!("ConnectPort {p}\n"));
    }
    if let Some((user, password)) = basic_auth {
        conf.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    let conf = dir.write("tinyproxy.conf", conf);
    let mut cmd = Command::new(bin);
    cmd.arg("-d").arg("-c").arg(conf);
    let mut child = ChildGuard::spawn("tinyproxy", cmd, &dir.path().join("tinyproxy.log"));
    child.wait_for_port(port);
    Tinyproxy {
        port,
        _child: child,
        _dir: dir,
    }
}

/// A microsocks SOCKS5 server on 127.0.0.1, with user/password if given.
struct Microsocks {
    port: u16,
    _child: ChildGuard,
    _dir: TempDir,
}

fn microsocks(auth: Option<(&str, &str)>) -> Microsocks {
    let bin = require("microsocks", "microsocks");
    let dir = TempDir::new("microsocks");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, password)) = auth {
        cmd.args(["-u", user, "-P", password]);
    }
    let mut child = ChildGuard::spawn("microsocks", cmd, &dir.path().join("microsocks.log"));
    child.wait_for_port(port);
    Microsocks {
        port,
        _child: child,
        _dir: dir,
    }
}

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

#[tokio::test]
async fn http_connect_through_tinyproxy_ws_and_wss() {
    let plain = echo_server(None).await;
    let ca = Ca::new("proxy test CA");
    let leaf = ca.issue(Leaf::default());
    let tls = ServerTls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap();
    let secure = echo_server(Some(tls)).await;
    let proxy = tinyproxy(&[plain.port(), secure.port()], None);
    let via = format!("http://127.0.0.1:{}", proxy.port);

    round_trip(
        &dialer().proxy(&via),
        &format!("ws://127.0.0.1:{}/", plain.port()),
    )
    .await
    .unwrap();
    round_trip(
        &dialer().proxy(&via).add_ca_pem(ca.pem.as_bytes()),
        &format!("wss://localhost:{}/", secure.port()),
    )
    .await
    .unwrap();

    // A port outside tinyproxy's ConnectPort list: 403 from the proxy.
    let other = echo_server(None).await;
    let e = proxy_error(
        round_trip(
            &dialer().proxy(&via),
            &format!("ws://127.0.0.1:{}/", other.port()),
        )
        .await,
    );
    assert!(matches!(e, ProxyError::Status { status: 403, .. }), "{e:?}");
}

#[tokio::test]
async fn http_connect_basic_auth_and_wrong_password() {
    let target = echo_server(None).await;
    let proxy = tinyproxy(&[target.port()], Some(("alice", "s3cret")));
    let url = format!("ws://127.0.0.1:{}/", target.port());

    round_trip(
        &dialer().proxy(format!("http://alice:s3cret@127.0.0.1:{}", proxy.port)),
        &url,
    )
    .await
    .unwrap();

    let e = proxy_error(
        round_trip(
            &dialer().proxy(format!("http://alice:wrong@127.0.0.1:{}", proxy.port)),
            &url,
        )
        .await,
    );
    // tinyproxy 1.11 answers CONNECT with bad or no credentials with 401
    // (RFC 9110 says 407): either way the status is handed back.
    assert!(
        matches!(
            e,
            ProxyError::Status {
                status: 401 | 407,
                ..
            }
        ),
        "{e:?}"
    );

    let e = proxy_error(
        round_trip(
            &dialer().proxy(format!("http://127.0.0.1:{}", proxy.port)),
            &url,
        )
        .await,
    );
    assert!(
        matches!(
            e,
            ProxyError::Status {
                status: 401 | 407,
                ..
            }
        ),
        "{e:?}"
    );
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
        round_trip(
            &dialer().proxy(&via),
            &format!("ws://127.0.0.1:{}/", plain.port()),
        )
        .await
        .unwrap_or_else(|e| panic!("{scheme} ws: {e}"));
        round_trip(
            &dialer().proxy(&via).add_ca_pem(ca.pem.as_bytes()),
            &format!("wss://127.0.0.1:{}/", secure.port()),
        )
        .await
        .unwrap_or_else(|e| panic!("{scheme} wss: {e}"));
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
        round_trip(
            &dialer().proxy(&via).add_ca_pem(ca.pem.as_bytes()),
            &format!("wss://localhost:{}/", secure.port()),
        )
        .await
        .unwrap_or_else(|e| panic!("{scheme}: {e}"));
    }
}

#[tokio::test]
async fn socks5_user_password_and_wrong_password() {
    let target = echo_server(None).await;
    let socks = microsocks(Some(("bob", "s3cret")));
    let url = format!("ws://127.0.0.1:{}/", target.port());

    round_trip(
        &dialer().proxy(format!("socks5h://bob:s3cret@127.0.0.1:{}", socks.port)),
        &url,
    )
    .await
    .unwrap();

    let e = proxy_error(
        round_trip(
            &dialer().proxy(format!("socks5://bob:wrong@127.0.0.1:{}", socks.port)),
            &url,
        )
        .await,
    );
    assert!(matches!(e, ProxyError::AuthFailed), "{e:?}");

    let e = proxy_error(
        round_trip(
            &dialer().proxy(format!("socks5://127.0.0.1:{}", socks.port)),
            &url,
        )
        .await,
    );
    assert!(matches!(e, ProxyError::NoAcceptableMethod), "{e:?}");
}

#[tokio::test]
async fn socks5_target_refused_is_a_proxy_error() {
    let socks = microsocks(None);
    let closed = free_port();
    let e = proxy_error(
        round_trip(
            &dialer().proxy(format!("socks5://127.0.0.1:{}", socks.port)),
            &format!("ws://127.0.0.1:{closed}/"),
        )
        .await,
    );
    assert!(matches!(e, ProxyError::Refused { .. }), "{e:?}");
}

#[tokio::test]
async fn unreachable_proxy_is_a_proxy_error() {
    let target = echo_server(None).await;
    let closed = free_port();
    for scheme in ["http", "socks5"] {
        let e = proxy_error(
            round_trip(
                &dialer().proxy(format!("{scheme}://127.0.0.1:{closed}")),
                &format!("ws://127.0.0.1:{}/", target.port()),
            )
            .await,
        );
        assert!(matches!(e, ProxyError::Connect(_)), "{e:?}");
    }
    // A bad proxy URL is reported by the dial.
    let r = round_trip(
        &dialer().proxy("ftp://127.0.0.1:1"),
        &format!("ws://127.0.0.1:{}/", target.port()),
    )
    .await;
    assert!(matches!(r, Err(Error::Url(_))), "{r:?}");
}
