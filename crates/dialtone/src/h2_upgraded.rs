//! [`H2Upgraded`]: one HTTP/2 stream of an accepted connection that an extended CONNECT (RFC 8441)
//! turned into a WebSocket's byte stream, as a tokio `AsyncRead +
//! AsyncWrite`, with the addresses of the TCP connection it is multiplexed
//! on (which it does not own: its siblings share it).
//!
//! hyper does the framing: a write becomes DATA frames under the stream's
//! flow control, a shutdown ends our half with END_STREAM (the WebSocket's
//! close, RFC 8441 §6), a drop before that ends it without a close frame
//! (hyper ends our half, then cancels the stream with RST_STREAM(CANCEL)
//! while the peer's half is open), and a stream the peer reset or ended reads as the end of
//! the transport, which the core reports as [`CloseCode::Abruptly`] if no
//! close frame came first.
//!
//! [`CloseCode::Abruptly`]: crate::CloseCode::Abruptly

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::rustls::pki_types::CertificateDer;
use crate::upgrade::HyperIo;

/// A WebSocket's HTTP/2 stream on a TLS connection a
/// [`Listener`](crate::Listener) accepted (hyper's; the dialer's own
/// streams are `Transport::H2`).
#[derive(Debug)]
pub struct H2Upgraded {
    /// In a mutex only to be `Sync` (hyper's stream is `Send` alone), so
    /// that [`Transport`](crate::Transport) stays `Sync`; it is never
    /// locked: every use has `&mut self` (`Mutex::get_mut`).
    io: Mutex<HyperIo>,
    vectored: bool,
    conn: ConnectionOf,
}

/// What a stream keeps of the TLS connection it is multiplexed on.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionOf {
    pub(crate) local: SocketAddr,
    pub(crate) peer: SocketAddr,
    /// The client's certificates, if the listener asked for them.
    pub(crate) certificates: Option<Arc<[CertificateDer<'static>]>>,
}

impl H2Upgraded {
    /// The stream hyper handed over, on the connection between these addresses.
    pub(crate) fn new(io: HyperIo, conn: ConnectionOf) -> Self {
        H2Upgraded {
            vectored: io.is_write_vectored(),
            io: Mutex::new(io),
            conn,
        }
    }

    fn io(self: Pin<&mut Self>) -> Pin<&mut HyperIo> {
        // A poisoned lock is still the stream: it is never locked, so no
        // panic can have left it half-changed.
        Pin::new(match self.get_mut().io.get_mut() {
            Ok(io) => io,
            Err(poisoned) => poisoned.into_inner(),
        })
    }

    /// Our address on the TCP connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.conn.local
    }

    /// The client's address on the TCP connection.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// The certificates the client presented on the connection (leaf
    /// first), if the listener asked for one.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.certificates.as_deref()
    }
}

impl AsyncRead for H2Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl AsyncWrite for H2Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}
