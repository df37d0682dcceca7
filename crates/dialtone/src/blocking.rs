//! The same WebSocket over `std::io` for programs without an async runtime:
//! [`WebSocket`] over any [`TimedIo`] transport; [`Dialer::dial_blocking`] (every
//! feature of [`Dialer::dial`]: `wss://`, proxies, redirects, cookies,
//! authentication, the dial timeout) over a blocking [`Transport`], and
//! [`Acceptor::accept_blocking`] over `std::net::TcpStream`. The core is the
//! same `dialtone_proto::Connection` as the async face drives, and the dial
//! logic is the async dialer's (`dial_plan`, the handshake steps, the proxy
//! negotiations): this face only moves bytes.
//! Every wait (a read, a write to a peer that stopped reading) is bounded
//! by the core's next deadline ([`Timeouts`]),
//! as described for the async [`socket`] face's timeouts.
//!
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[`Dialer::dial`]: crate#feature-flags\n[`socket`]: crate#feature-flags"
)]
#![cfg_attr(feature = "tokio", doc = "[`socket`]: crate::socket#timeouts")]

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Buf;
use dialtone_proto::http::Request;
use dialtone_proto::{CloseCode, CloseFrame, Connection, MessageKind, State, Timeouts};

use crate::blocking_transport::{is_timeout, Deadline};
#[cfg(doc)]
use crate::dialer::Dialer;
use crate::driver::{Driver, MAX_READ_RESERVE};
use crate::error::{Error, Result};
use crate::handshake::{read_into, upgrade_required, Acceptor, ServerHead, ServerStep};
use crate::message::{self, Message};

pub use crate::blocking_transport::Transport;
use crate::stream_core::{to_io, ReadState, Step, Utf8Carry};

const READ_CHUNK: usize = 16 * 1024;

/// The shortest wait set on the transport (std refuses a zero timeout): a
/// deadline that passed gets one more read, so that bytes already waiting
/// count before it is acted on.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// A blocking transport whose waits can be bounded and whose sending side
/// can be shut down alone: what a blocking [`WebSocket`] needs to keep the
/// core's deadlines and closing rules. Implemented for [`TcpStream`]; a TLS
/// stream implements it over its socket.
///
/// ```no_run
/// use std::time::Duration;
///
/// use dialtone::blocking::TimedIo;
///
/// /// Fails a read that waits longer than a second.
/// fn impatient(io: &impl TimedIo) -> std::io::Result<()> {
///     io.set_read_timeout(Some(Duration::from_secs(1)))
/// }
///
/// let tcp = std::net::TcpStream::connect("127.0.0.1:9001")?;
/// impatient(&tcp)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait TimedIo: Read + Write {
    /// Bounds each following read (`None`: no bound), which then fails with
    /// [`io::ErrorKind::WouldBlock`] or [`io::ErrorKind::TimedOut`], as
    /// [`TcpStream::set_read_timeout`]. Never called with zero.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Bounds each following write, as [`TcpStream::set_write_timeout`].
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Ends the sending side (TCP `FIN`; TLS `close_notify` first) and
    /// leaves the receiving side open.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl TimedIo for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl TimedIo for Transport {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Transport::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Transport::set_write_timeout(self, timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        Transport::shutdown_write(self)
    }
}

/// A blocking WebSocket over a transport `S`.
///
/// ```no_run
/// use dialtone::{CloseCode, Dialer, Message};
///
/// let (mut ws, _response) = Dialer::new().dial_blocking("ws://127.0.0.1:9001/")?;
/// ws.send("hello")?;
/// if let Some(Ok(Message::Text(reply))) = ws.recv() {
///     println!("{reply}");
/// }
/// ws.close(CloseCode::Normal, "done")?;
/// # Ok::<(), dialtone::Error>(())
/// ```
#[derive(Debug)]
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    driver: Driver,
    protocol: Option<String>,
    /// The read and write timeouts last set on the transport.
    limits: (Option<Duration>, Option<Duration>),
}

impl<S: TimedIo> WebSocket<S> {
    /// Wraps a transport on which the opening handshake is already done.
    /// Bytes already read past the handshake belong in `conn`'s read buffer
    /// ([`Connection::receive`]).
    pub fn from_connection(io: S, conn: Connection, protocol: Option<String>) -> Self {
        let (driver, limits) = (Driver::default(), (None, None));
        WebSocket {
            io,
            conn,
            driver,
            protocol,
            limits,
        }
    }

