//! The listener's `Origin` policy (RFC 6455 §10.2): cross-site pages are
//! refused with 403 by default, non-browser clients and same-host pages are
//! not, and an allow list opens exactly what it lists.

use dialtone::http::StatusCode;
use dialtone::{Acceptor, Dialer, Error, Listener, Message, OriginPolicy};

/// An echo listener with `acceptor`; its port.
async fn server(acceptor: Acceptor) -> u16 {
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(acceptor);
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                let Ok((mut ws, _)) = incoming.handshake().await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.recv().await {
                    if msg.is_data() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Dials with `origin` (none if `None`) and echoes one message.
async fn dial(port: u16, origin: Option<&str>) -> Result<(), Error> {
    let mut dialer = Dialer::new();
    if let Some(origin) = origin {
        dialer = dialer.origin(origin);
    }
    let (mut ws, _) = dialer.dial(&format!("ws://127.0.0.1:{port}/")).await?;
    ws.send("ping").await?;
    match ws.recv().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "ping"),
        other => panic!("no echo: {other:?}"),
    }
    Ok(())
}

fn assert_forbidden(result: Result<(), Error>, origin: &str) {
    match result {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, StatusCode::FORBIDDEN);
            let body = String::from_utf8_lossy(&r.body);
            assert!(body.contains(origin), "the reason names {origin}: {body}");
        }
        other => panic!("{origin} was not refused: {other:?}"),
    }
}

#[tokio::test]
async fn default_policy_refuses_cross_site_pages_with_403() {
    let port = server(Acceptor::new()).await;
    assert_forbidden(
        dial(port, Some("http://evil.example")).await,
        "http://evil.example",
    );
    assert_forbidden(
        dial(port, Some("http://127.0.0.2:1234")).await,
        "http://127.0.0.2:1234",
    );
    // Same host, other port: another site as far as browsers go.
    assert_forbidden(
        dial(port, Some("http://127.0.0.1:1")).await,
        "http://127.0.0.1:1",
    );
}

#[tokio::test]
async fn default_policy_accepts_clients_without_origin_and_same_host_pages() {
    let port = server(Acceptor::new()).await;
    dial(port, None).await.unwrap();
    dial(port, Some(&format!("http://127.0.0.1:{port}")))
        .await
        .unwrap();
}

#[tokio::test]
async fn allow_list_opens_exactly_the_listed_origins() {
    let policy = OriginPolicy::allow_list(["http://127.0.0.2:8080"]).unwrap();
    let port = server(Acceptor::new().origin_policy(policy)).await;
    dial(port, Some("http://127.0.0.2:8080")).await.unwrap();
    assert_forbidden(
        dial(port, Some("http://127.0.0.2:8081")).await,
        "http://127.0.0.2:8081",
    );
    assert_forbidden(
        dial(port, Some("http://127.0.0.2:8080.evil.net")).await,
        "127.0.0.2",
    );
}

#[tokio::test]
async fn required_origin_refuses_clients_without_one() {
    let policy = OriginPolicy::same_host().allow_missing(false);
    let port = server(Acceptor::new().origin_policy(policy)).await;
    match dial(port, None).await {
        Err(Error::Rejected(r)) => assert_eq!(r.status, StatusCode::FORBIDDEN),
        other => panic!("accepted without Origin: {other:?}"),
    }
}

#[tokio::test]
async fn any_policy_accepts_every_origin() {
    let port = server(Acceptor::new().origin_policy(OriginPolicy::any())).await;
    dial(port, Some("http://evil.example")).await.unwrap();
}
