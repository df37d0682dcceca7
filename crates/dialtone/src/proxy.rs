//! Proxies: HTTP `CONNECT` tunnels, SOCKS5 (`socks5://` resolves the
//! target's name here, `socks5h://` lets the proxy resolve it), SOCKS4 and
//! SOCKS4a; and choosing one from the `*_PROXY` / `NO_PROXY` environment
//! variables the way curl does ([`Proxy::from_env`]).
//!
//! Both client protocols are written here by hand: each is a few dozen lines
//! of fixed-format bytes, and doing them here keeps every failure a typed
//! [`ProxyError`] inside one [`Error::Proxy`], with no extra dependency.
//! A proxy always tunnels: `ws://` and `wss://` alike go through `CONNECT`
//! (or SOCKS), and TLS, when wanted, runs end to end inside the tunnel.

use std::fmt;
use std::io;
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// The protocol spoken to a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyKind {
    /// HTTP `CONNECT` (`http://`), with Basic credentials from the user info.
    Http,
    /// SOCKS4 (`socks4://`): IPv4 only, the name is resolved here.
    Socks4,
    /// SOCKS4a (`socks4a://`): the proxy resolves the name.
    Socks4a,
    /// SOCKS5 (`socks5://`): the name is resolved here.
    Socks5,
    /// SOCKS5 with the name resolved by the proxy (`socks5h://`).
    Socks5h,
}

impl ProxyKind {
    /// The URL scheme for this kind.
    pub fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks4 => "socks4",
            ProxyKind::Socks4a => "socks4a",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }
}

/// A proxy server: kind, address and optional credentials.
///
/// Its `Display` and `Debug` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

/// Why a proxy did not give us a tunnel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy's own name did not resolve.
    #[error("could not resolve the proxy: {0}")]
    Dns(io::Error),
    /// The proxy did not accept a TCP connection.
    #[error("could not connect to the proxy: {0}")]
    Connect(io::Error),
    /// The HTTP proxy answered `CONNECT` with a status other than 2xx
    /// (407: credentials missing or wrong; 403: target not allowed).
    #[error("CONNECT refused: {status} {reason}")]
    Status {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The SOCKS5 proxy refused the user name and password.
    #[error("SOCKS5 authentication failed (user name or password refused)")]
    AuthFailed,
    /// The SOCKS5 proxy accepts none of the methods offered (typically: it
    /// wants a password and the proxy URL has none).
    #[error("the SOCKS5 proxy accepts none of our authentication methods (credentials needed?)")]
    NoAcceptableMethod,
    /// The SOCKS proxy could not or would not connect to the target.
    #[error("SOCKS request refused: {message} (code {code})")]
    Refused {
        /// The reply code (SOCKS5 `REP`, or SOCKS4 `CD`).
        code: u8,
        /// What the code means.
        message: &'static str,
    },
    /// The proxy answered something that is not its protocol, or closed.
    #[error("{0}")]
    Protocol(String),
    /// Reading from or writing to the proxy failed.
    #[error("I/O: {0}")]
    Io(io::Error),
}

/// Longest `CONNECT` response head read.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

impl Proxy {
    /// Parses a proxy URL: `http://[user:password@]host[:port]`,
    /// `socks5://…`, `socks5h://…`, `socks4://…`, `socks4a://…`. A URL
    /// without a scheme is `http://`, as in curl. User info is
    /// percent-decoded. Default ports: 80 for `http`, 1080 for SOCKS.
    pub fn parse(url: &str) -> Result<Proxy> {
        let text = url.trim();
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let bad = |why: &str| Error::Url(format!("proxy URL {:?}: {why}", redact(text)));
        let parsed = url::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
        let kind = match parsed.scheme() {
            "http" => ProxyKind::Http,
            "socks4" => ProxyKind::Socks4,
            "socks4a" => ProxyKind::Socks4a,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            other => {
                return Err(bad(&format!(
                    "unsupported scheme {other:?} (http, socks4, socks4a, socks5, socks5h)"
                )))
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Domain(d)) if !d.is_empty() => {
                let d = d.strip_prefix('[').unwrap_or(d);
                d.strip_suffix(']').unwrap_or(d).to_owned()
            }
            _ => return Err(bad("no host")),
        };
        let port = parsed.port().unwrap_or(match kind {
            ProxyKind::Http => 80,
            _ => 1080,
        });
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = Some(decode(parsed.username())).filter(|u| !u.is_empty());
        let password = parsed.password().map(decode);
        Ok(Proxy {
            kind,
            host,
            port,
            user,
            password,
        })
    }

