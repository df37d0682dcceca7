//! [`Dialer`]: a URL in, an open [`WebSocket`] out.
//!
//! `ws://` or `wss://` URL → proxy (given, or from `*_PROXY` / `NO_PROXY`)
//! → DNS → TCP (addresses tried in order) → TLS for `wss://` → opening
//! handshake, with redirects, cookies and authentication, all under one
//! dial timeout (30 s by default, as in EFL). The handshake can also run
//! over any transport the caller connected itself ([`Dialer::handshake`]).
//!
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[`WebSocket`]: crate#feature-flags\n[`Dialer::handshake`]: crate#feature-flags"
)]

#[cfg(feature = "blocking")]
use std::io::{self, Write as _};
use std::time::Duration;
#[cfg(feature = "blocking")]
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use dialtone_proto::handshake::ClientHandshake;
use dialtone_proto::Config;
#[cfg(feature = "tokio")]
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[cfg(feature = "blocking")]
use crate::blocking;
#[cfg(feature = "blocking")]
use crate::blocking_transport::{self, Deadline};
#[cfg(feature = "cookies")]
use crate::cookies::CookieJar;
use crate::dial_plan::{Attempt, DialPlan};
use crate::error::{Error, Rejection, Result};
#[cfg(feature = "blocking")]
use crate::handshake::read_into;
use crate::handshake::{connect_host, target, ClientOutcome, ClientStep, Response};
#[cfg(feature = "tokio")]
use crate::socket::WebSocket;
#[cfg(feature = "tokio")]
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
    protocols: Vec<String>,
    user_agent: Option<String>,
    origin: Option<String>,
    headers: Vec<(String, String)>,
    auth: Option<Auth>,
    #[cfg(feature = "cookies")]
    cookies: Option<CookieJar>,
    max_redirects: usize,
    allow_downgrade: bool,
    #[cfg(feature = "tls")]
    tls: crate::tls::ClientTls,
    #[cfg(feature = "proxy")]
    proxy: crate::proxy::ProxySetting,
    /// When to speak WebSockets over HTTP/2, and what was learnt of which
    /// servers do not (see [`crate::http2`]).
    #[cfg(feature = "http2")]
    pub(crate) http2: crate::http2::Http2State,
}

