//! Which web pages may open a WebSocket to `serve`: the library's Origin
//! policy from `--allow-origin` / `--allow-any-origin`, and, on a loopback
//! listener, a check of the `Host` that the Origin check alone cannot do.
//!
//! The same-host rule accepts a page whose origin is the host and port
//! the request was sent to. A page of `http://evil.example:9001` whose
//! name its owner makes resolve to 127.0.0.1 (DNS rebinding) sends
//! `Host: evil.example:9001` and `Origin: http://evil.example:9001`: the
//! same host. A listener bound to loopback can only be reached through a
//! name that resolves to loopback, and the names that do so legitimately
//! are `localhost` (and `*.localhost`, RFC 6761) and the addresses
//! themselves; so there, a browser's handshake (one with `Origin`) that
//! names another host is refused, unless `--allow-origin` lists its
//! origin. Clients that send no `Origin` are not browsers and are not
//! concerned.
//!
//! Nor are handshakes a reverse proxy forwards (nginx or HAProxy on the
//! same machine, `docs/DEPLOY.md`): those carry the site's real name in
//! `Host`, and the proxy says it is there with `Forwarded`,
//! `X-Forwarded-For` or `X-Real-IP`, which a page cannot add to its
//! WebSocket handshake (the browser API takes no headers). The Origin
//! check still applies to them.

use std::net::IpAddr;

use dialtone::http::header::{HeaderName, FORWARDED, ORIGIN};
use dialtone::http::{Request, StatusCode};
use dialtone::proto::origin::request_host;
use dialtone::{Origin, OriginPolicy, Reject};

/// `--allow-origin`, `--allow-any-origin`, or the same host only.
pub(crate) fn policy(allow_any: bool, listed: &[Origin]) -> OriginPolicy {
    if allow_any {
        return OriginPolicy::any();
    }
    if listed.is_empty() {
        return OriginPolicy::same_host();
    }
    let listed: Vec<String> = listed.iter().map(Origin::to_string).collect();
    // Parsed by clap already: these are origins.
    OriginPolicy::allow_list(&listed)
        .unwrap_or_else(|_| OriginPolicy::same_host())
        .or_same_host(true)
}

/// The `Host` check of a loopback listener (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct LoopbackHosts {
    /// `--allow-origin`: these pages may use any name.
    listed: Vec<Origin>,
}

impl LoopbackHosts {
    /// The check for a listener bound to `bound`, if it needs one: on a
    /// loopback address, and unless every origin is allowed.
    pub(crate) fn for_listener(bound: IpAddr, allow_any: bool, listed: &[Origin]) -> Option<Self> {
        (bound.is_loopback() && !allow_any).then(|| LoopbackHosts {
            listed: listed.to_vec(),
        })
    }

    /// Refuses, with 403, a browser's handshake that names a host other
    /// than a loopback one, from a page `--allow-origin` does not list.
    pub(crate) fn check(&self, request: &Request<()>) -> Result<(), Reject> {
        let Some(origin) = request.headers().get(ORIGIN) else {
            return Ok(());
        };
        let listed = origin
            .to_str()
            .ok()
            .and_then(|o| Origin::parse(o.trim()).ok())
            .is_some_and(|o| self.listed.contains(&o));
        if listed || from_a_proxy(request) {
            return Ok(());
        }
        let host = request_host(request).unwrap_or("").trim();
        let name = host_name(host);
        if is_loopback_name(name) {
            return Ok(());
        }
        Err(Reject::new(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not a loopback name, and this server listens on loopback only: \
                 a page of another site whose name was made to resolve here (DNS rebinding)?"
            ),
        ))
    }
}

/// Whether a reverse proxy says it forwarded the request (see the module
/// docs).
fn from_a_proxy(request: &Request<()>) -> bool {
    let headers = request.headers();
    headers.contains_key(FORWARDED)
        || headers.contains_key(HeaderName::from_static("x-forwarded-for"))
        || headers.contains_key(HeaderName::from_static("x-real-ip"))
}

