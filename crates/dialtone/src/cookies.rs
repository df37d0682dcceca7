//! [`CookieJar`]: cookies sent with handshakes and stored from their
//! responses (and from redirects), kept in memory by the `cookie_store`
//! crate (RFC 6265 matching), loaded from and saved to the Netscape cookie
//! file format that curl, wget and EFL's `cookie_jar` use.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use cookie_store::{CookieDomain, CookieExpiration, CookieStore};
use dialtone_proto::http::HeaderMap;
use url::Url;

/// A cookie jar shared by every dial made with it; cheap to clone (clones
/// share the cookies).
///
/// ```
/// use dialtone::{CookieJar, Dialer};
///
/// // A session cookie for 127.0.0.1, as curl's cookie files write it.
/// let jar = CookieJar::from_netscape("127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc123\n");
/// assert_eq!(jar.len(), 1);
/// // Every dial sends it, and keeps what `Set-Cookie` headers answer.
/// let dialer = Dialer::new().cookie_jar(jar.clone());
/// # drop(dialer);
/// assert!(jar.to_netscape().contains("session\tabc123"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct CookieJar {
    store: Arc<Mutex<CookieStore>>,
}

/// The URL a cookie store understands for a WebSocket URL: `ws` is `http`,
/// `wss` is `https` (RFC 6455 §4.1: cookies as for HTTP; "secure" cookies go
/// only over TLS).
fn http_url(url: &Url) -> Option<Url> {
    let mut u = url.clone();
    let scheme = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    u.set_scheme(scheme).ok()?;
    Some(u)
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, CookieStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Cookie` header value for a request to `url`, if any cookie matches.
    pub fn header_for(&self, url: &Url) -> Option<String> {
        let url = http_url(url)?;
        let store = self.lock();
        let mut out = String::new();
        for (name, value) in store.get_request_values(&url) {
            if !out.is_empty() {
                out.push_str("; ");
            }
            let _ = write!(out, "{name}={value}");
        }
        (!out.is_empty()).then_some(out)
    }

    /// Stores the `Set-Cookie` headers of a response to a request for `url`.
    pub fn store_from(&self, url: &Url, headers: &HeaderMap) {
        let Some(url) = http_url(url) else {
            return;
        };
        let mut store = self.lock();
        for value in headers.get_all("set-cookie") {
            if let Ok(text) = value.to_str() {
                // A malformed or foreign cookie is ignored, as browsers do.
                let _ = store.parse(text, &url);
            }
        }
    }

    /// Adds a cookie as if `url` had answered with this `Set-Cookie` value.
    pub fn insert(&self, url: &Url, set_cookie: &str) -> bool {
        let Some(url) = http_url(url) else {
            return false;
        };
        self.lock().parse(set_cookie, &url).is_ok()
    }

    /// How many unexpired cookies the jar holds.
    pub fn len(&self) -> usize {
        self.lock().iter_unexpired().count()
    }

    /// Whether the jar holds no unexpired cookie.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a jar from Netscape cookie file text: one cookie per line,
    /// seven tab-separated fields (domain, include-subdomains flag, path,
    /// secure flag, expiry in Unix seconds or 0 for a session cookie, name,
    /// value); `#` starts a comment except the `#HttpOnly_` prefix. Lines
    /// that do not parse and expired cookies are skipped.
    pub fn from_netscape(text: &str) -> Self {
        let jar = CookieJar::new();
        let now = unix_now();
        for line in text.lines() {
            let (line, http_only) = match line.strip_prefix("#HttpOnly_") {
                Some(rest) => (rest, true),
                None => (line, false),
            };
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            let [domain, subdomains, path, secure, expiry, name, value] = f[..] else {
                continue;
            };
            let Ok(expiry) = expiry.trim().parse::<i64>() else {
                continue;
            };
            if expiry != 0 && expiry <= now {
                continue;
            }
            let host = domain.trim_start_matches('.');
            let scheme = if secure.eq_ignore_ascii_case("TRUE") {
                "https"
            } else {
                "http"
            };
            let Ok(url) = Url::parse(&format!("{scheme}://{host}{path}")) else {
                continue;
            };
            let mut set = format!("{name}={value}; Path={path}");
            if subdomains.eq_ignore_ascii_case("TRUE") {
                let _ = write!(set, "; Domain={host}");
            }
            if scheme == "https" {
                set.push_str("; Secure");
            }
            if http_only {
                set.push_str("; HttpOnly");
            }
            if expiry != 0 {
                let _ = write!(set, "; Max-Age={}", expiry - now);
            }
            let _ = jar.lock().parse(&set, &url);
        }
        jar
    }

    /// Loads a Netscape cookie file (see [`CookieJar::from_netscape`]); a
    /// missing file is an empty jar.
    pub fn load(path: impl AsRef<Path>) -> io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::from_netscape(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::new()),
            Err(e) => Err(e),
        }
    }

    /// The jar in the Netscape cookie file format, unexpired cookies only
    /// (session cookies with expiry 0).
    pub fn to_netscape(&self) -> String {
        let mut lines = Vec::new();
        let store = self.lock();
        for c in store.iter_unexpired() {
            let (domain, subdomains) = match &c.domain {
                CookieDomain::HostOnly(d) => (d.clone(), "FALSE"),
                CookieDomain::Suffix(d) => (format!(".{d}"), "TRUE"),
                _ => continue,
            };
            let expiry = match &c.expires {
                CookieExpiration::AtUtc(t) => t.unix_timestamp(),
                CookieExpiration::SessionEnd => 0,
            };
            let prefix = if c.http_only().unwrap_or(false) {
                "#HttpOnly_"
            } else {
                ""
            };
            let secure = if c.secure().unwrap_or(false) {
                "TRUE"
            } else {
                "FALSE"
            };
            let path: &str = &c.path;
            lines.push(format!(
                "{prefix}{domain}\t{subdomains}\t{path}\t{secure}\t{expiry}\t{}\t{}\n",
                c.name(),
                c.value()
            ));
        }
        // The store is a hash map: sort, so that saving is deterministic.
        lines.sort();
        let mut out = String::from("# Netscape HTTP Cookie File\n# Written by dialtone.\n\n");
        out.extend(lines);
        out
    }

    /// Saves the jar to a Netscape cookie file.
    pub fn save(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.to_netscape())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn sends_only_matching_cookies() {
        let jar = CookieJar::new();
        let mut h = HeaderMap::new();
        h.append("set-cookie", "a=1; Path=/chat".parse().unwrap());
        h.append("set-cookie", "b=2; Path=/".parse().unwrap());
        h.append("set-cookie", "c=4".parse().unwrap()); // default path: /chat
        h.append("set-cookie", "s=3; Secure".parse().unwrap());
        jar.store_from(&url("ws://example.com/chat/x"), &h);
        let sorted = |u: &str| {
            let mut v: Vec<String> = jar
                .header_for(&url(u))
                .unwrap_or_default()
                .split("; ")
                .map(str::to_owned)
                .collect();
            v.sort();
            v.join("; ")
        };
        assert_eq!(sorted("ws://example.com/chat/room"), "a=1; b=2; c=4");
        assert_eq!(sorted("ws://example.com/other"), "b=2");
        assert_eq!(jar.header_for(&url("ws://other.org/")), None);
        // A Secure cookie set over ws:// is refused (RFC 6265bis); over wss it goes.
        let mut h = HeaderMap::new();
        h.append("set-cookie", "s=3; Secure".parse().unwrap());
        jar.store_from(&url("wss://example.com/"), &h);
        let over_tls = jar.header_for(&url("wss://example.com/")).unwrap();
        assert!(over_tls.contains("s=3"), "{over_tls}");
        assert!(!jar
            .header_for(&url("ws://example.com/"))
            .unwrap()
            .contains("s=3"));
    }

    #[test]
    fn netscape_format_round_trips() {
        let later = unix_now() + 3600;
        let text = format!(
            "# Netscape HTTP Cookie File\n\
             .example.com\tTRUE\t/\tFALSE\t{later}\tsid\tabc\n\
             #HttpOnly_host.org\tFALSE\t/ws\tTRUE\t0\ttok\txyz\n\
             expired.org\tFALSE\t/\tFALSE\t1\told\tgone\n\
             garbage line\n"
        );
        let jar = CookieJar::from_netscape(&text);
        assert_eq!(jar.len(), 2);
        assert_eq!(
            jar.header_for(&url("ws://www.example.com/")).as_deref(),
            Some("sid=abc")
        );
        assert_eq!(
            jar.header_for(&url("wss://host.org/ws/x")).as_deref(),
            Some("tok=xyz")
        );
        let again = CookieJar::from_netscape(&jar.to_netscape());
        assert_eq!(again.len(), 2);
        assert_eq!(again.to_netscape(), jar.to_netscape());
        assert!(jar
            .to_netscape()
            .contains("#HttpOnly_host.org\tFALSE\t/ws\tTRUE\t0\ttok\txyz"));
    }
}
