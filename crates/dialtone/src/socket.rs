//! [`WebSocket`]: a `dialtone_proto::Connection` driven over any tokio
//! `AsyncRead + AsyncWrite` transport.
//!
//! The socket only moves bytes and keeps time: every protocol, closing and
//! timing rule is the core's. Receiving ([`WebSocket::recv`], the
//! [`Stream`], a [`WsReader`], a stream-mode reader) is what drives it: it
//! writes what the core queued, shuts the transport down when
//! [`Connection::should_close_transport`] says so, reads, and when the
//! transport has nothing more to read hands the core the time and sleeps
//! until [`Connection::poll_timeout`] (one timer).
//!
//! # Timeouts
//!
//! [`Timeouts`] (of the [`Dialer`](crate::Dialer) or the
//! [`Acceptor`](crate::Acceptor), or [`WebSocket::set_timeouts`]) says what
//! happens when; their timers run while the socket is being received from,
//! the only way to see what they did. What the application sees:
//!
//! - a missed keepalive pong deadline: the next receive returns
//!   [`Error::Timeout`]`(pong_deadline)`, then a `Message::Close` with
//!   [`CloseCode::Abruptly`] (1006, also in [`WebSocket::close_received`]),
//!   then `None`; a [`WsWriter`] waiting to send fails with
//!   [`Error::Closed`]. The transport is closed when the socket is dropped.
//! - the idle timeout: the peer gets a close frame with
//!   [`CloseCode::GoingAway`] (1001, `"idle timeout"`); receiving goes on as
//!   for any close: the peer's close frame (or `Abruptly` at the close
//!   timeout), then `None`.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use dialtone_proto::{CloseCode, CloseFrame, Connection, MessageKind, Timeouts};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use crate::driver::{Driver, MAX_READ_RESERVE};
use crate::error::{Error, Result};
use crate::message::{self, Message};

/// Reads go into the connection's buffer in pieces of at least this size,
/// once a read has filled the buffer ...
const READ_CHUNK: usize = 16 * 1024;

/// ... and until then, of this size: an idle connection, or one that only
/// exchanges small messages, holds no more than this for reading.
const FIRST_READ_CHUNK: usize = 512;

