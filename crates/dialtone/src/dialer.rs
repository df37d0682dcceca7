//! [`Dialer`]: a URL in, an open [`WebSocket`] out.
//!
//! `ws://` URL → DNS → TCP (addresses tried in order) → opening handshake,
//! all under one dial timeout (30 s by default, as in EFL). The handshake
//! can also run over any transport the caller connected itself
//! ([`Dialer::handshake`]): that is where TLS and proxies plug in.

use std::time::Duration;

use bytes::BytesMut;
use dialtone_proto::handshake::ClientHandshake;
use dialtone_proto::Config;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::handshake::{client_step, parse_url, target, Response, HANDSHAKE_READ};
use crate::socket::{WebSocket, DEFAULT_CLOSE_TIMEOUT};
use crate::transport::Transport;

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
        }
    }
}

impl Dialer {
    /// The default dial timeout: 30 s, as in EFL.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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

    /// Dials a `ws://` URL.
    pub async fn dial(&self, url: &str) -> Result<(WebSocket<Transport>, Response)> {
        let url = parse_url(url)?;
        let work = async {
            let transport = self.open_transport(&url).await?;
            self.handshake_inner(transport, &url).await
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
    }

    /// DNS, TCP (and later proxy and TLS) for `url`.
    async fn open_transport(&self, url: &url::Url) -> Result<Transport> {
        let (_, _, port) = target(url)?;
        let host = match url.host() {
            Some(url::Host::Ipv6(addr)) => addr.to_string(),
            Some(host) => host.to_string(),
            None => return Err(Error::Url(format!("{url} has no host"))),
        };
        Ok(Transport::Tcp(connect(&host, port).await?))
    }

    /// Runs the opening handshake for `url` over a transport the caller
    /// connected (e.g. through a proxy, or TLS), under the dial timeout.
    pub async fn handshake<S>(&self, io: S, url: &str) -> Result<(WebSocket<S>, Response)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let url = parse_url(url)?;
        tokio::time::timeout(self.timeout, self.handshake_inner(io, &url))
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
    }

    pub(crate) fn request(&self, url: &url::Url) -> Result<ClientHandshake> {
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
    ) -> Result<(WebSocket<S>, Response)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request = self.request(url)?;
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
            if let Some((conn, response)) = client_step(&request, &self.config, &mut buf)? {
                let mut ws = WebSocket::from_connection(io, conn, response.protocol.clone());
                ws.set_close_timeout(self.close_timeout);
                return Ok((ws, response));
            }
        }
    }
}

/// Connects to the first address of `host` that accepts, in resolver order.
async fn connect(host: &str, port: u16) -> Result<TcpStream> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| Error::Dns {
            host: host.to_owned(),
            source,
        })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Frames are written whole; do not let Nagle hold them back.
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, source)) => Error::Connect {
            addr: addr.to_string(),
            source,
        },
        None => Error::Dns {
            host: host.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        },
    })
}