    /// Replaces the socket's deadlines (see [`Timeouts`]); the timers start
    /// again at the next receive or send.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.conn.set_timeouts(timeouts);
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The sans-I/O connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The close frame the peer sent (`Abruptly` if the transport ended
    /// without one), once it has.
    pub fn close_received(&self) -> Option<&CloseFrame> {
        self.conn.close_received()
    }

    /// Receives the next message; `None` once the connection is closed and
    /// its close message was returned.
    pub fn recv(&mut self) -> Option<Result<Message>> {
        loop {
            if let Some(msg) = self.driver.next_event(&mut self.conn) {
                return Some(Ok(msg));
            }
            // What the core queued goes out before a close or an error is
            // returned: an application that stops there still closes properly.
            if let Err(e) = self.write_out() {
                self.driver.on_io_error(&mut self.conn, e);
                continue;
            }
            if let Some(report) = self.driver.take_report() {
                return Some(report);
            }
            if self.driver.must_shut_down(&self.conn) {
                // An error only means the peer already went.
                let _ = self.io.shutdown_write();
                self.driver.shut_down();
            }
            if self.conn.is_finished() {
                return None;
            }
            if self.driver.wants_read(&self.conn) {
                self.read_once();
            }
        }
    }

    /// Reads once, waiting at most until the core's next deadline, which
    /// is handled once a read found nothing, or brought bytes (they count
    /// as activity: only the close timeout can end the connection then).
    fn read_once(&mut self) {
        let limit = self.wait_limit();
        if let Err(e) = self.set_limits(limit, self.limits.1) {
            return self.driver.on_io_error(&mut self.conn, e);
        }
        // Room for the rest of a frame received in place (see the async
        // socket), so that it is never moved while it arrives.
        let hint = self.conn.read_hint().min(MAX_READ_RESERVE);
        let buf = self.conn.read_buffer();
        if buf.capacity() - buf.len() < hint {
            buf.reserve(hint);
        }
        let start = buf.len();
        buf.resize(start + READ_CHUNK, 0);
        let read = self.io.read(&mut buf[start..]);
        let buf = self.conn.read_buffer();
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => self.conn.receive_eof(),
            Ok(_) => {} // decoded by `next_event` at the top of the loop
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.driver.on_io_error(&mut self.conn, e),
        }
        let now = Instant::now();
        if self.conn.poll_timeout().is_some_and(|d| d <= now) {
            self.driver.handle_timeout(&mut self.conn, now);
        }
    }

    /// How long the transport may block: until the core's next deadline.
    /// Starts the timers the core needs (which never acts on a deadline);
    /// one that passed is handled only after the next read or write.
    fn wait_limit(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if self.conn.poll_timeout().is_none_or(|d| d > now) {
            self.driver.handle_timeout(&mut self.conn, now);
        }
        let deadline = self.conn.poll_timeout()?;
        Some(deadline.saturating_duration_since(now).max(MIN_WAIT))
    }

    fn set_limits(&mut self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        if self.limits.0 != read {
            self.io.set_read_timeout(read)?;
        }
        if self.limits.1 != write {
            self.io.set_write_timeout(write)?;
        }
        self.limits = (read, write);
        Ok(())
    }

    /// Writes everything queued; a peer that does not read has until the
    /// core's next deadline for each write, which is then handled.
    fn write_out(&mut self) -> io::Result<()> {
        while self.conn.pending_output() > 0 {
            let limit = self.wait_limit();
            self.set_limits(self.limits.0, limit)?;
            let mut slices = [IoSlice::new(&[]); 64];
            let n = self.conn.transmit_slices(&mut slices);
            match self.io.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.conn.advance_transmit(written),
                Err(e) if is_timeout(&e) => {
                    self.driver.handle_timeout(&mut self.conn, Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.conn.is_aborted() {
            return Ok(());
        }
        self.io.flush()
    }

    /// Queues a message without writing it: [`WebSocket::flush`], a send or
    /// a receive writes it.
    pub fn feed(&mut self, msg: impl Into<Message>) -> Result<()> {
        Ok(message::queue(&mut self.conn, &msg.into())?)
    }

    /// Writes everything queued. Fails if the connection was given up
    /// meanwhile (the keepalive timeout, or [`Error::Closed`]).
    pub fn flush(&mut self) -> Result<()> {
        self.write_out()?;
        if self.conn.is_aborted() {
            return Err(self.driver.flush_error());
        }
        Ok(())
    }

    /// Sends a message and writes it out.
    pub fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        self.feed(msg)?;
        self.flush()
    }

    /// Closes: sends a close frame, then reads (dropping data messages) until
    /// the peer's close and the end of the transport, or the close timeout.
    /// Returns the peer's close frame (`Abruptly` if it never came).
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<Option<CloseFrame>> {
        self.conn.close(CloseFrame::new(code, reason))?;
        while let Some(msg) = self.recv() {
            if let Err(e) = msg {
                tracing::debug!("while closing: {e}");
            }
        }
        Ok(self.conn.close_received().cloned())
    }
}

/// A blocking [`WebSocket`] as a [`Read`] + [`Write`] byte stream of
/// messages of one [`MessageKind`]: the blocking face of
/// [`crate::StreamMode`], with the same semantics (see
/// [`crate::stream_mode`]). Each `write` sends one message and writes it
/// out; [`StreamMode::shutdown`] does what `poll_shutdown` does there.
///
/// ```no_run
/// use std::io::Write;
///
/// use dialtone::{Dialer, MessageKind};
///
/// let (ws, _response) = Dialer::new().dial_blocking("ws://127.0.0.1:9001/")?;
/// let mut stream = ws.into_stream(MessageKind::Binary);
/// stream.write_all(b"one message")?;
/// stream.shutdown()?; // a close frame (Normal)
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
#[cfg_attr(
    not(feature = "tokio"),
    doc = "[`crate::StreamMode`]: crate#feature-flags\n[`crate::stream_mode`]: crate#feature-flags"
)]
#[derive(Debug)]
pub struct StreamMode<S> {
    ws: WebSocket<S>,
    kind: MessageKind,
    reader: ReadState,
    carry: Utf8Carry,
}

