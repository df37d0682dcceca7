//! [`H2Stream`]: one HTTP/2 stream (an RFC 8441 tunnel) as a byte stream,
//! `AsyncRead + AsyncWrite`, so that a [`WebSocket`](crate::WebSocket)
//! drives the same core over it as over TCP.
//!
//! Flow control is HTTP/2's own, per stream: received bytes are handed back
//! to the peer's window ([`h2::FlowControl::release_capacity`]) only as they
//! are read, and the WebSocket reads only when the application receives, so
//! a slow reader holds back its own stream and no other. Writes wait for the
//! peer's window.
//!
//! Ends: shutting the stream down sends `END_STREAM` (the WebSocket does so
//! after its closing handshake); dropping it before both sides ended resets
//! it with `RST_STREAM(CANCEL)` (h2 does this when the last handle goes); a
//! reset by the peer is an [`io::ErrorKind::ConnectionReset`] error, which
//! the WebSocket reports, followed by a close with
//! [`CloseCode::Abruptly`](crate::CloseCode::Abruptly).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::rustls::pki_types::CertificateDer;

/// What is known of the connection a stream belongs to.
#[derive(Debug, Default)]
pub(crate) struct ConnectionInfo {
    pub(crate) local: Option<SocketAddr>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) alpn: Option<Vec<u8>>,
    pub(crate) certificates: Option<Vec<CertificateDer<'static>>>,
    pub(crate) tls: bool,
}

/// One HTTP/2 stream of a shared connection, as a byte stream.
#[derive(Debug)]
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// The rest of the last DATA frame received, not yet read.
    pending: Bytes,
    /// `END_STREAM` came in.
    read_ended: bool,
    /// `END_STREAM` went out.
    write_ended: bool,
    info: Arc<ConnectionInfo>,
}

impl H2Stream {
    pub(crate) fn new(
        send: SendStream<Bytes>,
        recv: RecvStream,
        info: Arc<ConnectionInfo>,
    ) -> Self {
        H2Stream {
            send,
            recv,
            pending: Bytes::new(),
            read_ended: false,
            write_ended: false,
            info,
        }
    }

    /// The HTTP/2 stream identifier.
    pub fn stream_id(&self) -> u32 {
        self.send.stream_id().as_u32()
    }

    /// Resets the stream with `RST_STREAM(CANCEL)` now, without a closing
    /// handshake (dropping it does the same unless both sides had ended).
    pub fn abort(&mut self) {
        self.send.send_reset(h2::Reason::CANCEL);
    }

    pub(crate) fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Why the sending half can no longer send: a reset by the peer (with
    /// its reason) if there was one, else `error`, else a broken pipe.
    fn why_gone(&mut self, cx: &mut Context<'_>, error: Option<h2::Error>) -> io::Error {
        match self.send.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("the peer reset the HTTP/2 stream ({reason})"),
            ),
            Poll::Ready(Err(e)) => io_error(e),
            Poll::Pending => match error {
                Some(e) => io_error(e),
                None => io::ErrorKind::BrokenPipe.into(),
            },
        }
    }
}

/// An h2 error as the I/O error a WebSocket reports: a reset by the peer is
/// `ConnectionReset`, the connection going away `ConnectionAborted`.
pub(crate) fn io_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("HTTP/2 I/O error"));
    }
    let kind = if e.is_reset() && e.is_remote() {
        io::ErrorKind::ConnectionReset
    } else if e.is_go_away() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    let what = match e.reason() {
        Some(reason) if e.is_reset() && e.is_remote() => {
            format!("the peer reset the HTTP/2 stream ({reason})")
        }
        _ => format!("HTTP/2: {e}"),
    };
    io::Error::new(kind, what)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            if this.read_ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.pending = data,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => this.read_ended = true,
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        // Only what was read goes back to the peer's window. An error means
        // the stream is gone; the next poll_data reports why.
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write_ended {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        this.send.reserve_capacity(buf.len());
        loop {
            // Capacity already granted is used as it is; poll_capacity
            // only tells of increases.
            let n = this.send.capacity().min(buf.len());
            if n > 0 {
                let sent = this
                    .send
                    .send_data(Bytes::copy_from_slice(&buf[..n]), false);
                // What was reserved and not sent goes back to the connection:
                // held by a stream with nothing to send (the WebSocket asks
                // again when it has), it would hold back the others.
                this.send.reserve_capacity(0);
                return match sent {
                    Ok(()) => Poll::Ready(Ok(n)),
                    Err(e) => Poll::Ready(Err(this.why_gone(cx, Some(e)))),
                };
            }
            match this.send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(this.why_gone(cx, Some(e)))),
                Poll::Ready(None) => return Poll::Ready(Err(this.why_gone(cx, None))),
                Poll::Pending => {
                    // No window: a reset would otherwise go unseen until
                    // the peer opened it, which it never will.
                    return match this.send.poll_reset(cx) {
                        Poll::Ready(_) => Poll::Ready(Err(this.why_gone(cx, None))),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes what h2 buffered, in its own time.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_ended {
            this.write_ended = true;
            // Fails only if the stream is already gone: then it has ended.
            let _ = this.send.send_data(Bytes::new(), true);
        }
        Poll::Ready(Ok(()))
    }
}
