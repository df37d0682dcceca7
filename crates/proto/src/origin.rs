//! Which web pages may open a WebSocket to a server: the `Origin` check
//! (RFC 6455 §4.2.2 item 7, §10.2).
//!
//! Browsers send `Origin` (the scheme, host and port of the page, RFC 6454)
//! on every WebSocket handshake, and let a page connect to any host: a
//! server that does not look at `Origin` can be driven by any page its
//! user has open (cross-site WebSocket hijacking). Clients that are not
//! browsers usually send no `Origin` at all.
//!
//! [`OriginPolicy`] decides; matching is exact on scheme, host (ASCII case
//! folded) and port (the scheme's default when absent), never by prefix,
//! suffix or substring, so `https://example.com.evil.net` is not
//! `https://example.com`.

use std::fmt;

use http::header::{HOST, ORIGIN};
use http::{Request, StatusCode};

use crate::handshake::Reject;

/// An origin as RFC 6454 serializes it: `scheme://host[:port]`, normalized
/// (lower case, default port filled in) so that equal origins compare equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// An origin that could not be parsed (see [`Origin::parse`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin {input:?}: {why}")]
pub struct InvalidOrigin {
    input: String,
    why: &'static str,
}

impl Origin {
    /// Parses `scheme://host[:port]` with an optional trailing `/`. The
    /// scheme must be `http`, `https`, `ws` or `wss` (or another scheme
    /// with an explicit port); paths, queries, user info and `null` are
    /// refused: none of them is an origin a server can allow.
    pub fn parse(input: &str) -> Result<Origin, InvalidOrigin> {
        let bad = |why| InvalidOrigin {
            input: input.to_owned(),
            why,
        };
        let (scheme, rest) = input.split_once("://").ok_or_else(|| bad("no scheme"))?;
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(bad("bad scheme"));
        }
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains(['/', '?', '#', '@', '\\', ' ']) {
            return Err(bad("an origin has no path, query, fragment or user info"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("bad IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
                None => (authority.to_ascii_lowercase(), None),
            }
        };
        if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
            return Err(bad("bad host"));
        }
        let port = match port {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| bad("port out of range"))?
            }
            Some(_) => return Err(bad("bad port")),
            None => {
                default_port(&scheme).ok_or_else(|| bad("no port and no default for scheme"))?
            }
        };
        Ok(Origin { scheme, host, port })
    }

    /// The scheme, lower case.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host, lower case; IPv6 addresses in brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, the scheme's default if none was given.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if default_port(&self.scheme) != Some(self.port) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Which `Origin`s a server accepts a WebSocket handshake from.
///
/// The default, [`OriginPolicy::same_host`] with requests without `Origin`
/// allowed, refuses exactly the cross-site handshakes a browser makes on a
/// page's behalf, and nothing a non-browser client sends (gorilla/websocket
/// has the same default). Servers meant to be reached from pages on other
/// hosts list them with [`OriginPolicy::allow_list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPolicy {
    rule: OriginRule,
    allow_missing: bool,
    or_same_host: bool,
}

/// The rule an [`OriginPolicy`] applies to a request that has an `Origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginRule {
    /// Every origin, `null` included: for public servers whose WebSockets
    /// carry no ambient authority (no cookies, no local access).
    Any,
    /// Only an origin whose host and port are those of the request's `Host`
    /// header: a page served by this same server.
    SameHost,
    /// Only these origins (and, like `SameHost`, none other).
    AllowList(Vec<Origin>),
}

impl Default for OriginPolicy {
    fn default() -> Self {
        OriginPolicy::same_host()
    }
}

impl OriginPolicy {
    /// Any origin, and requests without one.
    pub fn any() -> Self {
        OriginPolicy {
            rule: OriginRule::Any,
            allow_missing: true,
            or_same_host: false,
        }
    }

    /// Origins on the host and port the request was sent to, and requests
    /// without one (the default).
    pub fn same_host() -> Self {
        OriginPolicy {
            rule: OriginRule::SameHost,
            allow_missing: true,
            or_same_host: false,
        }
    }

