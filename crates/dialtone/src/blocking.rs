//! The same WebSocket over `std::io` for programs without an async runtime:
//! [`WebSocket`] over any `Read + Write`; [`Dialer::dial_blocking`] (every
//! feature of [`Dialer::dial`]: `wss://`, proxies, redirects, cookies,
//! authentication, the dial timeout) over a blocking [`Transport`], and
//! [`Acceptor::accept_blocking`] over `std::net::TcpStream`. The core is the
//! same `dialtone_proto::Connection` as the async face drives, and the dial
//! logic is the async dialer's (`dial_plan`, the handshake steps, the proxy
//! negotiations): this face only moves bytes.

use std::io::{self, IoSlice, Read, Write};

use bytes::Buf;
use dialtone_proto::{CloseCode, CloseFrame, Connection, MessageKind, Role, State};

use crate::error::{Error, Result};
use crate::message::{self, Message};
#[cfg(doc)]
use crate::{dialer::Dialer, handshake::Acceptor};

pub use crate::blocking_transport::Transport;
use crate::stream_mode::{to_io, ReadState, Step, Utf8Carry};

const READ_CHUNK: usize = 16 * 1024;

/// A blocking WebSocket over a transport `S`.
#[derive(Debug)]
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    protocol: Option<String>,
    pending_error: Option<Error>,
    terminated: bool,
}

impl<S: Read + Write> WebSocket<S> {
    /// Wraps a transport on which the opening handshake is already done.
    pub fn from_connection(io: S, conn: Connection, protocol: Option<String>) -> Self {
        WebSocket {
            io,
            conn,
            protocol,
            pending_error: None,
            terminated: false,
        }
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

    /// The close frame the peer sent, once it has.
    pub fn close_received(&self) -> Option<&CloseFrame> {
        self.conn.close_received()
    }

    fn write_out(&mut self) -> io::Result<()> {
        while self.conn.pending_output() > 0 {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = self.conn.transmit_slices(&mut slices);
            let written = self.io.write_vectored(&slices[..n])?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.conn.advance_transmit(written);
        }
        self.io.flush()
    }

    /// Receives the next message; `None` once the connection is closed and
    /// its close message was returned.
    pub fn recv(&mut self) -> Option<Result<Message>> {
        loop {
            if let Some(e) = self.pending_error.take() {
                return Some(Err(e));
            }
            match self.conn.next_event() {
                Ok(Some(event)) => return Some(Ok(event.into())),
                Ok(None) => {}
                Err(e) => return Some(Err(e.into())),
            }
            if self.terminated {
                return None;
            }
            if let Err(e) = self.write_out() {
                self.terminated = true;
                if self.conn.state() != State::Closed {
                    self.conn.receive_eof();
                    return Some(Err(e.into()));
                }
                continue;
            }
            if self.conn.state() == State::Closed
                && (self.conn.role() == Role::Server || self.conn.eof_received())
            {
                // The server closes first (RFC 6455 §7.1.1): dropping the
                // socket closes it.
                self.terminated = true;
                continue;
            }
            // Room for the rest of a frame received in place (see the
            // async socket), so that it is never moved while it arrives.
            let hint = self.conn.read_hint().min(crate::socket::MAX_READ_RESERVE);
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
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let closed = self.conn.state() == State::Closed;
                    self.conn.receive_eof();
                    if !closed {
                        self.pending_error = Some(e.into());
                    }
                }
            }
        }
    }

    /// Sends a message and writes it out.
    pub fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        message::queue(&mut self.conn, &msg.into())?;
        self.write_out()?;
        Ok(())
    }

    /// Closes: sends a close frame, then reads (dropping data messages) until
    /// the peer's close and the end of the transport. Returns the peer's
    /// close frame.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<Option<CloseFrame>> {
        self.conn.close(CloseFrame::new(code, reason))?;
        self.write_out()?;
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
#[derive(Debug)]
pub struct StreamMode<S> {
    ws: WebSocket<S>,
    kind: MessageKind,
    reader: ReadState,
    carry: Utf8Carry,
}

impl<S: Read + Write> WebSocket<S> {
    /// This socket as a byte stream of `kind` messages: see [`StreamMode`].
    pub fn into_stream(self, kind: MessageKind) -> StreamMode<S> {
        StreamMode::new(self, kind)
    }
}

impl<S: Read + Write> StreamMode<S> {
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
        match self.ws.write_out() {
            Err(e) if !was_closed => Err(e),
            _ => Ok(()),
        }
    }
}

impl<S: Read + Write> Read for StreamMode<S> {
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

impl<S: Read + Write> Write for StreamMode<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let (kind, conn) = (self.kind, &mut self.ws.conn);
        self.carry.write(kind, data, |message| {
            conn.send_message(kind, message).map_err(Error::from)
        })?;
        self.ws.write_out()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ws.write_out()
    }
}