    /// The protocol spoken to the proxy.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Picks the proxy for dialing `target` from environment variables, as
    /// curl does, reading them through `env` (so this is a pure function:
    /// pass `|name| std::env::var(name).ok()` for the process environment,
    /// or a lookup in a map in tests):
    ///
    /// - `NO_PROXY`: a comma (or space) separated list; `*` matches every
    ///   host; a name matches itself and its subdomains (a leading `.` or
    ///   `*.` is ignored); an IP address matches itself, `addr/bits` a
    ///   network; an entry with `:port` only matches that port.
    /// - `wss://` (and `https://`) use `HTTPS_PROXY`, `ws://` (and `http://`)
    ///   `HTTP_PROXY`; `ALL_PROXY` is the fallback for both.
    ///
    /// Each variable is looked up in lower case first, then upper case; an
    /// empty value counts as unset. `Ok(None)`: dial directly.
    pub fn from_env<F>(target: &url::Url, env: F) -> Result<Option<Proxy>>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |name: &str| {
            env(&name.to_ascii_lowercase())
                .filter(|v| !v.trim().is_empty())
                .or_else(|| env(&name.to_ascii_uppercase()).filter(|v| !v.trim().is_empty()))
        };
        let Ok(host) = crate::handshake::connect_host(target) else {
            return Ok(None);
        };
        let port = target.port_or_known_default().unwrap_or(0);
        if let Some(list) = get("NO_PROXY") {
            if no_proxy_matches(&list, &host, port) {
                return Ok(None);
            }
        }
        let var = match target.scheme() {
            "wss" | "https" => "HTTPS_PROXY",
            _ => "HTTP_PROXY",
        };
        match get(var).or_else(|| get("ALL_PROXY")) {
            Some(url) => Proxy::parse(&url).map(Some),
            None => Ok(None),
        }
    }

    fn fail(&self, source: ProxyError) -> Error {
        Error::Proxy {
            proxy: self.to_string(),
            source,
        }
    }

    fn io(&self, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.fail(ProxyError::Protocol(
                "the proxy closed the connection".into(),
            ))
        } else {
            self.fail(ProxyError::Io(e))
        }
    }

    /// Connects to the proxy and opens a tunnel to `host:port` through it.
    pub(crate) async fn open(&self, host: &str, port: u16) -> Result<TcpStream> {
        let mut tcp = crate::transport::connect(&self.host, self.port)
            .await
            .map_err(|e| match e {
                Error::Dns { source, .. } => self.fail(ProxyError::Dns(source)),
                Error::Connect { source, .. } => self.fail(ProxyError::Connect(source)),
                other => other,
            })?;
        self.tunnel(&mut tcp, host, port).await?;
        Ok(tcp)
    }

    /// Asks the proxy on `io` for a tunnel to `host:port` (a name, or an IP
    /// address without brackets). After `Ok`, `io` carries the target's bytes.
    pub async fn tunnel<S>(&self, io: &mut S, host: &str, port: u16) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self.kind {
            ProxyKind::Http => self.http_connect(io, host, port).await,
            ProxyKind::Socks5 => self.socks5(io, host, port, false).await,
            ProxyKind::Socks5h => self.socks5(io, host, port, true).await,
            ProxyKind::Socks4 => self.socks4(io, host, port, false).await,
            ProxyKind::Socks4a => self.socks4(io, host, port, true).await,
        }
    }

    async fn http_connect<S>(&self, io: &mut S, host: &str, port: u16) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if host.contains(['\r', '\n', ' ', '/']) {
            return Err(Error::Url(format!("bad host {host:?}")));
        }
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if self.user.is_some() || self.password.is_some() {
            let creds = format!(
                "{}:{}",
                self.user.as_deref().unwrap_or(""),
                self.password.as_deref().unwrap_or("")
            );
            request.push_str(&format!(
                "Proxy-Authorization: Basic {}\r\n",
                BASE64.encode(creds)
            ));
        }
        request.push_str("\r\n");
        io.write_all(request.as_bytes())
            .await
            .map_err(|e| self.io(e))?;
        io.flush().await.map_err(|e| self.io(e))?;

        let mut buf = Vec::with_capacity(1024);
        let head_len = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() >= MAX_CONNECT_HEAD {
                return Err(self.fail(ProxyError::Protocol(format!(
                    "CONNECT response head longer than {MAX_CONNECT_HEAD} bytes"
                ))));
            }
            let mut chunk = [0u8; 1024];
            let n = io.read(&mut chunk).await.map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(self.fail(ProxyError::Protocol(
                    "the proxy closed the connection before answering CONNECT".into(),
                )));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let line_end = buf.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
        let line = String::from_utf8_lossy(&buf[..line_end]);
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let reason = parts.next().unwrap_or("").trim().to_owned();
        let status = match status {
            Some(s) if version.starts_with("HTTP/1.") && (100..1000).contains(&s) => s,
            _ => {
                return Err(self.fail(ProxyError::Protocol(format!(
                    "not an HTTP response to CONNECT: {:?}",
                    line.chars().take(80).collect::<String>()
                ))))
            }
        };
        if !(200..300).contains(&status) {
            return Err(self.fail(ProxyError::Status { status, reason }));
        }
        if buf.len() > head_len {
            // The target has not been spoken to yet, so it cannot have answered.
            return Err(self.fail(ProxyError::Protocol(
                "the proxy sent data after its CONNECT response".into(),
            )));
        }
        Ok(())
    }

    async fn socks5<S>(&self, io: &mut S, host: &str, port: u16, remote_dns: bool) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Resolve first (socks5://), so a DNS failure is a DNS error.
        let addr = target_addr(host, port, remote_dns, false).await?;
        let creds = self.user.is_some() || self.password.is_some();
        let greeting: &[u8] = if creds {
            &[5, 2, 0x00, 0x02]
        } else {
            &[5, 1, 0x00]
        };
        io.write_all(greeting).await.map_err(|e| self.io(e))?;
        io.flush().await.map_err(|e| self.io(e))?;
        let mut choice = [0u8; 2];
        io.read_exact(&mut choice).await.map_err(|e| self.io(e))?;
        if choice[0] != 5 {
            return Err(self.fail(ProxyError::Protocol(format!(
                "not a SOCKS5 server (version byte {})",
                choice[0]
            ))));
        }
        match choice[1] {
            0x00 => {}
            0x02 if creds => {
                let user = self.user.as_deref().unwrap_or("").as_bytes();
                let password = self.password.as_deref().unwrap_or("").as_bytes();
                let (Ok(ulen), Ok(plen)) = (u8::try_from(user.len()), u8::try_from(password.len()))
                else {
                    return Err(Error::Url(
                        "SOCKS5 user names and passwords are at most 255 bytes".into(),
                    ));
                };
                let mut msg = Vec::with_capacity(3 + user.len() + password.len());
                msg.push(1);
                msg.push(ulen);
                msg.extend_from_slice(user);
                msg.push(plen);
                msg.extend_from_slice(password);
                io.write_all(&msg).await.map_err(|e| self.io(e))?;
                io.flush().await.map_err(|e| self.io(e))?;
                let mut status = [0u8; 2];
                io.read_exact(&mut status).await.map_err(|e| self.io(e))?;
                if status[1] != 0 {
                    return Err(self.fail(ProxyError::AuthFailed));
                }
            }
            0xff => return Err(self.fail(ProxyError::NoAcceptableMethod)),
            other => {
                return Err(self.fail(ProxyError::Protocol(format!(
                    "the SOCKS5 proxy chose method {other:#04x}, which we did not offer"
                ))))
            }
        }
        let mut request = vec![5, 1, 0];
        match addr {
            Target::Ip(IpAddr::V4(a)) => {
                request.push(1);
                request.extend_from_slice(&a.octets());
            }
            Target::Ip(IpAddr::V6(a)) => {
                request.push(4);
                request.extend_from_slice(&a.octets());
            }
            Target::Name(ref name) => {
                let len = u8::try_from(name.len())
                    .map_err(|_| Error::Url(format!("host name {name:?} is too long")))?;
                request.push(3);
                request.push(len);
                request.extend_from_slice(name.as_bytes());
            }
        }
        request.extend_from_slice(&port.to_be_bytes());
        io.write_all(&request).await.map_err(|e| self.io(e))?;
        io.flush().await.map_err(|e| self.io(e))?;
        let mut reply = [0u8; 4];
        io.read_exact(&mut reply).await.map_err(|e| self.io(e))?;
        if reply[0] != 5 {
            return Err(self.fail(ProxyError::Protocol(format!(
                "bad SOCKS5 reply version {}",
                reply[0]
            ))));
        }
        if reply[1] != 0 {
            return Err(self.fail(ProxyError::Refused {
                code: reply[1],
                message: socks5_reply(reply[1]),
            }));
        }
        let rest = match reply[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => {
                let mut len = [0u8; 1];
                io.read_exact(&mut len).await.map_err(|e| self.io(e))?;
                usize::from(len[0]) + 2
            }
            other => {
                return Err(self.fail(ProxyError::Protocol(format!(
                    "bad SOCKS5 address type {other}"
                ))))
            }
        };
        let mut bound = [0u8; 255 + 2];
        io.read_exact(&mut bound[..rest])
            .await
            .map_err(|e| self.io(e))?;
        Ok(())
    }

    async fn socks4<S>(&self, io: &mut S, host: &str, port: u16, remote_dns: bool) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let addr = target_addr(host, port, remote_dns, true).await?;
        let mut request = vec![4, 1];
        request.extend_from_slice(&port.to_be_bytes());
        let name = match addr {
            Target::Ip(IpAddr::V4(a)) => {
                request.extend_from_slice(&a.octets());
                None
            }
            Target::Ip(IpAddr::V6(_)) => {
                return Err(Error::Url(format!(
                    "SOCKS4 cannot reach the IPv6 address {host}"
                )))
            }
            Target::Name(name) => {
                // SOCKS4a: 0.0.0.x (x ≠ 0) means "the name follows".
                request.extend_from_slice(&[0, 0, 0, 1]);
                Some(name)
            }
        };
        if let Some(user) = &self.user {
            if user.contains('\0') {
                return Err(Error::Url("a SOCKS4 user id has no NUL".into()));
            }
            request.extend_from_slice(user.as_bytes());
        }
        request.push(0);
        if let Some(name) = name {
            request.extend_from_slice(name.as_bytes());
            request.push(0);
        }
        io.write_all(&request).await.map_err(|e| self.io(e))?;
        io.flush().await.map_err(|e| self.io(e))?;
        let mut reply = [0u8; 8];
        io.read_exact(&mut reply).await.map_err(|e| self.io(e))?;
        if reply[1] != 90 {
            let message = match reply[1] {
                91 => "request rejected or failed",
                92 => "the proxy could not reach our identd",
                93 => "identd reported a different user id",
                _ => "unknown reply code",
            };
            return Err(self.fail(ProxyError::Refused {
                code: reply[1],
                message,
            }));
        }
        Ok(())
    }
}

