//! [`Transport`]: the byte stream under a dialed or accepted WebSocket —
//! plain TCP, or TLS over TCP (see [`tls`]) — so that `ws://`
//! and `wss://` connections have one type. A proxied connection is the
//! tunnel's TCP stream to the proxy. `connect` opens the TCP stream the
//! dialer and the proxies start from.
//!
#![cfg_attr(not(feature = "tls"), doc = "[`tls`]: crate#feature-flags")]
#![cfg_attr(feature = "tls", doc = "[`tls`]: crate::tls")]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
#[cfg(feature = "tls")]
use crate::tls::rustls::pki_types::CertificateDer;

/// A connection's transport.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// let (ws, _response) = dialtone::Dialer::new().dial("wss://127.0.0.1:9443/").await?;
/// let transport: &dialtone::Transport = ws.get_ref();
/// println!("TLS {} with {}", transport.is_tls(), transport.peer_addr()?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP (`ws://`).
    Tcp(TcpStream),
    /// TLS over TCP, dialed (`wss://`).
    #[cfg(feature = "tls")]
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS over TCP, accepted by a [`Listener`](crate::Listener) with TLS.
    #[cfg(feature = "tls")]
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Applies `$e` to the inner stream of every variant.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Transport::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            Transport::TlsClient($s) => $e,
            #[cfg(feature = "tls")]
            Transport::TlsServer($s) => $e,
        }
    };
}

impl Transport {
    /// The TCP stream under any layers.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Tcp(s) => s,
            #[cfg(feature = "tls")]
            Transport::TlsClient(s) => s.get_ref().0,
            #[cfg(feature = "tls")]
            Transport::TlsServer(s) => s.get_ref().0,
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Transport::Tcp(_))
    }

    /// The certificates the peer presented (leaf first): the server's when
    /// dialing, the client's when accepting (if the listener asked for one).
    #[cfg(feature = "tls")]
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            Transport::Tcp(_) => None,
            Transport::TlsClient(s) => s.get_ref().1.peer_certificates(),
            Transport::TlsServer(s) => s.get_ref().1.peer_certificates(),
        }
    }

    /// The ALPN protocol agreed in the TLS handshake, if any.
    #[cfg(feature = "tls")]
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Transport::Tcp(_) => None,
            Transport::TlsClient(s) => s.get_ref().1.alpn_protocol(),
            Transport::TlsServer(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// The peer's address (for a proxied connection, the proxy's).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Connects to the first address of `host` that accepts, in resolver order.
pub(crate) async fn connect(host: &str, port: u16) -> Result<TcpStream> {
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