    /// Exactly these origins (`scheme://host[:port]`), and requests without
    /// one. Add [`OriginPolicy::or_same_host`] to keep pages of this server too.
    pub fn allow_list<I, S>(origins: I) -> Result<Self, InvalidOrigin>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .map(|o| Origin::parse(o.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OriginPolicy {
            rule: OriginRule::AllowList(list),
            allow_missing: true,
            or_same_host: false,
        })
    }

    /// Whether a request without `Origin` (a client that is not a browser)
    /// is accepted; `true` unless set otherwise.
    pub fn allow_missing(mut self, allow: bool) -> Self {
        self.allow_missing = allow;
        self
    }

    /// The rule for requests that carry an `Origin`.
    pub fn rule(&self) -> &OriginRule {
        &self.rule
    }

    /// Accepts the request, or refuses it with `403 Forbidden` and a
    /// one-line reason naming the origin.
    pub fn check<B>(&self, request: &Request<B>) -> Result<(), Reject> {
        let forbidden = |why: String| Err(Reject::new(StatusCode::FORBIDDEN, why));
        let mut values = request.headers().get_all(ORIGIN).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            if request.headers().contains_key(ORIGIN) {
                return forbidden("more than one Origin header".into());
            }
            return if self.allow_missing {
                Ok(())
            } else {
                forbidden("an Origin header is required".into())
            };
        };
        if self.rule == OriginRule::Any {
            return Ok(());
        }
        let Ok(text) = value.to_str() else {
            return forbidden("the Origin header is not ASCII".into());
        };
        let Ok(origin) = Origin::parse(text.trim()) else {
            // `null` (sandboxed pages, files) and anything unparsable is
            // no origin we could have allowed.
            return forbidden(format!("origin {text:?} is not allowed"));
        };
        let allowed = match &self.rule {
            OriginRule::Any => true,
            OriginRule::SameHost => same_host(&origin, request),
            OriginRule::AllowList(list) => {
                list.contains(&origin) || (self.or_same_host && same_host(&origin, request))
            }
        };
        if allowed {
            Ok(())
        } else {
            forbidden(format!("origin {origin} is not allowed"))
        }
    }

    /// With an allow list: whether origins on the request's own host and
    /// port are accepted too (a server that serves its own pages and lists
    /// other sites). Other rules ignore it.
    pub fn or_same_host(mut self, also: bool) -> Self {
        self.or_same_host = also;
        self
    }
}

/// The host (and port, if given) a request was sent to: its `Host` header,
/// or, on HTTP/2, which has none, its `:authority`. `None` when neither is
/// there or `Host` is not visible ASCII.
///
/// ```
/// use dialtone_proto::http::Request;
/// use dialtone_proto::origin::request_host;
/// let h1 = Request::get("/").header("host", "example.com:9001").body(()).unwrap();
/// assert_eq!(request_host(&h1), Some("example.com:9001"));
/// let h2 = Request::connect("https://example.com/chat").body(()).unwrap();
/// assert_eq!(request_host(&h2), Some("example.com"));
/// ```
pub fn request_host<B>(request: &Request<B>) -> Option<&str> {
    match request.headers().get(HOST) {
        Some(h) => h.to_str().ok(),
        None => request.uri().authority().map(|a| a.as_str()),
    }
}