enum Target {
    Ip(IpAddr),
    Name(String),
}

/// The address to ask a SOCKS proxy for: an IP literal as is; a name as is
/// when the proxy resolves it, else resolved here (IPv4 only for SOCKS4).
async fn target_addr(host: &str, port: u16, remote_dns: bool, v4_only: bool) -> Result<Target> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Target::Ip(ip));
    }
    if remote_dns {
        return Ok(Target::Name(host.to_owned()));
    }
    let dns = |source| Error::Dns {
        host: host.to_owned(),
        source,
    };
    let addrs = tokio::net::lookup_host((host, port)).await.map_err(dns)?;
    let mut addrs = addrs.map(|a| a.ip()).filter(|ip| !v4_only || ip.is_ipv4());
    match addrs.next() {
        Some(ip) => Ok(Target::Ip(ip)),
        None => Err(dns(io::Error::new(
            io::ErrorKind::NotFound,
            if v4_only {
                "no IPv4 address (SOCKS4 needs one; try socks4a://)"
            } else {
                "no addresses"
            },
        ))),
    }
}

fn socks5_reply(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

/// Whether `host` (a name or an IP address without brackets) on `port` is
/// exempt from proxying by a `NO_PROXY` list (see [`Proxy::from_env`]).
pub fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&host);
    let host_ip = host.parse::<IpAddr>().ok();
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (pattern, entry_port) = split_port(entry);
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            if let Some((net, bits)) = pattern.split_once('/') {
                return match (net.parse::<IpAddr>(), bits.parse::<u8>(), host_ip) {
                    (Ok(net), Ok(bits), Some(ip)) => in_network(ip, net, bits),
                    _ => false,
                };
            }
            if let Ok(ip) = pattern.parse::<IpAddr>() {
                return host_ip == Some(ip);
            }
            let pattern = pattern.strip_prefix('*').unwrap_or(pattern);
            let pattern = pattern
                .trim_start_matches('.')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            !pattern.is_empty()
                && (host == pattern
                    || (host.len() > pattern.len()
                        && host.ends_with(&pattern)
                        && host.as_bytes()[host.len() - pattern.len() - 1] == b'.'))
        })
}

