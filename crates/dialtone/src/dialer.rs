//! [`Dialer`]: a URL in, an open [`WebSocket`] out.
//!
//! `ws://` or `wss://` URL → proxy (given, or from `*_PROXY` / `NO_PROXY`)
//! → DNS → TCP (addresses tried in order) → TLS for `wss://` → opening
//! handshake, with redirects, cookies and authentication, all under one
//! dial timeout (30 s by default, as in EFL). The handshake can also run
//! over any transport the caller connected itself ([`Dialer::handshake`]).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use dialtone_proto::handshake::{parse_response, ClientHandshake};
use dialtone_proto::http::{HeaderMap, StatusCode};
use dialtone_proto::Config;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cookies::CookieJar;
use crate::error::{Error, Rejection, Result};
use crate::handshake::{client_step, connect_host, parse_url, target, Response, HANDSHAKE_READ};
use crate::socket::{WebSocket, DEFAULT_CLOSE_TIMEOUT};
use crate::transport::{connect, Transport};

/// The default `User-Agent`: `dialtone/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("dialtone/", env!("CARGO_PKG_VERSION"));

/// Dials WebSocket servers. Cheap to clone; one dialer can dial many times.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// let (mut ws, _response) = dialtone::Dialer::new()
///     .protocol("chat")
///     .dial("ws://127.0.0.1:9001/chat")
///     .await?;
/// ws.send("hello").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Dialer {
    config: Config,
    timeout: Duration,
    close_timeout: Duration,
    protocols: Vec<String>,
    user_agent: Option<String>,
    origin: Option<String>,
    headers: Vec<(String, String)>,
    keepalive: Option<(Duration, Duration)>,
    idle_timeout: Option<Duration>,
    auth: Option<Auth>,
    cookies: Option<CookieJar>,
    max_redirects: usize,
    allow_downgrade: bool,
    tls: crate::tls::ClientTls,
    proxy: crate::proxy::ProxySetting,
}

