//! Proxies: HTTP `CONNECT` tunnels, SOCKS5 (`socks5://` resolves the
//! target's name here, `socks5h://` lets the proxy resolve it), SOCKS4 and
//! SOCKS4a; and choosing one from the `*_PROXY` / `NO_PROXY` environment
//! variables the way curl does ([`Proxy::from_env`]).
//!
//! Both client protocols are written here by hand, once, as a sans-I/O
//! [`Negotiation`] (bytes in, bytes out) that the async [`Proxy::tunnel`]
//! and the blocking [`Proxy::tunnel_blocking`] drive: each is a few dozen
//! lines of fixed-format bytes, and doing them here keeps every failure a
//! typed [`ProxyError`] inside one [`Error::Proxy`], with no extra
//! dependency.
//! A proxy always tunnels: `ws://` and `wss://` alike go through `CONNECT`
//! (or SOCKS), and TLS, when wanted, runs end to end inside the tunnel.
//!
#![cfg_attr(not(feature = "tokio"), doc = "[`Proxy::tunnel`]: crate#feature-flags")]

use std::fmt;
use std::io::{self, Read, Write};
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
#[cfg(feature = "tokio")]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
#[cfg(feature = "tokio")]
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// The protocol spoken to a proxy.
///
/// ```
/// use dialtone::proxy::ProxyKind;
/// use dialtone::Proxy;
///
/// let proxy = Proxy::parse("socks5h://127.0.0.1:1080")?;
/// assert_eq!(proxy.kind(), ProxyKind::Socks5h);
/// assert_eq!(proxy.kind().scheme(), "socks5h");
/// # Ok::<(), dialtone::Error>(())
/// ```
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
///
/// ```
/// use dialtone::Proxy;
///
/// let proxy = Proxy::parse("http://ann:secret@127.0.0.1:3128")?;
/// assert_eq!((proxy.host(), proxy.port(), proxy.user()), ("127.0.0.1", 3128, Some("ann")));
/// assert!(!proxy.to_string().contains("secret"));
/// // Dial through it (or pick one from *_PROXY with Dialer::proxy_from_env).
/// let dialer = dialtone::Dialer::new().proxy("http://ann:secret@127.0.0.1:3128");
/// # drop(dialer);
/// # Ok::<(), dialtone::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