/// `[v6]:port`, `host:port`, or no port (a bare IPv6 address has several colons).
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((addr, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (addr, port);
        }
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// `text` with any password in its user info replaced by `***`.
fn redact(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let Some(at) = text.rfind('@').filter(|&at| at >= start) else {
        return text.to_owned();
    };
    match text[start..at].find(':') {
        Some(colon) => format!("{}***{}", &text[..start + colon + 1], &text[at..]),
        None => text.to_owned(),
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.kind.scheme())?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Which proxy a [`Dialer`](crate::Dialer) uses.
#[derive(Clone, Debug, Default)]
pub(crate) enum ProxySetting {
    /// From `*_PROXY` / `NO_PROXY` in the process environment (the default).
    #[default]
    Env,
    /// None: always dial directly.
    Direct,
    /// This one (a URL parsed at dial time, so that the builder cannot fail).
    Url(String),
}

impl ProxySetting {
    /// The proxy for dialing `target`, if any.
    pub(crate) fn resolve(&self, target: &url::Url) -> Result<Option<Proxy>> {
        match self {
            ProxySetting::Env => Proxy::from_env(target, |name| std::env::var(name).ok()),
            ProxySetting::Direct => Ok(None),
            ProxySetting::Url(url) => Proxy::parse(url).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pick(vars: &HashMap<String, String>, url: &str) -> Option<String> {
        let url = url::Url::parse(url).unwrap();
        Proxy::from_env(&url, |k| vars.get(k).cloned())
            .unwrap()
            .map(|p| p.to_string())
    }

    #[test]
    fn parse_urls() {
        let p = Proxy::parse("http://us%40er:p%3Aw@127.0.0.1:3128").unwrap();
        assert_eq!(p.kind(), ProxyKind::Http);
        assert_eq!((p.host(), p.port()), ("127.0.0.1", 3128));
        assert_eq!(p.user(), Some("us@er"));
        assert_eq!(p.password.as_deref(), Some("p:w"));
        assert_eq!(p.to_string(), "http://us@er@127.0.0.1:3128");
        assert!(!format!("{p:?}").contains("p:w"));

        let p = Proxy::parse("proxy.example:8080").unwrap();
        assert_eq!(
            (p.kind(), p.host(), p.port()),
            (ProxyKind::Http, "proxy.example", 8080)
        );
        assert_eq!(Proxy::parse("http://proxy.example").unwrap().port(), 80);

        let p = Proxy::parse("socks5h://[::1]").unwrap();
        assert_eq!(
            (p.kind(), p.host(), p.port()),
            (ProxyKind::Socks5h, "::1", 1080)
        );
        assert_eq!(p.to_string(), "socks5h://[::1]:1080");
        assert_eq!(
            Proxy::parse("SOCKS5://h:1").unwrap().kind(),
            ProxyKind::Socks5
        );
        assert_eq!(
            Proxy::parse("socks4a://h:1").unwrap().kind(),
            ProxyKind::Socks4a
        );

        let e = Proxy::parse("https://user:secret@h:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported scheme"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        assert!(Proxy::parse("http://").is_err());
    }

    #[test]
    fn env_scheme_choice_and_fallback() {
        let vars = env(&[
            ("HTTPS_PROXY", "http://secure:1"),
            ("http_proxy", "http://plain:2"),
            ("ALL_PROXY", "socks5h://all:3"),
        ]);
        assert_eq!(
            pick(&vars, "wss://a.example/").as_deref(),
            Some("http://secure:1")
        );
        assert_eq!(
            pick(&vars, "ws://a.example/").as_deref(),
            Some("http://plain:2")
        );

        let vars = env(&[("all_proxy", "socks5h://all:3")]);
        assert_eq!(
            pick(&vars, "wss://a.example/").as_deref(),
            Some("socks5h://all:3")
        );
        assert_eq!(
            pick(&vars, "ws://a.example/").as_deref(),
            Some("socks5h://all:3")
        );

        // Lower case wins; an empty value is unset.
        let vars = env(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:2"),
            ("http_proxy", ""),
            ("ALL_PROXY", "http://all:3"),
        ]);
        assert_eq!(
            pick(&vars, "wss://a.example/").as_deref(),
            Some("http://lower:1")
        );
        assert_eq!(
            pick(&vars, "ws://a.example/").as_deref(),
            Some("http://all:3")
        );

        assert_eq!(pick(&env(&[]), "ws://a.example/"), None);
        // The https variable is not used for ws:// and vice versa.
        assert_eq!(
            pick(&env(&[("https_proxy", "http://p:1")]), "ws://a/"),
            None
        );
        assert_eq!(
            pick(&env(&[("http_proxy", "http://p:1")]), "wss://a/"),
            None
        );
    }

    #[test]
    fn env_no_proxy() {
        let base = [("ALL_PROXY", "http://p:1")];
        let with = |np: &str| {
            let mut vars = env(&base);
            vars.insert("NO_PROXY".into(), np.into());
            vars
        };
        let vars = with("localhost, .internal.example,10.0.0.0/8 ,[::1], example.org:8443");
        assert_eq!(pick(&vars, "ws://localhost:9/"), None);
        assert_eq!(pick(&vars, "ws://LOCALHOST./"), None);
        assert_eq!(pick(&vars, "ws://internal.example/"), None);
        assert_eq!(pick(&vars, "ws://a.b.internal.example/"), None);
        assert!(pick(&vars, "ws://notinternal.example/").is_some());
        assert_eq!(pick(&vars, "ws://10.1.2.3/"), None);
        assert!(pick(&vars, "ws://11.1.2.3/").is_some());
        assert_eq!(pick(&vars, "ws://[::1]:80/"), None);
        assert_eq!(pick(&vars, "wss://example.org:8443/"), None);
        assert!(pick(&vars, "wss://example.org/").is_some());
        assert!(pick(&vars, "ws://other.example/").is_some());

        assert_eq!(pick(&with("*"), "ws://anything/"), None);
        let mut lower = env(&base);
        lower.insert("no_proxy".into(), "*.example.com".into());
        assert_eq!(pick(&lower, "ws://www.example.com/"), None);
        assert_eq!(pick(&lower, "ws://example.com/"), None);
        assert!(pick(&lower, "ws://example.net/").is_some());
    }

    #[test]
    fn no_proxy_entries() {
        assert!(no_proxy_matches("127.0.0.1", "127.0.0.1", 80));
        assert!(!no_proxy_matches("127.0.0.1", "127.0.0.2", 80));
        assert!(no_proxy_matches("127.0.0.0/8", "127.9.9.9", 80));
        assert!(no_proxy_matches("::1", "::1", 80));
        assert!(no_proxy_matches("fd00::/8", "fd12::1", 80));
        assert!(!no_proxy_matches("fd00::/8", "fe80::1", 80));
        assert!(no_proxy_matches("0.0.0.0/0", "1.2.3.4", 80));
        assert!(!no_proxy_matches("1.2.3.4/99", "1.2.3.4", 80));
        assert!(!no_proxy_matches("", "a", 80));
        assert!(!no_proxy_matches(".", "a", 80));
        assert!(!no_proxy_matches("a:81", "a", 80));
        assert!(no_proxy_matches("a:80", "a", 80));
    }

    fn http_proxy(url: &str) -> Proxy {
        Proxy::parse(url).unwrap()
    }

    /// Runs `tunnel` against a scripted proxy: `answer` is what the proxy
    /// sends (all at once, after reading what the client sent so far).
    async fn scripted(proxy: &Proxy, host: &str, answer: &[u8]) -> (Result<()>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let answer = answer.to_vec();
        let peer = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Give the client time to write everything it writes before
            // reading our answer; then answer and keep reading until it hangs up.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if let Ok(n) = server.read(&mut buf).await {
                seen.extend_from_slice(&buf[..n]);
            }
            let _ = server.write_all(&answer).await;
            // Then EOF, so that a client waiting for more fails instead of hanging.
            let _ = server.shutdown().await;
            while let Ok(n) = server.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            seen
        });
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            proxy.tunnel(&mut client, host, 9),
        )
        .await
        .expect("tunnel hung");
        drop(client);
        (result, peer.await.unwrap())
    }

    #[tokio::test]
    async fn http_connect_bytes_and_statuses() {
        let p = http_proxy("http://u:p@proxy:1");
        let (r, sent) = scripted(&p, "::1", b"HTTP/1.1 200 Connection established\r\n\r\n").await;
        r.unwrap();
        assert_eq!(
            String::from_utf8(sent).unwrap(),
            "CONNECT [::1]:9 HTTP/1.1\r\nHost: [::1]:9\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        let (r, _) = scripted(
            &p,
            "h",
            b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n",
        )
        .await;
        match r {
            Err(Error::Proxy {
                source: ProxyError::Status { status: 407, .. },
                proxy,
            }) => assert_eq!(proxy, "http://u@proxy:1"),
            other => panic!("{other:?}"),
        }
        let (r, _) = scripted(&p, "h", b"SSH-2.0-x\r\n\r\n").await;
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Protocol(_),
                ..
            })
        ));
        let (r, _) = scripted(&p, "h", b"HTTP/1.1 200 OK\r\n\r\nextra").await;
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Protocol(_),
                ..
            })
        ));
        let (r, _) = scripted(&p, "h", b"HTTP/1.1 200 OK\r\n").await;
        assert!(matches!(r, Err(Error::Proxy { .. })), "{r:?}");
    }

    #[tokio::test]
    async fn socks4_and_4a_bytes() {
        let p = http_proxy("socks4://alice@proxy");
        let (r, sent) = scripted(&p, "10.1.2.3", &[0, 90, 0, 0, 0, 0, 0, 0]).await;
        r.unwrap();
        assert_eq!(sent, b"\x04\x01\x00\x09\x0a\x01\x02\x03alice\0");

        let p = http_proxy("socks4a://proxy");
        let (r, sent) = scripted(&p, "target.example", &[0, 90, 0, 0, 0, 0, 0, 0]).await;
        r.unwrap();
        assert_eq!(sent, b"\x04\x01\x00\x09\0\0\0\x01\0target.example\0");

        let (r, _) = scripted(&p, "target.example", &[0, 91, 0, 0, 0, 0, 0, 0]).await;
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Refused { code: 91, .. },
                ..
            })
        ));
        let (r, _) = scripted(&p, "::1", &[]).await;
        assert!(matches!(r, Err(Error::Url(_))), "{r:?}");
    }

    #[tokio::test]
    async fn socks5_request_bytes() {
        let ok = [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let (r, sent) = scripted(&http_proxy("socks5h://proxy"), "example.test", &ok).await;
        r.unwrap();
        assert_eq!(
            sent,
            b"\x05\x01\x00\x05\x01\x00\x03\x0cexample.test\x00\x09"
        );

        // An IP literal goes as an address, whichever the kind.
        let (r, sent) = scripted(&http_proxy("socks5h://proxy"), "::1", &ok).await;
        r.unwrap();
        let mut want = b"\x05\x01\x00\x05\x01\x00\x04".to_vec();
        want.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        want.extend_from_slice(&[0, 9]);
        assert_eq!(sent, want);

        // With credentials: both methods offered, then RFC 1929.
        let ok_auth = [5, 2, 1, 0, 5, 0, 0, 3, 1, b'x', 0, 0];
        let (r, sent) = scripted(&http_proxy("socks5://u:pw@proxy"), "10.0.0.1", &ok_auth).await;
        r.unwrap();
        assert_eq!(
            sent,
            b"\x05\x02\x00\x02\x01\x01u\x02pw\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x09"
        );
        let (r, _) = scripted(
            &http_proxy("socks5://u:pw@proxy"),
            "10.0.0.1",
            &[5, 2, 1, 1],
        )
        .await;
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::AuthFailed,
                ..
            })
        ));
        let (r, _) = scripted(
            &http_proxy("socks5://proxy"),
            "10.0.0.1",
            &[5, 0, 5, 5, 0, 1],
        )
        .await;
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Refused { code: 5, .. },
                ..
            })
        ));
    }

    #[tokio::test]
    async fn socks5_replies() {
        let p = http_proxy("socks5h://proxy");
        // No method acceptable.
        let (r, _) = scripted(&p, "t", &[5, 0xff]).await;
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::NoAcceptableMethod,
                ..
            })
        ));
        // Not SOCKS5 at all.
        let (r, _) = scripted(&p, "t", b"HTTP/1.1 400 Bad\r\n\r\n").await;
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Protocol(_),
                ..
            })
        ));
        // Closed mid-reply.
        let (r, _) = scripted(&p, "t", &[5]).await;
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Protocol(_),
                ..
            })
        ));
    }
}