impl<S: TimedIo> WebSocket<S> {
    /// This socket as a byte stream of `kind` messages: see [`StreamMode`].
    pub fn into_stream(self, kind: MessageKind) -> StreamMode<S> {
        StreamMode::new(self, kind)
    }
}

impl<S: TimedIo> StreamMode<S> {
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

    /// The socket. Receiving or sending on it directly interleaves with the
    /// stream.
    pub fn get_mut(&mut self) -> &mut WebSocket<S> {
        &mut self.ws
    }

    /// The socket back; the unread rest of a message and a held-back part of
    /// a character are lost.
    pub fn into_inner(self) -> WebSocket<S> {
        self.ws
    }

    /// The peer's close frame, once it has arrived.
    pub fn close_received(&self) -> Option<&CloseFrame> {
        self.ws.close_received()
    }

    /// Sends a close frame with `Normal` and writes it out; reading goes on
    /// until the peer's close. Fails with `InvalidData` (and drops the
    /// held-back bytes) if a text stream would end inside a character.
    pub fn shutdown(&mut self) -> io::Result<()> {
        self.carry.check_end()?;
        let was_closed = self.ws.conn.state() == State::Closed;
        // Closing after the close is a no-op.
        self.ws
            .conn
            .close(CloseFrame::new(CloseCode::Normal, ""))
            .map_err(|e| to_io(e.into()))?;
        match self.ws.flush() {
            Err(e) if !was_closed => Err(to_io(e)),
            _ => Ok(()),
        }
    }
}

impl<S: TimedIo> Read for StreamMode<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let current = &mut self.reader.current;
            if !current.is_empty() || buf.is_empty() {
                let n = buf.len().min(current.len());
                buf[..n].copy_from_slice(&current[..n]);
                current.advance(n);
                return Ok(n);
            }
            if self.reader.eof {
                return Ok(0);
            }
            let item = self.ws.recv();
            match self.reader.on_item(self.kind, item) {
                Step::Data(bytes) => self.reader.current = bytes,
                Step::Continue => {}
                Step::Done(result) => return result.map(|()| 0),
                Step::WrongKind(e) => {
                    // Written by the next receive.
                    let frame = CloseFrame::new(CloseCode::UnexpectedData, e.to_string());
                    if let Err(err) = self.ws.conn.close(frame) {
                        tracing::debug!("closing after a {e}: {err}");
                    }
                    return Err(e);
                }
            }
        }
    }
}

impl<S: TimedIo> Write for StreamMode<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let (kind, conn) = (self.kind, &mut self.ws.conn);
        self.carry.write(kind, data, |message| {
            conn.send_message(kind, message).map_err(Error::from)
        })?;
        self.ws.flush().map_err(to_io)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ws.flush().map_err(to_io)
    }
}

/// The blocking face of the listener: the same step as the async
/// `Acceptor::accept`.
impl Acceptor {
    /// Accepts a handshake on a blocking TCP stream (see
    /// [`Acceptor::accept`]); the client has the handshake timeout to send
    /// its request.
    ///
    #[cfg_attr(
        not(feature = "tokio"),
        doc = "[`Acceptor::accept`]: crate#feature-flags"
    )]
    pub fn accept_blocking(
        &self,
        mut stream: TcpStream,
    ) -> Result<(WebSocket<TcpStream>, Request<()>)> {
        let deadline = Deadline::after(self.handshake_timeout);
        let mut step = ServerStep::new(self, false);
        let head = loop {
            stream.set_read_timeout(Some(deadline.left()?))?;
            let n = match read_into(&mut stream, step.buffer()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(deadline.io(e)),
            };
            if let Some(head) = step.step(n)? {
                break head;
            }
        };
        let reject = match head {
            ServerHead::Upgrade(outcome) => {
                stream.set_read_timeout(None)?;
                stream.set_nodelay(true)?;
                stream.write_all(&outcome.answer)?;
                let ws = WebSocket::from_connection(stream, outcome.conn, outcome.protocol);
                return Ok((ws, outcome.request));
            }
            ServerHead::Refused(reject) => reject,
            ServerHead::Plain(_) => upgrade_required(),
        };
        // Best effort: the client may already be gone.
        let _ = stream.write_all(&reject.to_bytes());
        let _ = stream.shutdown(std::net::Shutdown::Write);
        Err(Error::Refused(Box::new(reject)))
    }
}