/// Why a proxy did not give us a tunnel.
///
/// ```no_run
/// # async fn run() {
/// use dialtone::proxy::ProxyError;
/// use dialtone::{Dialer, Error};
///
/// let dialer = Dialer::new().proxy("http://127.0.0.1:3128");
/// match dialer.dial("ws://127.0.0.1:9001/").await {
///     Err(Error::Proxy { source: ProxyError::Status { status: 407, .. }, proxy }) => {
///         eprintln!("{proxy} wants credentials")
///     }
///     Err(e) => eprintln!("{e}"),
///     Ok(_) => {}
/// }
/// # }
/// ```
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
    #[cfg(feature = "tokio")]
    pub(crate) async fn open(&self, host: &str, port: u16) -> Result<TcpStream> {
        let mut tcp = crate::transport::connect(&self.host, self.port)
            .await
            .map_err(|e| self.connect_error(e))?;
        self.tunnel(&mut tcp, host, port).await?;
        Ok(tcp)
    }

    /// A failure to reach the proxy itself, as a proxy error.
    pub(crate) fn connect_error(&self, e: Error) -> Error {
        match e {
            Error::Dns { source, .. } => self.fail(ProxyError::Dns(source)),
            Error::Connect { source, .. } => self.fail(ProxyError::Connect(source)),
            other => other,
        }
    }

    /// Whether `host` must be resolved here before asking this proxy for
    /// it: a name, for `socks5://` and `socks4://` (the others send names).
    pub fn resolves_here(&self, host: &str) -> bool {
        matches!(self.kind, ProxyKind::Socks5 | ProxyKind::Socks4)
            && host.parse::<IpAddr>().is_err()
    }

    /// Asks the proxy on `io` for a tunnel to `host:port` (a name, or an IP
    /// address without brackets). After `Ok`, `io` carries the target's bytes.
    #[cfg(feature = "tokio")]
    pub async fn tunnel<S>(&self, io: &mut S, host: &str, port: u16) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let host = if self.resolves_here(host) {
            let addrs = tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| dns_error(host, source))?;
            self.pick_address(host, addrs)?.to_string()
        } else {
            host.to_owned()
        };
        let (mut negotiation, first) = Negotiation::start(self, &host, port)?;
        io.write_all(&first).await.map_err(|e| self.io(e))?;
        io.flush().await.map_err(|e| self.io(e))?;
        let mut chunk = [0u8; READ_CHUNK];
        while let Some(want) = negotiation.wants() {
            let n = io
                .read(&mut chunk[..want.min(READ_CHUNK)])
                .await
                .map_err(|e| self.io(e))?;
            let reply = negotiation.receive(&chunk[..n])?;
            if !reply.is_empty() {
                io.write_all(&reply).await.map_err(|e| self.io(e))?;
                io.flush().await.map_err(|e| self.io(e))?;
            }
        }
        Ok(())
    }

    /// [`Proxy::tunnel`] over a blocking transport (names resolved with
    /// the system resolver, without a time limit: set the transport's read
    /// and write timeouts to bound the rest).
    ///
    #[cfg_attr(not(feature = "tokio"), doc = "[`Proxy::tunnel`]: crate#feature-flags")]
    pub fn tunnel_blocking<S: Read + Write>(
        &self,
        io: &mut S,
        host: &str,
        port: u16,
    ) -> Result<()> {
        let host = if self.resolves_here(host) {
            let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                .map_err(|source| dns_error(host, source))?;
            self.pick_address(host, addrs)?.to_string()
        } else {
            host.to_owned()
        };
        self.negotiate_blocking(io, &host, port)
    }

    /// The blocking negotiation for `host`, already resolved if it had to be.
    pub(crate) fn negotiate_blocking<S: Read + Write>(
        &self,
        io: &mut S,
        host: &str,
        port: u16,
    ) -> Result<()> {
        let (mut negotiation, first) = Negotiation::start(self, host, port)?;
        io.write_all(&first).map_err(|e| self.io(e))?;
        io.flush().map_err(|e| self.io(e))?;
        let mut chunk = [0u8; READ_CHUNK];
        while let Some(want) = negotiation.wants() {
            let n = match io.read(&mut chunk[..want.min(READ_CHUNK)]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io(e)),
            };
            let reply = negotiation.receive(&chunk[..n])?;
            if !reply.is_empty() {
                io.write_all(&reply).map_err(|e| self.io(e))?;
                io.flush().map_err(|e| self.io(e))?;
            }
        }
        Ok(())
    }

    /// The address a SOCKS proxy is asked for, of those `host` resolved to
    /// (the first; the first IPv4 one for SOCKS4).
    pub(crate) fn pick_address(
        &self,
        host: &str,
        addrs: impl Iterator<Item = std::net::SocketAddr>,
    ) -> Result<IpAddr> {
        let v4_only = self.kind == ProxyKind::Socks4;
        let mut ips = addrs.map(|a| a.ip()).filter(|ip| !v4_only || ip.is_ipv4());
        ips.next().ok_or_else(|| {
            dns_error(
                host,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    if v4_only {
                        "no IPv4 address (SOCKS4 needs one; try socks4a://)"
                    } else {
                        "no addresses"
                    },
                ),
            )
        })
    }
}

/// Reads from a proxy go in pieces of at most this size.
const READ_CHUNK: usize = 1024;

fn dns_error(host: &str, source: io::Error) -> Error {
    Error::Dns {
        host: host.to_owned(),
        source,
    }
}