/// Credentials sent with the handshake's `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP Basic (RFC 7617).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A bearer token (RFC 6750).
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user:?}, ***)"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Auth {
    fn header_value(&self) -> String {
        match self {
            Auth::Basic { user, password } => {
                format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
            }
            Auth::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

impl Default for Dialer {
    fn default() -> Self {
        Dialer {
            config: Config::default(),
            timeout: Self::DEFAULT_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            protocols: Vec::new(),
            user_agent: Some(DEFAULT_USER_AGENT.to_owned()),
            origin: None,
            headers: Vec::new(),
            keepalive: None,
            idle_timeout: None,
            auth: None,
            cookies: None,
            max_redirects: Self::DEFAULT_MAX_REDIRECTS,
            allow_downgrade: false,
            tls: crate::tls::ClientTls::default(),
            proxy: crate::proxy::ProxySetting::default(),
        }
    }
}

impl Dialer {
    /// The default dial timeout: 30 s, as in EFL.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// The default number of handshake redirects followed.
    pub const DEFAULT_MAX_REDIRECTS: usize = 5;

    /// A dialer with default limits, no subprotocols and the default user agent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets limits (frame, message and handshake sizes, outgoing frame size)
    /// and the permessage-deflate offers ([`Config::deflate`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the dial timeout, covering DNS, TCP and the handshake.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long to wait for the server's part of the closing handshake.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Offers a subprotocol (in order of preference).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Sets the `User-Agent` header; `None` sends none.
    pub fn user_agent(mut self, user_agent: Option<String>) -> Self {
        self.user_agent = user_agent;
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Adds a request header. Handshake headers (`Host`, `Upgrade`,
    /// `Connection`, `Sec-WebSocket-*`) are refused when dialing.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `Authorization` with these credentials (to the URL's host only,
    /// not to hosts a redirect leads to). Credentials in the URL's user
    /// info (`ws://user:pw@host/`) are sent as Basic without this.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Pings the server every `interval` once connected; if nothing comes
    /// back within `pong_deadline`, the connection is dropped and reported
    /// as a timeout, then `Abruptly` (see [`WebSocket::set_keepalive`]).
    pub fn keepalive(mut self, interval: Duration, pong_deadline: Duration) -> Self {
        self.keepalive = Some((interval, pong_deadline));
        self
    }

    /// Closes the connection with `GoingAway` when nothing arrives from the
    /// server for this long (see [`WebSocket::set_idle_timeout`]).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Sends the jar's matching cookies and stores the `Set-Cookie` headers
    /// of handshake responses and redirects in it.
    pub fn cookie_jar(mut self, jar: CookieJar) -> Self {
        self.cookies = Some(jar);
        self
    }

    /// Follows at most this many redirects (301, 302, 303, 307, 308) of the
    /// handshake; 0 turns following off. Default 5, as EFL followed them.
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.max_redirects = n;
        self
    }

    /// Lets a redirect lead from `wss://` (or `https://`) to `ws://`.
    /// Refused by default: it would drop TLS without the caller knowing.
    pub fn allow_insecure_redirects(mut self, allow: bool) -> Self {
        self.allow_downgrade = allow;
        self
    }

    /// Also trusts the CA certificates in this PEM text for `wss://`, on
    /// top of the built-in roots (see [`tls`](crate::tls)). Bad PEM is
    /// reported by the dial as [`Error::TlsConfig`].
    pub fn add_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        let pem: Vec<u8> = pem.into();
        self.tls
            .extra_roots
            .push(crate::tls::Pem::Bytes(pem.into()));
        self.tls.changed();
        self
    }

    /// Also trusts the CA certificates in this PEM file for `wss://` (read
    /// at the first `wss://` dial).
    pub fn add_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls
            .extra_roots
            .push(crate::tls::Pem::File(path.into()));
        self.tls.changed();
        self
    }

    /// Whether to trust the built-in Mozilla roots (default `true`). With
    /// `false`, only the CAs added with [`Dialer::add_ca_pem`] /
    /// [`Dialer::add_ca_file`] are trusted.
    pub fn tls_built_in_roots(mut self, enabled: bool) -> Self {
        self.tls.no_built_in_roots = !enabled;
        self.tls.changed();
        self
    }

    /// Presents this client certificate (chain, leaf first) and private key
    /// to servers that ask for one, both PEM.
    pub fn client_cert_pem(
        mut self,
        cert_chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        let (cert, key): (Vec<u8>, Vec<u8>) = (cert_chain.into(), key.into());
        self.tls.identity = Some((
            crate::tls::Pem::Bytes(cert.into()),
            crate::tls::Pem::Bytes(key.into()),
        ));
        self.tls.changed();
        self
    }

    /// Presents the client certificate and key in these PEM files (read at
    /// the first `wss://` dial).
    pub fn client_cert_files(
        mut self,
        cert_chain: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls.identity = Some((
            crate::tls::Pem::File(cert_chain.into()),
            crate::tls::Pem::File(key.into()),
        ));
        self.tls.changed();
        self
    }

    /// Sends this name as SNI and checks the server's certificate against
    /// it, instead of the URL's host (which is still dialed and sent as
    /// `Host`).
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls.server_name = Some(name.into());
        self
    }

    /// **Dangerous**: with `true`, `wss://` accepts *any* server
    /// certificate — expired, self-signed, for another name — so anyone on
    /// the path can read and change the connection. For tests against
    /// throwaway certificates only; a warning is logged at each such dial.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls.accept_invalid_certs = accept;
        self.tls.changed();
        self
    }

    /// Uses this rustls client config for `wss://` as is, instead of the one
    /// the options above build (they are then ignored, except
    /// [`Dialer::tls_server_name`]). The config should offer ALPN `http/1.1`
    /// or nothing.
    pub fn tls_config(mut self, config: std::sync::Arc<crate::tls::rustls::ClientConfig>) -> Self {
        self.tls.custom = Some(config);
        self
    }

    /// Dials through this proxy, for `ws://` and `wss://` alike:
    /// `http://[user:password@]host:port` (HTTP `CONNECT`, Basic
    /// credentials), `socks5://` (names resolved here), `socks5h://` (by the
    /// proxy), `socks4://`, `socks4a://`; see [`Proxy::parse`](crate::proxy::Proxy::parse).
    /// A bad URL is reported by the dial. Overrides the environment.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = crate::proxy::ProxySetting::Url(url.into());
        self
    }

    /// Dials directly, ignoring any proxy environment variables.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = crate::proxy::ProxySetting::Direct;
        self
    }

    /// Picks the proxy from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` /
    /// `NO_PROXY` at each dial, like curl (the default); see
    /// [`Proxy::from_env`](crate::proxy::Proxy::from_env).
    pub fn proxy_from_env(mut self) -> Self {
        self.proxy = crate::proxy::ProxySetting::Env;
        self
    }

    /// Dials a `ws://` or `wss://` URL (through the proxy, if any), following
    /// redirects; the final URL is in
    /// [`Response::url`].
    pub async fn dial(&self, url: &str) -> Result<(WebSocket<Transport>, Response)> {
        let first = parse_url(url)?;
        let work = async {
            let mut url = first.clone();
            let mut hops = 0;
            loop {
                let transport = self.open_transport(&url).await?;
                let send_auth = same_origin(&url, &first);
                match self.handshake_inner(transport, &url, send_auth).await {
                    Err(Error::Rejected(r)) if is_redirect(r.status) => {
                        let next = redirect_target(&url, &r)?;
                        if hops >= self.max_redirects {
                            return Err(Error::Redirect(format!(
                                "more than {} redirects (next: {next})",
                                self.max_redirects
                            )));
                        }
                        if url.scheme() == "wss" && next.scheme() == "ws" && !self.allow_downgrade {
                            return Err(Error::Redirect(format!(
                                "refusing to follow {url} to {next}, which drops TLS"
                            )));
                        }
                        tracing::debug!("handshake redirected ({}) to {next}", r.status);
                        hops += 1;
                        url = next;
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
    }

    /// (Proxy tunnel or DNS and TCP), then TLS for `wss://`, for `url`.
    async fn open_transport(&self, url: &url::Url) -> Result<Transport> {
        let (_, _, port) = target(url)?;
        let host = connect_host(url)?;
        let tcp = match self.proxy.resolve(url)? {
            Some(proxy) => {
                tracing::debug!("dialing {host}:{port} through {proxy}");
                proxy.open(&host, port).await?
            }
            None => connect(&host, port).await?,
        };
        if url.scheme() == "wss" {
            let tls = self.tls.connect(tcp, &host).await?;
            Ok(Transport::TlsClient(Box::new(tls)))
        } else {
            Ok(Transport::Tcp(tcp))
        }
    }

    /// Runs the opening handshake for `url` over a transport the caller
    /// connected (e.g. through a proxy, or TLS), under the dial timeout.
    pub async fn handshake<S>(&self, io: S, url: &str) -> Result<(WebSocket<S>, Response)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let url = parse_url(url)?;
        tokio::time::timeout(self.timeout, self.handshake_inner(io, &url, true))
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
    }

    pub(crate) fn request(&self, url: &url::Url, send_auth: bool) -> Result<ClientHandshake> {
        let (host, resource, _) = target(url)?;
        let mut request = ClientHandshake::new(host, resource);
        for p in &self.protocols {
            request.protocol(p.clone());
        }
        for offer in &self.config.deflate {
            request.deflate(offer.clone());
        }
        if let Some(origin) = &self.origin {
            request.origin(origin.clone());
        }
        if let Some(ua) = &self.user_agent {
            request.header("User-Agent", ua)?;
        }
        let explicit_auth = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        for (name, value) in &self.headers {
            request.header(name, value)?;
        }
        if !explicit_auth {
            if let Some(auth) = url_auth(url).or_else(|| self.auth.clone().filter(|_| send_auth)) {
                request.header("Authorization", &auth.header_value())?;
            }
        }
        if let Some(cookie) = self.cookies.as_ref().and_then(|jar| jar.header_for(url)) {
            request.header("Cookie", &cookie)?;
        }
        Ok(request)
    }

    pub(crate) fn config_ref(&self) -> &Config {
        &self.config
    }

    pub(crate) fn timeout_value(&self) -> Duration {
        self.timeout
    }

    async fn handshake_inner<S>(
        &self,
        mut io: S,
        url: &url::Url,
        send_auth: bool,
    ) -> Result<(WebSocket<S>, Response)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request = self.request(url, send_auth)?;
        io.write_all(&request.to_bytes()).await?;
        io.flush().await?;
        let mut buf = BytesMut::with_capacity(HANDSHAKE_READ);
        loop {
            buf.reserve(HANDSHAKE_READ);
            if io.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the handshake",
                )));
            }
            let Some((head, len)) = parse_response(&buf, self.config.max_handshake_size)? else {
                continue;
            };
            if let Some(jar) = &self.cookies {
                jar.store_from(url, &head.headers);
            }
            if head.status != StatusCode::SWITCHING_PROTOCOLS {
                let _ = buf.split_to(len);
                let body = read_body(&mut io, buf, &head.headers).await;
                return Err(Error::Rejected(Box::new(Rejection::from_head(head, body))));
            }
            let (conn, response) = client_step(&request, &self.config, head, len, &mut buf, url)?;
            let mut ws = WebSocket::from_connection(io, conn, response.protocol.clone());
            ws.set_close_timeout(self.close_timeout);
            if let Some((interval, deadline)) = self.keepalive {
                ws.set_keepalive(Some(interval), deadline);
            }
            ws.set_idle_timeout(self.idle_timeout);
            return Ok((ws, response));
        }
    }
}