/// The host of a `Host` header, without its port (and an IPv6 address
/// without its brackets).
fn host_name(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split_once(']').map_or(v6, |(addr, _)| addr);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `localhost`, a name under `.localhost` (RFC 6761: always loopback, and
/// browsers resolve it so themselves), or a loopback address.
fn is_loopback_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone::http::header::HOST;

    fn request(host: &str, origin: Option<&str>) -> Request<()> {
        let mut b = Request::get("/").header(HOST, host);
        if let Some(o) = origin {
            b = b.header(ORIGIN, o);
        }
        b.body(()).unwrap()
    }

    fn check() -> LoopbackHosts {
        LoopbackHosts::for_listener("127.0.0.1".parse().unwrap(), false, &[]).unwrap()
    }

    #[test]
    fn loopback_names_and_addresses_pass() {
        for host in [
            "127.0.0.1:9001",
            "127.0.0.2:9001",
            "localhost:9001",
            "LocalHost",
            "app.localhost:9001",
            "localhost.:9001",
            "[::1]:9001",
        ] {
            let origin = format!("http://{host}");
            assert!(
                check().check(&request(host, Some(&origin))).is_ok(),
                "{host}"
            );
        }
    }

    #[test]
    fn a_rebound_name_is_refused_for_browsers_only() {
        let r = request("evil.example:9001", Some("http://evil.example:9001"));
        let reject = check().check(&r).unwrap_err();
        assert_eq!(reject.status, StatusCode::FORBIDDEN);
        assert!(reject.reason.contains("evil.example"), "{}", reject.reason);
        for host in ["localhost.evil.example", "127.0.0.1.evil.example:9001"] {
            let r = request(host, Some("http://x"));
            assert!(check().check(&r).is_err(), "{host}");
        }
        // No Origin: not a browser.
        assert!(check().check(&request("evil.example:9001", None)).is_ok());
    }

    #[test]
    fn on_http2_the_name_is_the_authority() {
        // An extended CONNECT (RFC 8441) has `:authority` and no `Host`.
        let h2 = |authority: &str| {
            Request::connect(format!("https://{authority}/"))
                .header(ORIGIN, format!("https://{authority}"))
                .body(())
                .unwrap()
        };
        assert!(check().check(&h2("127.0.0.1:9001")).is_ok());
        assert!(check().check(&h2("localhost:9001")).is_ok());
        let reject = check().check(&h2("evil.example:9001")).unwrap_err();
        assert!(reject.reason.contains("evil.example"), "{}", reject.reason);
    }

    #[test]
    fn a_handshake_a_reverse_proxy_forwards_keeps_its_sites_name() {
        for proxy_header in ["x-forwarded-for", "forwarded", "x-real-ip"] {
            let r = Request::get("/")
                .header(HOST, "ws.example.com")
                .header(ORIGIN, "https://ws.example.com")
                .header(proxy_header, "for=198.51.100.7")
                .body(())
                .unwrap();
            assert!(check().check(&r).is_ok(), "{proxy_header}");
        }
    }

    #[test]
    fn listed_origins_may_use_any_name() {
        let listed = [Origin::parse("http://myapp.test:8080").unwrap()];
        let check = LoopbackHosts::for_listener("::1".parse().unwrap(), false, &listed).unwrap();
        let r = request("myapp.test:9001", Some("http://myapp.test:8080"));
        assert!(check.check(&r).is_ok());
        let r = request("myapp.test:9001", Some("http://myapp.test:9001"));
        assert!(check.check(&r).is_err());
    }

    #[test]
    fn only_loopback_listeners_without_allow_any_origin_check() {
        assert!(LoopbackHosts::for_listener("0.0.0.0".parse().unwrap(), false, &[]).is_none());
        assert!(LoopbackHosts::for_listener("127.0.0.1".parse().unwrap(), true, &[]).is_none());
    }
}