/// Credentials sent with the handshake's `Authorization` header.
///
/// ```
/// use dialtone::{Auth, Dialer};
///
/// let dialer = Dialer::new().auth(Auth::Digest {
///     user: "ann".into(),
///     password: "secret".into(),
/// });
/// # drop(dialer);
/// // Debug output never shows a secret.
/// assert_eq!(format!("{:?}", Auth::Bearer("t0k3n".into())), "Bearer(***)");
/// ```
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
    /// HTTP Digest (RFC 7616: MD5 or SHA-256, `qop=auth`): nothing is sent
    /// until the server's `401` challenges, then one new handshake answers
    /// it (and one more if the server says the nonce was stale). The
    /// password never crosses the wire.
    Digest {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user:?}, ***)"),
            Auth::Digest { user, .. } => write!(f, "Digest({user:?}, ***)"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Auth {
    /// The `Authorization` value sent before any challenge (none for
    /// Digest, which needs the server's nonce).
    pub(crate) fn header_value(&self) -> String {
        match self {
            Auth::Basic { user, password } => {
                format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
            }
            Auth::Bearer(token) => format!("Bearer {token}"),
            Auth::Digest { .. } => String::new(),
        }
    }
}

impl Default for Dialer {
    fn default() -> Self {
        Dialer {
            config: Config::default(),
            timeout: Self::DEFAULT_TIMEOUT,
            protocols: Vec::new(),
            user_agent: Some(DEFAULT_USER_AGENT.to_owned()),
            origin: None,
            headers: Vec::new(),
            auth: None,
            #[cfg(feature = "cookies")]
            cookies: None,
            max_redirects: Self::DEFAULT_MAX_REDIRECTS,
            allow_downgrade: false,
            #[cfg(feature = "tls")]
            tls: crate::tls::ClientTls::default(),
            #[cfg(feature = "proxy")]
            proxy: crate::proxy::ProxySetting::default(),
            #[cfg(feature = "http2")]
            http2: crate::http2::Http2State::default(),
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

    /// Sets limits (frame, message and handshake sizes, outgoing frame size),
    /// the permessage-deflate offers ([`Config::deflate`]) and the timeouts
    /// ([`Config::timeouts`]: set [`Dialer::timeouts`] after this).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the dial timeout, covering DNS, TCP and the handshake.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connection's close timeout, keepalive and idle timeout (see
    /// [`Timeouts`](dialtone_proto::Timeouts)).
    pub fn timeouts(mut self, timeouts: dialtone_proto::Timeouts) -> Self {
        self.config.timeouts = timeouts;
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

    /// Sends `Authorization` with these credentials, to the URL's origin
    /// only (not to another host or port a redirect leads to). Credentials
    /// in the URL's user info (`ws://user:pw@host/`) are used without this
    /// and before it.
    ///
    /// Basic credentials (given here or in the URL) are sent with the first
    /// request, as curl's `-u` does; if the server answers `401` with a
    /// Digest challenge instead, the same user and password answer it, as
    /// curl's `--anyauth` would. [`Auth::Digest`] sends nothing until
    /// challenged, so the password is never sent in the clear.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    #[cfg(feature = "cookies")]
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

    #[cfg(feature = "tls")]
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

    #[cfg(feature = "tls")]
    /// Also trusts the CA certificates in this PEM file for `wss://` (read
    /// at the first `wss://` dial).
    pub fn add_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls
            .extra_roots
            .push(crate::tls::Pem::File(path.into()));
        self.tls.changed();
        self
    }

    #[cfg(feature = "tls")]
    /// Whether to trust the built-in Mozilla roots (default `true`). With
    /// `false`, only the CAs added with [`Dialer::add_ca_pem`] /
    /// [`Dialer::add_ca_file`] are trusted.
    pub fn tls_built_in_roots(mut self, enabled: bool) -> Self {
        self.tls.no_built_in_roots = !enabled;
        self.tls.changed();
        self
    }

    #[cfg(feature = "tls")]
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

    #[cfg(feature = "tls")]
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

    #[cfg(feature = "tls")]
    /// Sends this name as SNI and checks the server's certificate against
    /// it, instead of the URL's host (which is still dialed and sent as
    /// `Host`).
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls.server_name = Some(name.into());
        self
    }

    #[cfg(feature = "tls")]
    /// **Dangerous**: with `true`, `wss://` accepts *any* server
    /// certificate — expired, self-signed, for another name — so anyone on
    /// the path can read and change the connection. For tests against
    /// throwaway certificates only; a warning is logged at each such dial.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls.accept_invalid_certs = accept;
        self.tls.changed();
        self
    }

    #[cfg(feature = "tls")]
    /// Uses this rustls client config for `wss://` as is, instead of the one
    /// the options above build (they are then ignored, except
    /// [`Dialer::tls_server_name`]). The config should offer ALPN `http/1.1`
    /// or nothing (or `h2` too, for `Dialer::http2`).
    pub fn tls_config(mut self, config: std::sync::Arc<crate::tls::rustls::ClientConfig>) -> Self {
        self.tls.custom = Some(config);
        self
    }

    #[cfg(feature = "proxy")]
    /// Dials through this proxy, for `ws://` and `wss://` alike:
    /// `http://[user:password@]host:port` (HTTP `CONNECT`, Basic
    /// credentials), `socks5://` (names resolved here), `socks5h://` (by the
    /// proxy), `socks4://`, `socks4a://`; see [`Proxy::parse`](crate::proxy::Proxy::parse).
    /// A bad URL is reported by the dial. Overrides the environment.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = crate::proxy::ProxySetting::Url(url.into());
        self
    }

    #[cfg(feature = "proxy")]
    /// Dials directly, ignoring any proxy environment variables.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = crate::proxy::ProxySetting::Direct;
        self
    }

    #[cfg(feature = "proxy")]
    /// Picks the proxy from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` /
    /// `NO_PROXY` at each dial, like curl (the default); see
    /// [`Proxy::from_env`](crate::proxy::Proxy::from_env).
    pub fn proxy_from_env(mut self) -> Self {
        self.proxy = crate::proxy::ProxySetting::Env;
        self
    }

    #[cfg(feature = "tokio")]
    /// Dials a `ws://` or `wss://` URL (through the proxy, if any), following
    /// redirects and answering a Digest challenge (see [`Dialer::auth`]);
    /// the final URL is in [`Response::url`]. With the `http2` feature, a
    /// `wss://` dial may speak HTTP/2 (RFC 8441) instead, as
    /// `Dialer::http2` says; [`Response::version`] tells which.
    pub async fn dial(&self, url: &str) -> Result<(WebSocket<Transport>, Response)> {
        let mut plan = DialPlan::new(self, url)?;
        let work = async {
            // An HTTP/2 connection a refusal came over, for the next
            // attempt (a Digest answer, a redirect) if it goes to the same origin.
            #[cfg(feature = "http2")]
            let mut h2 = None;
            loop {
                let attempt = plan.attempt()?;
                #[cfg(feature = "http2")]
                let exchange = match self.route(&attempt.url, &mut h2).await? {
                    crate::http2::Route::H2(conn) => conn.exchange(&attempt).await?,
                    crate::http2::Route::H1(transport) => {
                        self.exchange(transport, &attempt).await?
                    }
                };
                #[cfg(not(feature = "http2"))]
                let exchange = {
                    let transport = self.open_transport(&attempt.url, false).await?;
                    self.exchange(transport, &attempt).await?
                };
                match exchange {
                    Exchange::Upgraded(upgraded) => {
                        plan.upgraded(&upgraded.1);
                        return Ok(*upgraded);
                    }
                    Exchange::Rejected(r) => plan.rejected(r)?,
                }
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
    }

    #[cfg(feature = "tokio")]
    /// (Proxy tunnel or DNS and TCP), then TLS for `wss://`, for `url`;
    /// TLS offers ALPN `h2` too if `h2`.
    pub(crate) async fn open_transport(&self, url: &url::Url, h2: bool) -> Result<Transport> {
        // ALPN is TLS's: h2c needs no offer.
        #[cfg(not(feature = "tls"))]
        let _ = h2;
        let (_, _, port) = target(url)?;
        let host = connect_host(url)?;
        no_tls_check(url)?;
        #[cfg(feature = "proxy")]
        let tcp = match self.proxy.resolve(url)? {
            Some(proxy) => {
                tracing::debug!("dialing {host}:{port} through {proxy}");
                proxy.open(&host, port).await?
            }
            None => connect(&host, port).await?,
        };
        #[cfg(not(feature = "proxy"))]
        let tcp = connect(&host, port).await?;
        #[cfg(feature = "tls")]
        if url.scheme() == "wss" {
            let tls = self.tls.connect(tcp, &host, h2).await?;
            return Ok(Transport::TlsClient(Box::new(tls)));
        }
        Ok(Transport::Tcp(tcp))
    }

    #[cfg(feature = "tokio")]
    /// Runs the opening handshake for `url` over a transport the caller
    /// connected (e.g. through a proxy, or TLS), under the dial timeout.
    /// There is one request: a redirect or a challenge is the error.
    pub async fn handshake<S>(&self, io: S, url: &str) -> Result<(WebSocket<S>, Response)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let plan = DialPlan::new(self, url)?;
        let work = async {
            let attempt = plan.attempt()?;
            match self.exchange(io, &attempt).await? {
                Exchange::Upgraded(upgraded) => {
                    plan.upgraded(&upgraded.1);
                    Ok(*upgraded)
                }
                Exchange::Rejected(r) => {
                    plan.refused(&r);
                    Err(Error::Rejected(r))
                }
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
    }

    /// The request for `url`, with this `Authorization` (unless the caller
    /// set one with [`Dialer::header`]) and the jar's cookies.
    pub(crate) fn request(
        &self,
        url: &url::Url,
        authorization: Option<&str>,
    ) -> Result<ClientHandshake> {
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
        for (name, value) in &self.headers {
            request.header(name, value)?;
        }
        if let Some(value) = authorization.filter(|_| !self.has_explicit_authorization()) {
            request.header("Authorization", value)?;
        }
        #[cfg(feature = "cookies")]
        if let Some(cookie) = self.cookies.as_ref().and_then(|jar| jar.header_for(url)) {
            request.header("Cookie", &cookie)?;
        }
        Ok(request)
    }

    /// Whether the caller set `Authorization` with [`Dialer::header`].
    pub(crate) fn has_explicit_authorization(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
    }

    pub(crate) fn auth_ref(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    #[cfg(feature = "cookies")]
    pub(crate) fn cookie_jar_ref(&self) -> Option<&CookieJar> {
        self.cookies.as_ref()
    }

    pub(crate) fn max_redirects_value(&self) -> usize {
        self.max_redirects
    }

    pub(crate) fn allows_downgrade(&self) -> bool {
        self.allow_downgrade
    }

    #[cfg(feature = "http2")]
    pub(crate) fn config_ref(&self) -> &Config {
        &self.config
    }

    #[cfg(feature = "http2")]
    pub(crate) fn timeout_value(&self) -> Duration {
        self.timeout
    }

    #[cfg(feature = "tokio")]
    /// Sends the attempt's request over `io` and reads the answer.
    async fn exchange<S>(&self, mut io: S, attempt: &Attempt) -> Result<Exchange<WebSocket<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        io.write_all(&attempt.request.to_bytes()).await?;
        io.flush().await?;
        let mut step = ClientStep::new(&attempt.request, &self.config, &attempt.url);
        let outcome = loop {
            if step.reading_body() {
                // The start of a refusal's body, for at most a second.
                let body = async {
                    loop {
                        match io.read_buf(step.buffer()).await {
                            Ok(n) => {
                                if let Some(outcome) = step.step(n)? {
                                    return Ok::<_, Error>(outcome);
                                }
                            }
                            Err(_) => return step.rejected(),
                        }
                    }
                };
                break match tokio::time::timeout(REJECTION_BODY_TIME, body).await {
                    Ok(outcome) => outcome?,
                    Err(_) => step.rejected()?,
                };
            }
            let n = io.read_buf(step.buffer()).await?;
            if let Some(outcome) = step.step(n)? {
                break outcome;
            }
        };
        Ok(match outcome {
            ClientOutcome::Upgraded(upgraded) => {
                let (conn, response) = *upgraded;
                let ws = WebSocket::from_connection(io, conn, response.protocol.clone());
                Exchange::Upgraded(Box::new((ws, response)))
            }
            ClientOutcome::Rejected(r) => Exchange::Rejected(r),
        })
    }
}

/// A `wss://` dial in a build without TLS fails before anything is
/// connected (over a caller's own transport, [`Dialer::handshake`], it is
/// the caller's TLS and goes ahead).
#[cfg(any(feature = "tokio", feature = "blocking"))]
fn no_tls_check(url: &url::Url) -> Result<()> {
    if cfg!(not(feature = "tls")) && url.scheme() == "wss" {
        return Err(Error::UnsupportedScheme("wss".into()));
    }
    Ok(())
}

/// How long the start of a refusal's body is waited for.
pub(crate) const REJECTION_BODY_TIME: Duration = Duration::from_secs(1);

/// What one handshake came to.
pub(crate) enum Exchange<W> {
    Upgraded(Box<(W, Response)>),
    Rejected(Box<Rejection>),
}

/// The most of a refusal's body kept for the caller.
pub const MAX_REJECTION_BODY: usize = 64 * 1024;

/// The blocking face: the same plan, steps and negotiations as the async
/// one above; only the reading and writing differ.
#[cfg(feature = "blocking")]
impl Dialer {
    /// Dials like [`Dialer::dial`], without an async runtime: `ws://` and
    /// `wss://` (the same TLS options), proxies (given or from the
    /// environment), redirects, cookies, Basic, Bearer and Digest
    /// authentication, all under the dial timeout (DNS, connect, proxy, TLS
    /// and handshake).
    ///
    #[cfg_attr(not(feature = "tokio"), doc = "[`Dialer::dial`]: crate#feature-flags")]
    pub fn dial_blocking(
        &self,
        url: &str,
    ) -> Result<(blocking::WebSocket<blocking::Transport>, Response)> {
        let deadline = Deadline::after(self.timeout);
        let mut plan = DialPlan::new(self, url)?;
        loop {
            let attempt = plan.attempt()?;
            let transport = self.open_transport_blocking(&attempt.url, deadline)?;
            match self.exchange_blocking(transport, &attempt, deadline)? {
                Exchange::Upgraded(upgraded) => {
                    plan.upgraded(&upgraded.1);
                    return Ok(*upgraded);
                }
                Exchange::Rejected(r) => plan.rejected(r)?,
            }
        }
    }

    /// (Proxy tunnel or DNS and TCP), then TLS for `wss://`, for `url`.
    fn open_transport_blocking(
        &self,
        url: &url::Url,
        deadline: Deadline,
    ) -> Result<blocking::Transport> {
        let (_, _, port) = target(url)?;
        let host = connect_host(url)?;
        no_tls_check(url)?;
        #[cfg(feature = "proxy")]
        let tcp = match self.proxy.resolve(url)? {
            Some(proxy) => {
                tracing::debug!("dialing {host}:{port} through {proxy}");
                let mut tcp = blocking_transport::connect(proxy.host(), proxy.port(), deadline)
                    .map_err(|e| proxy.connect_error(e))?;
                let host = if proxy.resolves_here(&host) {
                    let addrs = blocking_transport::resolve(&host, port, deadline)?;
                    proxy.pick_address(&host, addrs.into_iter())?.to_string()
                } else {
                    host.clone()
                };
                let left = deadline.left()?;
                tcp.set_read_timeout(Some(left))?;
                tcp.set_write_timeout(Some(left))?;
                match proxy.negotiate_blocking(&mut tcp, &host, port) {
                    Err(Error::Proxy {
                        source: crate::proxy::ProxyError::Io(e),
                        ..
                    }) if blocking_transport::is_timeout(&e) => return Err(deadline.error()),
                    other => other?,
                }
                tcp
            }
            None => blocking_transport::connect(&host, port, deadline)?,
        };
        #[cfg(not(feature = "proxy"))]
        let tcp = blocking_transport::connect(&host, port, deadline)?;
        #[cfg(feature = "tls")]
        if url.scheme() == "wss" {
            let tls = self.tls.connect_blocking(tcp, &host, deadline)?;
            return Ok(blocking::Transport::TlsClient(Box::new(tls)));
        }
        Ok(blocking::Transport::Tcp(tcp))
    }

    /// Sends the attempt's request over `io` and reads the answer, before
    /// the deadline.
    fn exchange_blocking(
        &self,
        mut io: blocking::Transport,
        attempt: &Attempt,
        deadline: Deadline,
    ) -> Result<Exchange<blocking::WebSocket<blocking::Transport>>> {
        io.set_write_timeout(Some(deadline.left()?))?;
        io.write_all(&attempt.request.to_bytes())
            .and_then(|()| io.flush())
            .map_err(|e| deadline.io(e))?;
        let mut step = ClientStep::new(&attempt.request, &self.config, &attempt.url);
        let mut body_until = None;
        let outcome = loop {
            if step.reading_body() {
                // The start of a refusal's body, for at most a second.
                let until = *body_until.get_or_insert_with(|| Instant::now() + REJECTION_BODY_TIME);
                let left = until
                    .saturating_duration_since(Instant::now())
                    .min(deadline.left().unwrap_or_default());
                if left.is_zero() || io.set_read_timeout(Some(left)).is_err() {
                    break step.rejected()?;
                }
                match read_into(&mut io, step.buffer()) {
                    Ok(n) => match step.step(n)? {
                        Some(outcome) => break outcome,
                        None => continue,
                    },
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break step.rejected()?,
                }
            }
            io.set_read_timeout(Some(deadline.left()?))?;
            let n = match read_into(&mut io, step.buffer()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(deadline.io(e)),
            };
            if let Some(outcome) = step.step(n)? {
                break outcome;
            }
        };
        Ok(match outcome {
            ClientOutcome::Upgraded(upgraded) => {
                let (conn, response) = *upgraded;
                io.set_read_timeout(None)?;
                io.set_write_timeout(None)?;
                let ws = blocking::WebSocket::from_connection(io, conn, response.protocol.clone());
                Exchange::Upgraded(Box::new((ws, response)))
            }
            ClientOutcome::Rejected(r) => Exchange::Rejected(r),
        })
    }
}

// Only a build without TLS has these rules to check.
#[cfg(all(test, not(feature = "tls")))]
mod tests {
    use super::*;

    /// Without the `tls` flag there is no TLS to dial with: the dial says
    /// so before connecting anywhere (port 9 is the discard port; nothing
    /// answers there, so a connect attempt would fail differently).
    #[cfg(all(feature = "blocking", not(feature = "tls")))]
    #[test]
    fn wss_without_the_tls_flag_is_an_unsupported_scheme_before_connecting() {
        let err = Dialer::new()
            .dial_blocking("wss://127.0.0.1:9/")
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedScheme(ref s) if s == "wss"),
            "{err:?}"
        );
    }

    #[cfg(all(feature = "tokio", not(feature = "tls")))]
    #[tokio::test]
    async fn async_wss_without_the_tls_flag_is_an_unsupported_scheme_before_connecting() {
        let err = Dialer::new()
            .dial("wss://127.0.0.1:9/")
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedScheme(ref s) if s == "wss"),
            "{err:?}"
        );
    }
}