/// The most of a refusal's body kept for the caller.
pub const MAX_REJECTION_BODY: usize = 64 * 1024;

/// Reads a refusal's body: `Content-Length` bytes, or until the server
/// closes, at most [`MAX_REJECTION_BODY`] and for at most a second.
async fn read_body<S: AsyncRead + Unpin>(
    io: &mut S,
    mut buf: BytesMut,
    headers: &HeaderMap,
) -> Bytes {
    let want = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(MAX_REJECTION_BODY)
        .min(MAX_REJECTION_BODY);
    let read = async {
        while buf.len() < want {
            buf.reserve(want - buf.len());
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
    buf.truncate(want);
    buf.freeze()
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The `ws`/`wss` URL a redirect points to (`http` → `ws`, `https` → `wss`).
fn redirect_target(from: &url::Url, r: &Rejection) -> Result<url::Url> {
    let location = r
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Redirect(format!("{} without a Location", r.status)))?;
    let mut next = from
        .join(location)
        .map_err(|e| Error::Redirect(format!("bad Location {location:?}: {e}")))?;
    let scheme = match next.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => return Err(Error::Redirect(format!("redirect to a {other}: URL"))),
    };
    // `set_scheme` refuses some special-scheme changes; rebuild the URL instead.
    if next.scheme() != scheme {
        let rest = &next.as_str()[next.scheme().len()..];
        next = url::Url::parse(&format!("{scheme}{rest}"))
            .map_err(|e| Error::Redirect(format!("bad Location {location:?}: {e}")))?;
    }
    next.set_fragment(None);
    Ok(next)
}

fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// Basic credentials from the URL's user info, percent-decoded.
fn url_auth(url: &url::Url) -> Option<Auth> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some(Auth::Basic {
        user: decode(url.username()),
        password: decode(url.password().unwrap_or("")),
    })
}