/// One proxy negotiation (HTTP `CONNECT`, SOCKS5, SOCKS4/4a), sans I/O:
/// bytes in, bytes out. [`Negotiation::start`] gives the first bytes to
/// send; then, while [`Negotiation::wants`] asks for more, read at most that
/// many bytes from the proxy and hand them to [`Negotiation::receive`],
/// sending what it returns. Both faces' `tunnel` are that loop.
///
/// ```
/// use dialtone::proxy::Negotiation;
/// use dialtone::Proxy;
///
/// let proxy = Proxy::parse("http://127.0.0.1:3128")?;
/// let (mut negotiation, first) = Negotiation::start(&proxy, "example.com", 443)?;
/// assert!(first.starts_with(b"CONNECT example.com:443 HTTP/1.1\r\n"));
/// // Send `first`; then hand it what the proxy answers.
/// let reply = negotiation.receive(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
/// assert!(reply.is_empty() && negotiation.is_done());
/// # Ok::<(), dialtone::Error>(())
/// ```
#[derive(Debug)]
pub struct Negotiation {
    proxy: Proxy,
    state: State,
    /// The proxy's reply so far.
    buf: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// Reading the `CONNECT` response head.
    HttpHead,
    /// SOCKS5: reading the method choice; the request follows.
    Socks5Method { request: Vec<u8> },
    /// SOCKS5: reading the RFC 1929 status; the request follows.
    Socks5Auth { request: Vec<u8> },
    /// SOCKS5: reading the reply to the request.
    Socks5Reply,
    /// SOCKS4: reading the 8-byte reply.
    Socks4Reply,
    /// The tunnel is open.
    Done,
}

impl Negotiation {
    /// Starts asking `proxy` for a tunnel to `host:port`; returns the
    /// negotiation and the bytes to send first. `host` is a name or an IP
    /// address without brackets; for `socks5://` and `socks4://` it must be
    /// an address (see [`Proxy::resolves_here`]).
    pub fn start(proxy: &Proxy, host: &str, port: u16) -> Result<(Negotiation, Vec<u8>)> {
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_none() && proxy.resolves_here(host) {
            return Err(Error::Url(format!(
                "{} proxies are sent an address: resolve {host:?} first",
                proxy.kind.scheme()
            )));
        }
        let creds = proxy.user.is_some() || proxy.password.is_some();
        let (state, first) = match proxy.kind {
            ProxyKind::Http => (State::HttpHead, http_connect_request(proxy, host, port)?),
            ProxyKind::Socks5 | ProxyKind::Socks5h => {
                let greeting = if creds {
                    vec![5, 2, 0x00, 0x02]
                } else {
                    vec![5, 1, 0x00]
                };
                let request = socks5_request(ip, host, port)?;
                (State::Socks5Method { request }, greeting)
            }
            ProxyKind::Socks4 | ProxyKind::Socks4a => {
                (State::Socks4Reply, socks4_request(proxy, ip, host, port)?)
            }
        };
        let negotiation = Negotiation {
            proxy: proxy.clone(),
            state,
            buf: Vec::new(),
        };
        Ok((negotiation, first))
    }

    /// How many bytes to read next, at most (what follows the proxy's reply
    /// is the target's); `None` once the tunnel is open.
    pub fn wants(&self) -> Option<usize> {
        let need = match self.state {
            State::Done => return None,
            State::HttpHead => return Some(READ_CHUNK),
            State::Socks5Method { .. } | State::Socks5Auth { .. } => 2,
            State::Socks4Reply => 8,
            State::Socks5Reply => match (self.buf.len(), self.buf.get(3)) {
                (0..4, _) => 4,
                (_, Some(1)) => 4 + 4 + 2,
                (_, Some(4)) => 4 + 16 + 2,
                (4, _) => 5,
                (_, _) => 4 + 1 + usize::from(self.buf[4]) + 2,
            },
        };
        Some(need.saturating_sub(self.buf.len()).max(1))
    }