/// `poll_ready` waits for the output to drain below this many bytes.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// The transport and the core.
#[derive(Debug)]
struct Inner<S> {
    io: S,
    conn: Connection,
    driver: Driver,
    /// Sleeps until the core's next deadline. (Made at the first one: a
    /// connection without timers running has none.)
    timer: Option<Pin<Box<Sleep>>>,
    /// The size reads go in: FIRST_READ_CHUNK, then READ_CHUNK.
    read_chunk: usize,
    /// Bytes were written since the transport was last flushed.
    unflushed: bool,
    /// A split writer waiting for the transport to accept bytes.
    write_waker: Option<Waker>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    /// Writes queued output until it is all written and flushed.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(chunk) = self.conn.transmit_chunk() {
            let io = Pin::new(&mut self.io);
            let written = if chunk.len() == self.conn.pending_output() {
                // All in one piece: small frames are queued back to back.
                ready!(io.poll_write(cx, chunk))?
            } else {
                let mut slices = [IoSlice::new(&[]); 32];
                let n = self.conn.transmit_slices(&mut slices);
                ready!(io.poll_write_vectored(cx, &slices[..n]))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.advance_transmit(written);
            self.unflushed = true;
        }
        if self.unflushed && !self.conn.is_aborted() {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    fn on_io_error(&mut self, e: io::Error) {
        self.driver.on_io_error(&mut self.conn, e);
        self.wake_writer();
    }

    fn handle_timeout(&mut self, now: std::time::Instant) {
        self.driver.handle_timeout(&mut self.conn, now);
        if self.conn.is_aborted() {
            self.wake_writer();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            if let Some(msg) = self.driver.next_event(&mut self.conn) {
                return Poll::Ready(Some(Ok(msg)));
            }
            // What the core queued (pongs; the close frame that answers the
            // peer's close or a protocol error) goes out before anything
            // more is reported: an application that stops at a close or an
            // error still closes properly.
            let had_output = self.conn.pending_output() > 0;
            let mut blocked = match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(e)) => {
                    self.on_io_error(e);
                    continue;
                }
                Poll::Pending => true,
            };
            if !blocked {
                if had_output {
                    self.wake_writer();
                }
                if let Some(report) = self.driver.take_report() {
                    return Poll::Ready(Some(report));
                }
                if self.driver.must_shut_down(&self.conn) {
                    // An error only means the peer already went; a shutdown
                    // that cannot finish (TLS close_notify to a peer that
                    // does not read) ends at the close timeout.
                    match Pin::new(&mut self.io).poll_shutdown(cx) {
                        Poll::Ready(_) => self.driver.shut_down(),
                        Poll::Pending => blocked = true,
                    }
                }
                if !blocked && self.conn.is_finished() {
                    return Poll::Ready(None);
                }
            }
            let read = match self.driver.wants_read(&self.conn) {
                true => self.poll_read(cx),
                false => Poll::Pending,
            };
            let more = read.is_ready(); // decoded at the top of the loop
            match read {
                Poll::Ready(Ok(0)) => self.conn.receive_eof(),
                Poll::Ready(Err(e)) => self.on_io_error(e),
                _ => {}
            }
            // The core's time: once nothing more is to be read, and when a
            // deadline passed though bytes keep coming (they count as
            // activity: only the close timeout can end the connection then).
            let now = Instant::now().into_std();
            let due = self.conn.poll_timeout().is_some_and(|d| d <= now);
            if due || !more {
                self.handle_timeout(now);
            }
            if due || more {
                continue; // to decode, or to act on what the timeout did
            }
            if let Some(deadline) = self.conn.poll_timeout() {
                let deadline = Instant::from_std(deadline);
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    continue;
                }
            }
            return Poll::Pending;
        }
    }

    /// Reads into the core's buffer.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Room for the rest of a frame received in place, so that it lands
        // in one buffer and is never copied; the peer's claimed length
        // reserves at most MAX_READ_RESERVE ahead of what came. Once reads
        // are READ_CHUNK large, an empty buffer takes a whole one: with the
        // last message split off (and released) that costs no copy, and the
        // next frame does not start near the end of the buffer only to be
        // moved when it outgrows it.
        let (hint, chunk) = (self.conn.read_hint().min(MAX_READ_RESERVE), self.read_chunk);
        let buf = self.conn.read_buffer();
        let spare = buf.capacity() - buf.len();
        if spare < hint {
            buf.reserve(hint);
        } else if spare < chunk / 4 || (chunk == READ_CHUNK && buf.is_empty() && spare < chunk) {
            buf.reserve(chunk);
        }
        let room = buf.capacity() - buf.len();
        let read =
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, self.conn.read_buffer());
        if matches!(read, Poll::Ready(Ok(n)) if n == room) {
            // More may be waiting: read in larger pieces from now on.
            self.read_chunk = READ_CHUNK;
        }
        read
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.conn.pending_output() > WRITE_HIGH_WATER {
            ready!(self.poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(&mut self, msg: &Message) -> Result<()> {
        message::queue(&mut self.conn, msg).map_err(Error::from)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        // Closing after the close is a no-op.
        self.conn.close(CloseFrame::new(CloseCode::Normal, ""))?;
        self.poll_flush(cx)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.conn.is_aborted() {
            // Given up (a timeout, a failed transport): what was queued is lost.
            return Poll::Ready(Err(Error::Closed));
        }
        match self.poll_write_out(cx) {
            Poll::Ready(r) => Poll::Ready(r.map_err(Error::from)),
            Poll::Pending => {
                self.write_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A WebSocket over a transport `S` (a `TcpStream`, a TLS stream, or
/// anything `AsyncRead + AsyncWrite`).
///
/// Receive with [`WebSocket::recv`] or as a [`Stream`]; send with
/// [`WebSocket::send`] or as a [`Sink`]. A received ping is answered by the
/// core; a received close is answered too, and is the last message before
/// the stream ends.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// use dialtone::{CloseCode, Dialer, Message};
///
/// let (mut ws, _response) = Dialer::new().dial("ws://127.0.0.1:9001/").await?;
/// ws.send("hello").await?;
/// while let Some(msg) = ws.recv().await {
///     match msg? {
///         Message::Text(text) => println!("{text}"),
///         Message::Close(frame) => println!("closed: {frame:?}"),
///         _ => {}
///     }
/// }
/// # let _ = CloseCode::Normal;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WebSocket<S> {
    inner: Inner<S>,
    protocol: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport on which the opening handshake is already done.
    /// Bytes already read past the handshake belong in `conn`'s read buffer
    /// ([`Connection::receive`]).
    pub fn from_connection(io: S, conn: Connection, protocol: Option<String>) -> Self {
        let inner = Inner {
            io,
            conn,
            driver: Driver::default(),
            timer: None,
            read_chunk: FIRST_READ_CHUNK,
            unflushed: false,
            write_waker: None,
        };
        WebSocket { inner, protocol }
    }

    /// Replaces the socket's deadlines (those of the dialer or acceptor
    /// that made it, [`Config::timeouts`](dialtone_proto::Config::timeouts));
    /// see the [module docs](self#timeouts). The timers start again at the
    /// next receive.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.inner.conn.set_timeouts(timeouts);
    }

    /// Queues a text or binary message from a borrowed slice, without
    /// waiting (for the stream adapters; text must be valid UTF-8).
    pub(crate) fn queue_data(&mut self, kind: MessageKind, data: &[u8]) -> Result<()> {
        self.inner
            .conn
            .send_message(kind, data)
            .map_err(Error::from)
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The sans-I/O connection (state, close frames, configuration).
    pub fn connection(&self) -> &Connection {
        &self.inner.conn
    }

    /// The close frame the peer sent (`Abruptly` if the transport ended
    /// without one), once the connection is closing.
    pub fn close_received(&self) -> Option<&CloseFrame> {
        self.inner.conn.close_received()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.inner.io
    }

    /// Receives the next message; `None` once the connection is closed and
    /// its close message was returned.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.inner.poll_recv(cx)).await
    }

    /// Receives a message if one is there without waiting: decoded from
    /// bytes already read, or from bytes the transport has ready now.
    /// `Poll::Ready` holds what [`WebSocket::recv`] would have returned;
    /// `Poll::Pending` means nothing is ready (nothing will wake the task
    /// for it: await `recv` to wait).
    ///
    /// With [`WebSocket::feed`] and [`WebSocket::flush`], a server answers
    /// every message that has arrived in one write:
    ///
    /// ```no_run
    /// # async fn echo(mut ws: dialtone::WebSocket<dialtone::Transport>) -> dialtone::Result<()> {
    /// use std::task::Poll;
    /// while let Some(msg) = ws.recv().await {
    ///     let msg = msg?;
    ///     if msg.is_data() {
    ///         ws.feed(msg)?;
    ///     }
    ///     // Whatever else has arrived goes out in the same write.
    ///     while let Poll::Ready(Some(msg)) = ws.try_recv() {
    ///         let msg = msg?;
    ///         if msg.is_data() {
    ///             ws.feed(msg)?;
    ///         }
    ///     }
    ///     ws.flush().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_recv(&mut self) -> Poll<Option<Result<Message>>> {
        self.inner
            .poll_recv(&mut Context::from_waker(Waker::noop()))
    }

    /// Sends a message and waits until it is written to the transport.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.start_send(&msg)?;
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Sends a text or binary message that is never compressed (for data
    /// known to be incompressible), and waits until it is written.
    pub async fn send_uncompressed(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        message::queue_uncompressed(&mut self.inner.conn, &msg).map_err(Error::from)?;
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Queues a message without waiting for it to be written.
    ///
    /// [`WebSocket::flush`] writes everything queued, and so does receiving
    /// ([`WebSocket::recv`], the [`Stream`]) before it waits for the peer: a
    /// loop that receives and feeds replies needs no flush, and the replies
    /// to messages that arrived together go out in one write. Such a loop
    /// should still flush when [`Connection::pending_output`] grows large,
    /// or a peer that sends without reading makes the queue grow.
    pub fn feed(&mut self, msg: impl Into<Message>) -> Result<()> {
        self.inner.start_send(&msg.into())
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Sends one piece of a message sent in fragments (RFC 6455 §5.4): the
    /// first piece gives the kind, `fin` marks the last. Control frames may
    /// go out between pieces; other messages may not.
    pub async fn send_fragment(
        &mut self,
        kind: dialtone_proto::MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<()> {
        self.inner
            .conn
            .send_fragment(kind, data, fin)
            .map_err(Error::from)?;
        poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    /// Sends a ping (payload at most 125 bytes).
    pub async fn ping(&mut self, payload: impl Into<bytes::Bytes>) -> Result<()> {
        self.send(Message::Ping(payload.into())).await
    }

    /// Closes the connection: sends a close frame with `code` and `reason`
    /// after everything already queued, then reads (dropping any data
    /// messages still arriving) until the peer's close and the transport's
    /// end, or the close timeout. Returns the peer's close frame.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<Option<CloseFrame>> {
        self.inner
            .conn
            .close(CloseFrame::new(code, reason))
            .map_err(Error::from)?;
        // Receiving writes our close frame out, and bounds both that and the
        // wait for the peer's answer by the close timeout.
        while let Some(msg) = self.recv().await {
            if let Err(e) = msg {
                tracing::debug!("while closing: {e}");
            }
        }
        Ok(self.inner.conn.close_received().cloned())
    }

    /// Splits the socket into a receiving and a sending half, to use from two
    /// tasks.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let shared = Arc::new(Mutex::new(self.inner));
        (
            WsReader {
                shared: shared.clone(),
            },
            WsWriter { shared },
        )
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.inner.start_send(&item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_flush(cx)
    }

    /// Starts the closing handshake with `Normal` (if not started) and
    /// flushes; keep receiving to see the peer's close.
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_close(cx)
    }
}

fn lock<S>(m: &Mutex<Inner<S>>) -> MutexGuard<'_, Inner<S>> {
    // A panic while holding the lock leaves the connection as it was between
    // two calls; keep using it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The receiving half of a split [`WebSocket`]; a [`Stream`] of messages.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// let (ws, _response) = dialtone::Dialer::new().dial("ws://127.0.0.1:9001/").await?;
/// let (mut reader, mut writer) = ws.split();
/// tokio::spawn(async move {
///     while let Some(Ok(msg)) = reader.recv().await {
///         println!("{msg:?}");
///     }
/// });
/// writer.send("from another task").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WsReader<S> {
    shared: Arc<Mutex<Inner<S>>>,
}

/// The sending half of a split [`WebSocket`]; a [`Sink`] of messages.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// use dialtone::CloseCode;
///
/// let (ws, _response) = dialtone::Dialer::new().dial("ws://127.0.0.1:9001/").await?;
/// let (_reader, mut writer) = ws.split();
/// writer.send("last words").await?;
/// writer.close(CloseCode::Normal, "bye").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WsWriter<S> {
    shared: Arc<Mutex<Inner<S>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// Receives the next message, as [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| lock(&self.shared).poll_recv(cx)).await
    }

    /// Receives a message if one is there without waiting, as
    /// [`WebSocket::try_recv`].
    pub fn try_recv(&mut self) -> Poll<Option<Result<Message>>> {
        lock(&self.shared).poll_recv(&mut Context::from_waker(Waker::noop()))
    }

    /// The close frame the peer sent, once it has.
    pub fn close_received(&self) -> Option<CloseFrame> {
        lock(&self.shared).conn.close_received().cloned()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Sends a message, as [`WebSocket::send`].
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        poll_fn(|cx| lock(&self.shared).poll_ready(cx)).await?;
        lock(&self.shared).start_send(&msg)?;
        poll_fn(|cx| lock(&self.shared).poll_flush(cx)).await
    }

    /// Sends one piece of a message sent in fragments, as
    /// [`WebSocket::send_fragment`].
    pub async fn send_fragment(
        &mut self,
        kind: dialtone_proto::MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<()> {
        poll_fn(|cx| lock(&self.shared).poll_ready(cx)).await?;
        lock(&self.shared)
            .conn
            .send_fragment(kind, data, fin)
            .map_err(Error::from)?;
        poll_fn(|cx| lock(&self.shared).poll_flush(cx)).await
    }

    /// Sends a close frame; the reader sees the peer's answer.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.send(Message::Close(CloseFrame::new(code, reason)))
            .await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsReader<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        lock(&self.shared).poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        lock(&self.shared).start_send(&item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock(&self.shared).poll_close(cx)
    }
}
