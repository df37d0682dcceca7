//! The EFL "streaming mode": a [`WebSocket`] as a byte stream,
//! [`AsyncRead`] + [`AsyncWrite`], of binary or of text messages.
//!
//! ```no_run
//! # async fn run() -> dialtone::Result<()> {
//! use dialtone::{Dialer, MessageKind};
//! use tokio::io::AsyncWriteExt;
//!
//! let (ws, _) = Dialer::new().dial("ws://127.0.0.1:9001/").await?;
//! let mut stream = ws.into_stream(MessageKind::Binary);
//! let mut file = tokio::fs::File::open("data.bin").await?;
//! tokio::io::copy(&mut file, &mut stream).await?; // one message per write
//! stream.shutdown().await?; // close frame (Normal)
//! # Ok(()) }
//! ```
//!
//! # Semantics
//!
//! - **Writing**: each `poll_write` of `n > 0` bytes queues one message of
//!   `n` bytes of the stream's kind, starts writing it out and returns `n`;
//!   it waits only while the output exceeds the socket's high-water mark
//!   (64 KiB). Flush to wait until everything is written. An empty write
//!   sends nothing. Wrap the stream in a [`tokio::io::BufWriter`] to turn
//!   many small writes into fewer messages; keep writes below the peer's
//!   message size limit (64 MiB by default).
//! - **Text writes** must be UTF-8, but a write may end inside a character:
//!   the incomplete end (at most 3 bytes) is held back and sent with the next
//!   write, so the message of that write is its complete characters (a write
//!   of only part of a character sends no message). Invalid UTF-8 fails the
//!   write with [`io::ErrorKind::InvalidData`] and takes none of it. Flushing
//!   keeps a held-back part; shutting down with one fails with `InvalidData`
//!   and drops it (shutting down again then sends the close frame).
//! - **Reading** returns the payloads of received messages of the stream's
//!   kind back to back, holding at most the one message being read. Empty
//!   messages, pings and pongs are skipped (pings are answered by the core).
//! - **A message of the other kind** breaks the stream (its bytes cannot be
//!   placed in it): the read fails with [`io::ErrorKind::InvalidData`], the
//!   socket starts the closing handshake with [`CloseCode::UnexpectedData`]
//!   (1003, RFC 6455 §7.4.1), and later reads drop whatever still arrives and
//!   end with EOF.
//! - **End of stream**: a read returns 0 once the peer's close frame arrived
//!   (any code: see [`StreamMode::close_received`]) and the closing
//!   handshake is over (bounded by the close timeout). A transport that
//!   ends without a close frame ([`CloseCode::Abruptly`]) fails the read
//!   with [`io::ErrorKind::UnexpectedEof`] instead, unless an error was
//!   already reported; reads after that return 0.
//! - **Errors** of the socket become `io::Error`s: transport errors as they
//!   were, [`Error::Timeout`](crate::Error::Timeout) (keepalive) as `TimedOut`, a protocol error as
//!   `InvalidData`, writing after the close as `BrokenPipe`; the `Error` is
//!   the `io::Error`'s inner error.
//! - **`poll_shutdown`** sends a close frame with [`CloseCode::Normal`] and
//!   flushes; reading goes on until the peer's close (half-close, as TCP).
//!
//! To read and write from two tasks, split it with [`tokio::io::split`].

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use dialtone_proto::{CloseCode, CloseFrame, MessageKind, State};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::message::Message;
use crate::socket::WebSocket;
use crate::stream_core::{to_io, ReadState, Step, Utf8Carry};

/// A [`WebSocket`] as an [`AsyncRead`] + [`AsyncWrite`] byte stream of
/// messages of one [`MessageKind`] (see the [module docs](self)).
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use dialtone::{Dialer, MessageKind};
/// use tokio::io::AsyncReadExt;
///
/// let (ws, _response) = Dialer::new().dial("ws://127.0.0.1:9001/").await.map_err(std::io::Error::other)?;
/// let mut stream = ws.into_stream(MessageKind::Text);
/// let mut all = String::new();
/// stream.read_to_string(&mut all).await?; // until the peer's close
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamMode<S> {
    ws: WebSocket<S>,
    kind: MessageKind,
    reader: ReadState,
    carry: Utf8Carry,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// This socket as a byte stream of `kind` messages (the EFL dialer's
    /// `streaming_mode`): see [`StreamMode`].
    pub fn into_stream(self, kind: MessageKind) -> StreamMode<S> {
        StreamMode::new(self, kind)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamMode<S> {
    /// Wraps `ws`: writes send `kind` messages, reads return their payloads.
    pub fn new(ws: WebSocket<S>, kind: MessageKind) -> Self {
        StreamMode {
            ws,
            kind,
            reader: ReadState::default(),
            carry: Utf8Carry::default(),
        }
    }

    /// The kind of message written and read.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The socket.
    pub fn get_ref(&self) -> &WebSocket<S> {
        &self.ws
    }

    /// The socket, e.g. to change its timeouts. Receiving or sending on it
    /// directly interleaves with the stream.
    pub fn get_mut(&mut self) -> &mut WebSocket<S> {
        &mut self.ws
    }

    /// The socket back. The unread rest of the message being read and a
    /// held-back part of a character (text) are lost.
    pub fn into_inner(self) -> WebSocket<S> {
        self.ws
    }

    /// The peer's close frame, once it has arrived (`Abruptly` if the
    /// transport ended without one).
    pub fn close_received(&self) -> Option<&CloseFrame> {
        self.ws.close_received()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for StreamMode<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.reader.current.is_empty() || buf.remaining() == 0 {
                let n = buf.remaining().min(this.reader.current.len());
                buf.put_slice(&this.reader.current[..n]);
                this.reader.current.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.reader.eof {
                return Poll::Ready(Ok(()));
            }
            let item = ready!(Pin::new(&mut this.ws).poll_next(cx));
            match this.reader.on_item(this.kind, item) {
                Step::Data(bytes) => this.reader.current = bytes,
                Step::Continue => {}
                Step::Done(result) => return Poll::Ready(result),
                Step::WrongKind(e) => {
                    // Queued now, written by the next receive or flush.
                    let frame = CloseFrame::new(CloseCode::UnexpectedData, e.to_string());
                    if let Err(err) = this.ws.feed(Message::Close(frame)) {
                        tracing::debug!("closing after a {e}: {err}");
                    }
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for StreamMode<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(to_io)?;
        let kind = this.kind;
        let ws = &mut this.ws;
        this.carry
            .write(kind, data, |message| ws.queue_data(kind, message))?;
        // Start writing now, as a socket would; what the transport does not
        // take yet goes with the next write, flush or receive. A failed
        // transport fails the write: nothing more can get through.
        if let Poll::Ready(Err(e)) = Pin::new(&mut this.ws).poll_flush(cx) {
            return Poll::Ready(Err(to_io(e)));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.carry.check_end()?;
        let was_closed = this.ws.connection().state() == State::Closed;
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            // The connection ended before: nothing to shut down.
            Err(e) if !was_closed => Poll::Ready(Err(to_io(e))),
            _ => Poll::Ready(Ok(())),
        }
    }
}