    /// Whether the tunnel is open.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes bytes read from the proxy (none: it closed the connection);
    /// returns the bytes to send next, if any.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Vec<u8>> {
        if bytes.is_empty() {
            let why = match self.state {
                State::HttpHead => "the proxy closed the connection before answering CONNECT",
                _ => "the proxy closed the connection",
            };
            return Err(self.proxy.fail(ProxyError::Protocol(why.into())));
        }
        self.buf.extend_from_slice(bytes);
        let fail = |e| Err(self.proxy.fail(e));
        match &mut self.state {
            State::Done => fail(ProxyError::Protocol(
                "the proxy sent data after opening the tunnel".into(),
            )),
            State::HttpHead => {
                let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    if self.buf.len() >= MAX_CONNECT_HEAD {
                        return fail(ProxyError::Protocol(format!(
                            "CONNECT response head longer than {MAX_CONNECT_HEAD} bytes"
                        )));
                    }
                    return Ok(Vec::new());
                };
                let status = connect_status(&self.buf).map_err(|e| self.proxy.fail(e))?;
                if let Err(e) = status {
                    return fail(e);
                }
                if self.buf.len() > i + 4 {
                    // The target has not been spoken to yet, so it cannot have answered.
                    return fail(ProxyError::Protocol(
                        "the proxy sent data after its CONNECT response".into(),
                    ));
                }
                self.state = State::Done;
                Ok(Vec::new())
            }
            State::Socks5Method { request } => {
                if self.buf.len() < 2 {
                    return Ok(Vec::new());
                }
                if self.buf[0] != 5 {
                    let v = self.buf[0];
                    return fail(ProxyError::Protocol(format!(
                        "not a SOCKS5 server (version byte {v})"
                    )));
                }
                let creds = self.proxy.user.is_some() || self.proxy.password.is_some();
                let request = std::mem::take(request);
                let out = match self.buf[1] {
                    0x00 => {
                        self.state = State::Socks5Reply;
                        request
                    }
                    0x02 if creds => {
                        let auth = socks5_auth(&self.proxy)?;
                        self.state = State::Socks5Auth { request };
                        auth
                    }
                    0xff => return fail(ProxyError::NoAcceptableMethod),
                    other => {
                        return fail(ProxyError::Protocol(format!(
                            "the SOCKS5 proxy chose method {other:#04x}, which we did not offer"
                        )))
                    }
                };
                self.buf.clear();
                Ok(out)
            }
            State::Socks5Auth { request } => {
                if self.buf.len() < 2 {
                    return Ok(Vec::new());
                }
                if self.buf[1] != 0 {
                    return fail(ProxyError::AuthFailed);
                }
                let request = std::mem::take(request);
                self.state = State::Socks5Reply;
                self.buf.clear();
                Ok(request)
            }
            State::Socks5Reply => {
                if self.buf.len() >= 2 {
                    if self.buf[0] != 5 {
                        let v = self.buf[0];
                        return fail(ProxyError::Protocol(format!(
                            "bad SOCKS5 reply version {v}"
                        )));
                    }
                    if self.buf[1] != 0 {
                        let code = self.buf[1];
                        return fail(ProxyError::Refused {
                            code,
                            message: socks5_reply(code),
                        });
                    }
                }
                if let Some(&atyp) = self.buf.get(3) {
                    if ![1, 3, 4].contains(&atyp) {
                        return fail(ProxyError::Protocol(format!(
                            "bad SOCKS5 address type {atyp}"
                        )));
                    }
                }
                if self.wants() == Some(1) && self.complete_socks5_reply() {
                    self.state = State::Done;
                }
                Ok(Vec::new())
            }
            State::Socks4Reply => {
                if self.buf.len() < 8 {
                    return Ok(Vec::new());
                }
                if self.buf[1] != 90 {
                    let code = self.buf[1];
                    let message = match code {
                        91 => "request rejected or failed",
                        92 => "the proxy could not reach our identd",
                        93 => "identd reported a different user id",
                        _ => "unknown reply code",
                    };
                    return fail(ProxyError::Refused { code, message });
                }
                self.state = State::Done;
                Ok(Vec::new())
            }
        }
    }

    /// Whether the SOCKS5 reply (with its bound address) is all there.
    fn complete_socks5_reply(&self) -> bool {
        let len = self.buf.len();
        match self.buf.get(3) {
            Some(1) => len >= 10,
            Some(4) => len >= 22,
            Some(3) => self.buf.get(4).is_some_and(|&n| len >= 7 + usize::from(n)),
            _ => false,
        }
    }
}

fn http_connect_request(proxy: &Proxy, host: &str, port: u16) -> Result<Vec<u8>> {
    if host.contains(['\r', '\n', ' ', '/']) {
        return Err(Error::Url(format!("bad host {host:?}")));
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if proxy.user.is_some() || proxy.password.is_some() {
        let creds = format!(
            "{}:{}",
            proxy.user.as_deref().unwrap_or(""),
            proxy.password.as_deref().unwrap_or("")
        );
        request.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            BASE64.encode(creds)
        ));
    }
    request.push_str("\r\n");
    Ok(request.into_bytes())
}