/// Whether `origin`'s host and port are those the request was sent to
/// ([`request_host`]), whose missing port is the origin scheme's default.
fn same_host<B>(origin: &Origin, request: &Request<B>) -> bool {
    let Some(host) = request_host(request) else {
        return false;
    };
    let scheme = match origin.scheme() {
        "https" | "wss" => "https",
        _ => "http",
    };
    match Origin::parse(&format!("{scheme}://{}", host.trim())) {
        Ok(target) => target.host == origin.host && target.port == origin.port,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str, origins: &[&str]) -> Request<()> {
        let mut b = Request::get("/").header(HOST, host);
        for o in origins {
            b = b.header(ORIGIN, *o);
        }
        b.body(()).unwrap()
    }

    fn allows(policy: &OriginPolicy, host: &str, origin: &str) -> bool {
        policy.check(&request(host, &[origin])).is_ok()
    }

    #[test]
    fn same_host_on_http2_reads_the_authority() {
        // HTTP/2 has no Host header: the :authority is the URI's.
        let request = |origin: &str| {
            Request::builder()
                .method("CONNECT")
                .uri("https://chat.example:8443/ws")
                .header(ORIGIN, origin)
                .body(())
                .unwrap()
        };
        let policy = OriginPolicy::same_host();
        assert!(policy.check(&request("https://chat.example:8443")).is_ok());
        assert!(policy.check(&request("https://evil.example:8443")).is_err());
        assert!(policy.check(&request("https://chat.example")).is_err());
    }

    #[test]
    fn parse_normalizes_case_and_default_ports() {
        let a = Origin::parse("HTTPS://Example.COM").unwrap();
        let b = Origin::parse("https://example.com:443").unwrap();
        let c = Origin::parse("https://example.com/").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_string(), "https://example.com");
        assert_eq!(a.port(), 443);
        assert_ne!(a, Origin::parse("http://example.com").unwrap());
        assert_ne!(a, Origin::parse("https://example.com:8443").unwrap());
        assert_eq!(
            Origin::parse("http://[::1]:9001").unwrap().to_string(),
            "http://[::1]:9001"
        );
    }

    #[test]
    fn parse_refuses_what_is_not_an_origin() {
        for bad in [
            "null",
            "",
            "example.com",
            "https://",
            "https://example.com/path",
            "https://example.com?q",
            "https://user@example.com",
            "https://example.com:",
            "https://example.com:99999",
            "https://example.com:8x",
            "https://[::1",
            "https://[zz]:1",
            "chrome-extension://abcdef",
            "https://a b",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn same_host_accepts_the_page_of_the_host_it_was_sent_to() {
        let p = OriginPolicy::same_host();
        assert!(allows(&p, "127.0.0.1:9001", "http://127.0.0.1:9001"));
        assert!(allows(&p, "Example.com", "https://EXAMPLE.com"));
        assert!(allows(&p, "example.com", "http://example.com:80"));
        assert!(allows(&p, "example.com:443", "https://example.com"));
        assert!(allows(&p, "[::1]:9001", "http://[::1]:9001"));
    }

    #[test]
    fn same_host_refuses_other_hosts_ports_and_suffix_tricks() {
        let p = OriginPolicy::same_host();
        assert!(!allows(&p, "127.0.0.1:9001", "http://127.0.0.2:9001"));
        assert!(!allows(&p, "127.0.0.1:9001", "http://127.0.0.1:9002"));
        assert!(!allows(&p, "127.0.0.1:9001", "http://127.0.0.1"));
        assert!(!allows(&p, "example.com", "https://example.com.evil.net"));
        assert!(!allows(&p, "example.com", "https://evilexample.com"));
        assert!(!allows(&p, "example.com", "https://example.com@evil.net"));
        assert!(!allows(&p, "example.com", "null"));
        assert!(!allows(&p, "example.com:80", "https://example.com"));
    }

    #[test]
    fn allow_list_matches_exactly() {
        let p =
            OriginPolicy::allow_list(["https://example.com", "http://127.0.0.2:8080/"]).unwrap();
        assert!(allows(&p, "ws.example.org", "https://example.com"));
        assert!(allows(&p, "ws.example.org", "https://example.com:443"));
        assert!(allows(&p, "ws.example.org", "HTTP://127.0.0.2:8080"));
        assert!(!allows(
            &p,
            "ws.example.org",
            "https://example.com.evil.net"
        ));
        assert!(!allows(&p, "ws.example.org", "https://sub.example.com"));
        assert!(!allows(&p, "ws.example.org", "http://example.com"));
        assert!(!allows(&p, "ws.example.org", "http://127.0.0.2:8081"));
        assert!(!allows(&p, "ws.example.org", "null"));
        // Not the server's own pages, unless asked.
        assert!(!allows(&p, "ws.example.org", "https://ws.example.org"));
        let p = p.or_same_host(true);
        assert!(allows(&p, "ws.example.org", "https://ws.example.org"));
        assert!(allows(&p, "ws.example.org", "https://example.com"));
    }

    #[test]
    fn one_trailing_slash_is_ignored_on_both_sides_and_no_more() {
        let p = OriginPolicy::allow_list(["https://example.com/"]).unwrap();
        assert!(allows(&p, "ws.example.org", "https://example.com"));
        assert!(allows(&p, "ws.example.org", "https://example.com/"));
        assert!(!allows(&p, "ws.example.org", "https://example.com//"));
        assert!(!allows(&p, "ws.example.org", "https://example.com/."));
        let same = OriginPolicy::same_host();
        assert!(allows(&same, "example.com", "http://example.com/"));
        assert!(Origin::parse("https://example.com//").is_err());
    }

    #[test]
    fn prefix_suffix_and_port_tricks_never_pass() {
        let list = OriginPolicy::allow_list(["https://example.com"]).unwrap();
        let same = OriginPolicy::same_host();
        for trick in [
            "https://example.com.evil.net",
            "https://example.com:443.evil.net",
            "https://example.com:443@evil.net",
            "https://evil.net#https://example.com",
            "https://evil.net/https://example.com",
            "https://evil.net?https://example.com",
            "https://example.com.",
            "https://xexample.com",
            "https://example.co",
            "https://example.com%2eevil.net",
            "https://example.com\\@evil.net",
            "https://example.com:0443x",
            " https://evil.net",
        ] {
            assert!(
                !allows(&list, "ws.example.org", trick),
                "allow list let {trick:?} in"
            );
            assert!(
                !allows(&same, "example.com", trick),
                "same host let {trick:?} in"
            );
        }
        // A leading zero in the port is the same port.
        assert!(allows(&list, "ws.example.org", "https://example.com:0443"));
    }

    #[test]
    fn the_null_origin_is_refused_by_every_rule_but_any() {
        let host = "example.com";
        assert!(!allows(&OriginPolicy::same_host(), host, "null"));
        assert!(!allows(&OriginPolicy::same_host(), host, "NULL"));
        let list = OriginPolicy::allow_list(["https://example.com"])
            .unwrap()
            .or_same_host(true);
        assert!(!allows(&list, host, "null"));
        // Nor can it be listed.
        assert!(OriginPolicy::allow_list(["null"]).is_err());
        assert!(allows(&OriginPolicy::any(), host, "null"));
    }

    #[test]
    fn allow_list_refuses_entries_that_are_not_origins() {
        assert!(OriginPolicy::allow_list(["https://example.com/app"]).is_err());
        assert!(OriginPolicy::allow_list(["example.com"]).is_err());
    }

    #[test]
    fn a_missing_origin_is_allowed_unless_required() {
        let no_origin = request("example.com", &[]);
        assert!(OriginPolicy::same_host().check(&no_origin).is_ok());
        let strict = OriginPolicy::same_host().allow_missing(false);
        let reject = strict.check(&no_origin).unwrap_err();
        assert_eq!(reject.status, StatusCode::FORBIDDEN);
        assert!(OriginPolicy::allow_list(["https://a.example"])
            .unwrap()
            .allow_missing(false)
            .check(&no_origin)
            .is_err());
    }

    #[test]
    fn any_accepts_every_origin_even_null() {
        let p = OriginPolicy::any();
        assert!(allows(&p, "example.com", "https://evil.example"));
        assert!(allows(&p, "example.com", "null"));
    }

    #[test]
    fn two_origin_headers_are_refused() {
        let r = request(
            "example.com",
            &["https://example.com", "https://evil.example"],
        );
        assert!(OriginPolicy::same_host().check(&r).is_err());
    }

    #[test]
    fn the_refusal_is_a_403_naming_the_origin() {
        let reject = OriginPolicy::same_host()
            .check(&request("127.0.0.1:9001", &["http://evil.example"]))
            .unwrap_err();
        assert_eq!(reject.status, StatusCode::FORBIDDEN);
        assert!(
            reject.reason.contains("http://evil.example"),
            "{}",
            reject.reason
        );
    }
}
