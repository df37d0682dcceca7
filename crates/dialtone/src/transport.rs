//! [`Transport`]: the byte stream under a dialed or accepted WebSocket —
//! plain TCP, or TLS over TCP (see [`tls`](crate::tls)) — so that `ws://`
//! and `wss://` connections have one type. A proxied connection is the
//! tunnel's TCP stream to the proxy. `connect` opens the TCP stream the
//! dialer and the proxies start from.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::tls::rustls::pki_types::CertificateDer;

/// A connection's transport.
#[derive(Debug)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP (`ws://`).
    Tcp(TcpStream),
    /// TLS over TCP, dialed (`wss://`).
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS over TCP, accepted by a [`Listener`](crate::Listener) with TLS.
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// One HTTP/2 stream of a TLS connection accepted by a
    /// [`Listener`](crate::Listener) (ALPN `h2`): a WebSocket opened with
    /// an extended CONNECT (RFC 8441), beside others on the same TCP
    /// connection.
    #[cfg(feature = "http2")]
    Http2(Box<H2Stream>),
}

#[cfg(feature = "http2")]
pub use crate::h2_stream::H2Stream;

/// Applies `$e` to the inner stream of every variant.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Transport::Tcp($s) => $e,
            Transport::TlsClient($s) => $e,
            Transport::TlsServer($s) => $e,
            #[cfg(feature = "http2")]
            Transport::Http2($s) => $e,
        }
    };
}

impl Transport {
    /// The TCP stream under any layers; `None` for an HTTP/2 stream, which
    /// shares its TCP connection with others (its addresses are still
    /// [`Transport::local_addr`] and [`Transport::peer_addr`]).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::TlsClient(s) => Some(s.get_ref().0),
            Transport::TlsServer(s) => Some(s.get_ref().0),
            #[cfg(feature = "http2")]
            Transport::Http2(_) => None,
        }
    }

    /// The HTTP version that carried the WebSocket's handshake: HTTP/2
    /// for an extended CONNECT stream, HTTP/1.1 otherwise.
    pub fn http_version(&self) -> crate::http::Version {
        match self {
            #[cfg(feature = "http2")]
            Transport::Http2(_) => crate::http::Version::HTTP_2,
            _ => crate::http::Version::HTTP_11,
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Transport::Tcp(_))
    }

    /// The certificates the peer presented (leaf first): the server's when
    /// dialing, the client's when accepting (if the listener asked for one).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            Transport::Tcp(_) => None,
            Transport::TlsClient(s) => s.get_ref().1.peer_certificates(),
            Transport::TlsServer(s) => s.get_ref().1.peer_certificates(),
            #[cfg(feature = "http2")]
            Transport::Http2(_) => None,
        }
    }

    /// The ALPN protocol agreed in the TLS handshake, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Transport::Tcp(_) => None,
            Transport::TlsClient(s) => s.get_ref().1.alpn_protocol(),
            Transport::TlsServer(s) => s.get_ref().1.alpn_protocol(),
            #[cfg(feature = "http2")]
            Transport::Http2(_) => Some(b"h2"),
        }
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            #[cfg(feature = "http2")]
            Transport::Http2(s) => Ok(s.local_addr()),
            _ => match self.tcp() {
                Some(tcp) => tcp.local_addr(),
                None => Err(io::ErrorKind::NotConnected.into()),
            },
        }
    }

    /// The peer's address (for a proxied connection, the proxy's).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            #[cfg(feature = "http2")]
            Transport::Http2(s) => Ok(s.peer_addr()),
            _ => match self.tcp() {
                Some(tcp) => tcp.peer_addr(),
                None => Err(io::ErrorKind::NotConnected.into()),
            },
        }
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