/// The status of a complete `CONNECT` response head: `Ok(Ok(()))` for 2xx,
/// `Ok(Err(_))` for another status, `Err(_)` for something not HTTP.
fn connect_status(
    head: &[u8],
) -> std::result::Result<std::result::Result<(), ProxyError>, ProxyError> {
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let reason = parts.next().unwrap_or("").trim().to_owned();
    match status {
        Some(s) if version.starts_with("HTTP/1.") && (100..1000).contains(&s) => {
            if (200..300).contains(&s) {
                Ok(Ok(()))
            } else {
                Ok(Err(ProxyError::Status { status: s, reason }))
            }
        }
        _ => Err(ProxyError::Protocol(format!(
            "not an HTTP response to CONNECT: {:?}",
            line.chars().take(80).collect::<String>()
        ))),
    }
}

fn socks5_auth(proxy: &Proxy) -> Result<Vec<u8>> {
    let user = proxy.user.as_deref().unwrap_or("").as_bytes();
    let password = proxy.password.as_deref().unwrap_or("").as_bytes();
    let (Ok(ulen), Ok(plen)) = (u8::try_from(user.len()), u8::try_from(password.len())) else {
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
    Ok(msg)
}

fn socks5_request(ip: Option<IpAddr>, host: &str, port: u16) -> Result<Vec<u8>> {
    let mut request = vec![5, 1, 0];
    match ip {
        Some(IpAddr::V4(a)) => {
            request.push(1);
            request.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            request.push(4);
            request.extend_from_slice(&a.octets());
        }
        None => {
            let len = u8::try_from(host.len())
                .map_err(|_| Error::Url(format!("host name {host:?} is too long")))?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    Ok(request)
}

fn socks4_request(proxy: &Proxy, ip: Option<IpAddr>, host: &str, port: u16) -> Result<Vec<u8>> {
    let mut request = vec![4, 1];
    request.extend_from_slice(&port.to_be_bytes());
    match ip {
        Some(IpAddr::V4(a)) => request.extend_from_slice(&a.octets()),
        Some(IpAddr::V6(_)) => {
            return Err(Error::Url(format!(
                "SOCKS4 cannot reach the IPv6 address {host}"
            )))
        }
        // SOCKS4a: 0.0.0.x (x ≠ 0) means "the name follows".
        None => request.extend_from_slice(&[0, 0, 0, 1]),
    }
    if let Some(user) = &proxy.user {
        if user.contains('\0') {
            return Err(Error::Url("a SOCKS4 user id has no NUL".into()));
        }
        request.extend_from_slice(user.as_bytes());
    }
    request.push(0);
    if ip.is_none() {
        request.extend_from_slice(host.as_bytes());
        request.push(0);
    }
    Ok(request)
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

    /// Drives a [`Negotiation`] against a scripted proxy that answers
    /// `answer` (read as the negotiation asks for it, then EOF); returns
    /// the outcome and every byte the negotiation sent.
    fn scripted(proxy: &Proxy, host: &str, answer: &[u8]) -> (Result<()>, Vec<u8>) {
        let (mut negotiation, mut sent) = match Negotiation::start(proxy, host, 9) {
            Ok(started) => started,
            Err(e) => return (Err(e), Vec::new()),
        };
        let mut rest = answer;
        while let Some(want) = negotiation.wants() {
            let (now, later) = rest.split_at(want.min(rest.len()));
            rest = later;
            match negotiation.receive(now) {
                Ok(reply) => sent.extend_from_slice(&reply),
                Err(e) => return (Err(e), sent),
            }
        }
        assert!(negotiation.is_done());
        (Ok(()), sent)
    }

    /// The async driver over a pipe, against the same script: the bytes
    /// of the faces are the negotiation's.
    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn async_tunnel_drives_the_same_negotiation() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let proxy = http_proxy("socks5://u:pw@proxy");
        let peer = tokio::spawn(async move {
            let mut seen = vec![0u8; 4 + 6 + 10];
            server.read_exact(&mut seen[..4]).await.unwrap();
            server.write_all(&[5, 2]).await.unwrap();
            server.read_exact(&mut seen[4..10]).await.unwrap();
            server.write_all(&[1, 0]).await.unwrap();
            server.read_exact(&mut seen[10..]).await.unwrap();
            server
                .write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
            seen
        });
        proxy.tunnel(&mut client, "10.0.0.1", 9).await.unwrap();
        let (_, want) = scripted(
            &proxy,
            "10.0.0.1",
            &[5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(peer.await.unwrap(), want);
    }

    #[test]
    fn http_connect_bytes_and_statuses() {
        let p = http_proxy("http://u:p@proxy:1");
        let (r, sent) = scripted(&p, "::1", b"HTTP/1.1 200 Connection established\r\n\r\n");
        r.unwrap();
        assert_eq!(
            String::from_utf8(sent).unwrap(),
            "CONNECT [::1]:9 HTTP/1.1\r\nHost: [::1]:9\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        let (r, _) = scripted(
            &p,
            "h",
            b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n",
        );
        match r {
            Err(Error::Proxy {
                source: ProxyError::Status { status: 407, .. },
                proxy,
            }) => assert_eq!(proxy, "http://u@proxy:1"),
            other => panic!("{other:?}"),
        }
        let (r, _) = scripted(&p, "h", b"SSH-2.0-x\r\n\r\n");
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Protocol(_),
                ..
            })
        ));
        let (r, _) = scripted(&p, "h", b"HTTP/1.1 200 OK\r\n\r\nextra");
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Protocol(_),
                ..
            })
        ));
        let (r, _) = scripted(&p, "h", b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(r, Err(Error::Proxy { .. })), "{r:?}");
    }

    #[test]
    fn socks4_and_4a_bytes() {
        let p = http_proxy("socks4://alice@proxy");
        let (r, sent) = scripted(&p, "10.1.2.3", &[0, 90, 0, 0, 0, 0, 0, 0]);
        r.unwrap();
        assert_eq!(sent, b"\x04\x01\x00\x09\x0a\x01\x02\x03alice\0");

        let p = http_proxy("socks4a://proxy");
        let (r, sent) = scripted(&p, "target.example", &[0, 90, 0, 0, 0, 0, 0, 0]);
        r.unwrap();
        assert_eq!(sent, b"\x04\x01\x00\x09\0\0\0\x01\0target.example\0");

        let (r, _) = scripted(&p, "target.example", &[0, 91, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Refused { code: 91, .. },
                ..
            })
        ));
        let (r, _) = scripted(&p, "::1", &[]);
        assert!(matches!(r, Err(Error::Url(_))), "{r:?}");
    }

    #[test]
    fn socks5_request_bytes() {
        let ok = [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let (r, sent) = scripted(&http_proxy("socks5h://proxy"), "example.test", &ok);
        r.unwrap();
        assert_eq!(
            sent,
            b"\x05\x01\x00\x05\x01\x00\x03\x0cexample.test\x00\x09"
        );

        // An IP literal goes as an address, whichever the kind.
        let (r, sent) = scripted(&http_proxy("socks5h://proxy"), "::1", &ok);
        r.unwrap();
        let mut want = b"\x05\x01\x00\x05\x01\x00\x04".to_vec();
        want.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        want.extend_from_slice(&[0, 9]);
        assert_eq!(sent, want);

        // With credentials: both methods offered, then RFC 1929.
        let ok_auth = [5, 2, 1, 0, 5, 0, 0, 3, 1, b'x', 0, 0];
        let (r, sent) = scripted(&http_proxy("socks5://u:pw@proxy"), "10.0.0.1", &ok_auth);
        r.unwrap();
        assert_eq!(
            sent,
            b"\x05\x02\x00\x02\x01\x01u\x02pw\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x09"
        );
        let (r, _) = scripted(
            &http_proxy("socks5://u:pw@proxy"),
            "10.0.0.1",
            &[5, 2, 1, 1],
        );
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
        );
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Refused { code: 5, .. },
                ..
            })
        ));
    }

    #[test]
    fn socks5_replies() {
        let p = http_proxy("socks5h://proxy");
        // No method acceptable.
        let (r, _) = scripted(&p, "t", &[5, 0xff]);
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::NoAcceptableMethod,
                ..
            })
        ));
        // Not SOCKS5 at all.
        let (r, _) = scripted(&p, "t", b"HTTP/1.1 400 Bad\r\n\r\n");
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Protocol(_),
                ..
            })
        ));
        // Closed mid-reply.
        let (r, _) = scripted(&p, "t", &[5]);
        assert!(matches!(
            r,
            Err(Error::Proxy {
                source: ProxyError::Protocol(_),
                ..
            })
        ));
    }
}
