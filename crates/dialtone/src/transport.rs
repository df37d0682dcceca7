//! [`Transport`]: the byte stream under a dialed or accepted WebSocket —
//! plain TCP, TLS over TCP (see [`tls`]), or (feature `http2`) one stream
//! of an HTTP/2 connection — so that `ws://` and `wss://` connections have
//! one type. A proxied connection is the
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
    /// One stream of an HTTP/2 connection (RFC 8441), dialed; the
    /// connection (TLS, or cleartext h2c) may carry other WebSockets.
    #[cfg(feature = "http2")]
    H2(Box<crate::h2_stream::H2Stream>),
    /// One stream of an HTTP/2 connection a [`Listener`](crate::Listener)
    /// with TLS accepted (ALPN `h2`): a WebSocket opened with an extended
    /// CONNECT (RFC 8441), beside others on the same TCP connection.
    #[cfg(feature = "http2-server")]
    H2Server(Box<H2Upgraded>),
}

#[cfg(feature = "http2-server")]
pub use crate::h2_upgraded::H2Upgraded;

/// Applies `$e` to the inner stream of every variant.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Transport::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            Transport::TlsClient($s) => $e,
            #[cfg(feature = "tls")]
            Transport::TlsServer($s) => $e,
            #[cfg(feature = "http2")]
            Transport::H2($s) => $e,
            #[cfg(feature = "http2-server")]
            Transport::H2Server($s) => $e,
        }
    };
}

impl Transport {
    /// The TCP stream under any layers; `None` for an HTTP/2 stream, whose
    /// TCP connection is shared with other streams and owned by its task.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
            #[cfg(feature = "tls")]
            Transport::TlsClient(s) => Some(s.get_ref().0),
            #[cfg(feature = "tls")]
            Transport::TlsServer(s) => Some(s.get_ref().0),
            #[cfg(feature = "http2")]
            Transport::H2(_) => None,
            #[cfg(feature = "http2-server")]
            Transport::H2Server(_) => None,
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        match self {
            Transport::Tcp(_) => false,
            #[cfg(feature = "tls")]
            Transport::TlsClient(_) | Transport::TlsServer(_) => true,
            #[cfg(feature = "http2")]
            Transport::H2(s) => s.info().tls,
            #[cfg(feature = "http2-server")]
            Transport::H2Server(_) => true,
        }
    }

    /// The HTTP version the WebSocket's handshake used: HTTP/2 for a
    /// stream of an HTTP/2 connection, else HTTP/1.1.
    pub fn http_version(&self) -> dialtone_proto::http::Version {
        match self {
            #[cfg(feature = "http2")]
            Transport::H2(_) => dialtone_proto::http::Version::HTTP_2,
            #[cfg(feature = "http2-server")]
            Transport::H2Server(_) => dialtone_proto::http::Version::HTTP_2,
            _ => dialtone_proto::http::Version::HTTP_11,
        }
    }

    /// The certificates the peer presented (leaf first): the server's when
    /// dialing, the client's when accepting (if the listener asked for one).
    #[cfg(feature = "tls")]
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            Transport::Tcp(_) => None,
            Transport::TlsClient(s) => s.get_ref().1.peer_certificates(),
            Transport::TlsServer(s) => s.get_ref().1.peer_certificates(),
            #[cfg(feature = "http2")]
            Transport::H2(s) => s.info().certificates.as_deref(),
            #[cfg(feature = "http2-server")]
            Transport::H2Server(s) => s.peer_certificates(),
        }
    }

    /// The ALPN protocol agreed in the TLS handshake, if any.
    #[cfg(feature = "tls")]
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Transport::Tcp(_) => None,
            Transport::TlsClient(s) => s.get_ref().1.alpn_protocol(),
            Transport::TlsServer(s) => s.get_ref().1.alpn_protocol(),
            #[cfg(feature = "http2")]
            Transport::H2(s) => s.info().alpn.as_deref(),
            #[cfg(feature = "http2-server")]
            Transport::H2Server(_) => Some(b"h2"),
        }
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.tcp() {
            Some(tcp) => tcp.local_addr(),
            #[cfg(feature = "http2")]
            None if matches!(self, Transport::H2(_)) => known(self, |i| i.local),
            #[cfg(feature = "http2-server")]
            None if matches!(self, Transport::H2Server(_)) => match self {
                Transport::H2Server(s) => Ok(s.local_addr()),
                _ => Err(io::ErrorKind::NotConnected.into()),
            },
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The peer's address (for a proxied connection, the proxy's).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.tcp() {
            Some(tcp) => tcp.peer_addr(),
            #[cfg(feature = "http2")]
            None if matches!(self, Transport::H2(_)) => known(self, |i| i.peer),
            #[cfg(feature = "http2-server")]
            None if matches!(self, Transport::H2Server(_)) => match self {
                Transport::H2Server(s) => Ok(s.peer_addr()),
                _ => Err(io::ErrorKind::NotConnected.into()),
            },
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

/// An address an HTTP/2 stream's connection noted when it was opened.
#[cfg(feature = "http2")]
fn known(
    transport: &Transport,
    pick: impl Fn(&crate::h2_stream::ConnectionInfo) -> Option<SocketAddr>,
) -> io::Result<SocketAddr> {
    match transport {
        Transport::H2(s) => pick(s.info()).ok_or_else(|| io::ErrorKind::NotConnected.into()),
        _ => Err(io::ErrorKind::NotConnected.into()),
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
