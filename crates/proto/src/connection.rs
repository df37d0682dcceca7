//! The WebSocket state machine (RFC 6455 §5–§7), after the opening handshake.
//!
//! A [`Connection`] is a value: feed it received bytes
//! ([`Connection::receive`]), take [`Event`]s out ([`Connection::next_event`]);
//! hand it messages ([`Connection::send_text`] …), take bytes to write out
//! ([`Connection::transmit_slices`] / [`Connection::advance_transmit`]).
//! It never does I/O and never blocks.
//!
//! States: `Open` → `Closing` (we sent a close frame) → `Closed` (close frames
//! went both ways, or the connection failed). The connection is split as
//! rustls' `ConnectionCommon` is: the receiving half (`recv`: the read
//! buffer, the frame and message being decoded, with every rule a frame
//! header must pass, each with its section) and the sending half (`send`:
//! the outbox, masking keys, the message sent in fragments) each own their
//! data; what one half's input asks of the other (answering a ping or a
//! close, failing with the right code) and time ([`Connection::handle_timeout`])
//! are decided here, in one place.
//!
//! Outgoing frames wait in two queues: control frames (pongs, pings) and data
//! frames (messages, and close frames, which must follow the data handed over
//! before them). Control frames are written ahead of queued data frames, at
//! frame boundaries only.
//!
//! Invariants:
//! - `state` only moves forward: `Open` → `Closing` → `Closed`, or `Open` →
//!   `Closed`.
//! - Once `send.close_sent` is set (a close frame is queued), nothing more
//!   is queued: no data, no pong, no ping (RFC 6455 §5.5.1). It is set only
//!   while `Open`, and the state leaves `Open` with it.
//! - `recv.close_received` is set once, to the peer's close frame or to
//!   `Abruptly` at the end of the transport; the state is then `Closed`.
//! - In `Closed`, nothing is decoded: no frame or message is in progress and
//!   received bytes are dropped.
//! - `recv.error` is set only with the state `Closed` and, unless a close
//!   frame had been sent, the close frame with the error's code queued.
//! - `recv.eof_handled` means every event before the end was returned and
//!   the state is `Closed`.
//! - `aborted` implies `recv.eof`, and nothing is written from then on
//!   (`pending_output()` is 0, whatever is queued).
//! - `poll_timeout` names only the timers of the current state: keepalive
//!   and idle while `Open`, the close timeout after, none once aborted.

mod recv;
mod send;

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame, MAX_REASON_LEN};
use crate::config::{Config, Role, Timeouts};
use crate::deflate::{Agreed, Codec};
use crate::error::{Error, KeepaliveTimeout, ProtocolError};
use crate::frame::{OpCode, MAX_CONTROL_PAYLOAD};
use crate::outbox::Outbox;
pub use crate::outbox::MAX_QUEUED_PONGS;
use crate::utf8::Utf8Bytes;
use recv::{Decoded, Receiver};
use send::Sender;

/// The state of the closing handshake (RFC 6455 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's; received messages are
    /// still delivered.
    Closing,
    /// Close frames went both ways, or the connection failed: nothing more is
    /// sent (but what is queued) or received. The transport should close.
    Closed,
}

/// The type of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Arbitrary bytes (opcode 0x2).
    Binary,
}

impl MessageKind {
    fn opcode(self) -> OpCode {
        match self {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        }
    }
}

/// What the peer sent, one whole message or control frame at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A text message, checked to be UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the pong is already queued.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer's close frame ([`CloseCode::NoReason`] if it had no code), or
    /// [`CloseCode::Abruptly`] if the transport ended without one. The last
    /// event of a connection.
    Close(CloseFrame),
}

/// When each timer of [`Timeouts`] is due, from the times handed to
/// [`Connection::handle_timeout`]; `None`: not running.
#[derive(Debug, Default)]
struct Clock {
    /// Bytes arrived since the last `handle_timeout`, which restarts the
    /// idle timer at its `now`.
    active: bool,
    /// When the idle timer last (re)started.
    last_active: Option<Instant>,
    next_ping: Option<Instant>,
    /// While a keepalive ping is unanswered.
    pong_by: Option<Instant>,
    /// Once the connection is no longer open.
    close_by: Option<Instant>,
}

/// The smallest payload [`Connection::send_message_bytes`] queues without
/// copying: below it, a copy costs less than one more piece to write.
pub const SHARED_PAYLOAD_MIN: usize = 4096;

/// A WebSocket connection after the opening handshake, in either role.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    recv: Receiver,
    send: Sender,
    /// permessage-deflate, when negotiated: inflates for `recv`, deflates
    /// for `send`. (Boxed: a connection without it stays small.)
    deflate: Option<Box<Codec>>,
    /// The transport was given up ([`Connection::abort`]).
    aborted: bool,
    clock: Clock,
}

impl Connection {
    /// A connection in the open state, in `role`, right after the handshake,
    /// without extensions.
    pub fn new(role: Role, config: Config) -> Self {
        Self::with_deflate(role, config, None)
    }

    /// A connection with permessage-deflate as agreed in the handshake
    /// (`None`: no compression).
    pub fn with_deflate(role: Role, config: Config, deflate: Option<Agreed>) -> Self {
        Connection {
            role,
            config,
            state: State::Open,
            recv: Receiver::new(if deflate.is_some() { 0b100 } else { 0 }),
            send: Sender::new(role),
            deflate: deflate.map(|a| Box::new(Codec::new(&a, role == Role::Server))),
            aborted: false,
            clock: Clock::default(),
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state of the closing handshake.
    pub fn state(&self) -> State {
        self.state
    }

    /// The close frame the peer sent (or `Abruptly` if the transport ended
    /// without one), once it has.
    pub fn close_received(&self) -> Option<&CloseFrame> {
        self.recv.close_received.as_ref()
    }

    /// The close frame we sent or queued, once we have.
    pub fn close_sent(&self) -> Option<&CloseFrame> {
        self.send.close_sent.as_ref()
    }

    /// The protocol error that failed the connection, if one did.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.recv.error.as_ref()
    }

    /// Whether our side of the transport should be shut down now (TCP
    /// `FIN`, TLS `close_notify`): close frames went both ways (or the
    /// connection failed) and all output is written. A server closes first
    /// (RFC 6455 §7.1.1); a client waits for the server to close (even after
    /// failing the connection, §7.1.7), and so is told only once the
    /// transport ended, or never if the close timeout gave up on it
    /// ([`Connection::abort`]). Once true it stays true, but for an abort;
    /// shut down once.
    pub fn should_close_transport(&self) -> bool {
        !self.aborted
            && self.state == State::Closed
            && self.send.out.len() == 0
            && (self.role == Role::Server || self.recv.eof)
    }

    /// Whether the connection is over: every event was returned, the
    /// transport ended (or was given up) and nothing is left to write. The
    /// I/O layer stops then (after shutting the transport down if
    /// [`Connection::should_close_transport`] says so).
    pub fn is_finished(&self) -> bool {
        self.recv.eof_handled && self.pending_output() == 0
    }

    /// Gives up on the transport: it failed, or the peer did not finish in
    /// time. Nothing more is written (what is queued is dropped) or sent;
    /// the bytes already received are still decoded, then a missing close
    /// frame is reported as [`CloseCode::Abruptly`] (1006), and the
    /// connection is finished.
    pub fn abort(&mut self) {
        self.aborted = true;
        self.recv.eof = true;
        self.send.out = Outbox::default();
        self.send.sending = None;
    }

    /// Whether the transport was given up ([`Connection::abort`], or a
    /// timeout of [`Connection::handle_timeout`]): what was queued and not
    /// written then is lost.
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    // ----- time -----

    /// Replaces the deadlines ([`Config::timeouts`]); the timers start again
    /// at the next [`Connection::handle_timeout`].
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.config.timeouts = timeouts;
        self.clock = Clock::default();
    }

    /// When [`Connection::handle_timeout`] should next be called, if a timer
    /// runs: the next keepalive ping, the pong deadline or the idle timeout
    /// while open, the close timeout after. Timers start at the first
    /// `handle_timeout` that finds them needed, so `None` may mean "not yet
    /// started".
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.aborted {
            return None;
        }
        let clock = &self.clock;
        if self.state != State::Open {
            return clock.close_by;
        }
        let idle = self
            .idle_timeout()
            .and_then(|idle| clock.last_active?.checked_add(idle));
        [clock.next_ping, clock.pong_by, idle]
            .into_iter()
            .flatten()
            .min()
    }

    /// Hands the connection the time. Call it when the transport has
    /// nothing more to read (and output is written or blocked), before
    /// waiting until [`Connection::poll_timeout`]; and when that deadline
    /// passed even though bytes keep arriving. Bytes received count as
    /// activity at this `now`, so data waiting unread in the transport
    /// never times a slow reader out; the close timeout runs regardless.
    ///
    /// It acts on the timers due by `now` that were running before the
    /// call, and starts the ones needed (which thus never fire in the call
    /// that starts them):
    ///
    /// - keepalive: queues a ping (and, if none is unanswered, starts the
    ///   pong deadline); on a missed pong deadline, aborts the connection
    ///   ([`Connection::abort`]: `Abruptly` is reported next) and returns
    ///   the error, for the I/O layer to report first;
    /// - idle timeout: starts the closing handshake with
    ///   [`CloseCode::GoingAway`] and the reason `"idle timeout"`;
    /// - close timeout: aborts the connection.
    ///
    /// Keepalive and the idle timeout act only while the connection is
    /// open; once a close frame went out or came in, the close timeout takes
    /// over.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), KeepaliveTimeout> {
        self.note_received();
        if self.aborted {
            return Ok(());
        }
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        let idle = self.idle_timeout();
        let keepalive = self
            .config
            .timeouts
            .keepalive
            .filter(|k| !k.interval.is_zero());
        if self.state == State::Open {
            if std::mem::take(&mut self.clock.active) {
                self.clock.last_active = Some(now);
            }
            let idle_at = idle.and_then(|idle| self.clock.last_active?.checked_add(idle));
            if due(idle_at) {
                // Cannot fail: the code is sendable and the state is open.
                let _ = self.close(CloseFrame::new(CloseCode::GoingAway, "idle timeout"));
            } else if let (true, Some(k)) = (due(self.clock.pong_by), keepalive) {
                self.abort();
                return Err(KeepaliveTimeout(k.pong_deadline));
            } else if let (true, Some(k)) = (due(self.clock.next_ping), keepalive) {
                self.send.queue_control(OpCode::Ping, &[]);
                self.clock.next_ping = now.checked_add(k.interval);
                if self.clock.pong_by.is_none() {
                    self.clock.pong_by = now.checked_add(k.pong_deadline);
                }
            }
        }
        // Start what is needed and not running.
        if self.state == State::Open {
            if idle.is_some() && self.clock.last_active.is_none() {
                self.clock.last_active = Some(now);
            }
            if let (None, Some(k)) = (self.clock.next_ping, keepalive) {
                self.clock.next_ping = now.checked_add(k.interval);
            }
        } else if due(self.clock.close_by) {
            self.abort();
        } else if self.clock.close_by.is_none() {
            self.clock.close_by = now.checked_add(self.config.timeouts.close);
        }
        Ok(())
    }

    fn idle_timeout(&self) -> Option<Duration> {
        self.config.timeouts.idle.filter(|idle| !idle.is_zero())
    }

    /// Notices bytes the I/O layer added to the read buffer: any bytes from
    /// the peer stop the pong deadline, and restart the idle timer.
    fn note_received(&mut self) {
        if self.recv.take_arrived() {
            self.clock.active = true;
            self.clock.pong_by = None;
        }
    }

    /// Whether the transport has ended ([`Connection::receive_eof`] was called;
    /// events decoded from bytes before the end may still be pending).
    pub fn eof_received(&self) -> bool {
        self.recv.eof
    }

    // ----- receiving -----

    /// The buffer received bytes go into, for transports that read straight
    /// into it (the same as [`Connection::receive`]).
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.recv.read_buf
    }

    /// How many more bytes the frame being received needs to be complete,
    /// when it is received in place (a whole message in one frame); 0
    /// otherwise. A transport that reads into [`Connection::read_buffer`]
    /// makes room for this much (up to a bound of its own, since the length
    /// is the peer's claim) so that the frame arrives in one buffer.
    pub fn read_hint(&self) -> usize {
        self.recv.read_hint()
    }

    /// Adds received bytes. They are decoded lazily, by
    /// [`Connection::next_event`].
    pub fn receive(&mut self, data: &[u8]) {
        self.recv.read_buf.extend_from_slice(data);
    }

    /// Tells the connection the transport ended. Once the bytes received
    /// before are decoded, a missing close frame is reported as an abrupt
    /// closure (1006).
    pub fn receive_eof(&mut self) {
        self.recv.eof = true;
    }

    /// The next event, decoding received bytes as far as needed for one.
    ///
    /// Decoding stops at each event, so that a frame that breaks the protocol
    /// fails the connection only after the application has seen (and, say,
    /// answered) the messages before it.
    ///
    /// On a protocol error the connection has queued the close frame with the
    /// matching code and is `Closed`; the error is returned once and kept in
    /// [`Connection::error`].
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        self.note_received();
        let event = self.decode_event();
        self.recv.read_seen = self.recv.read_buf.len();
        event
    }

    fn decode_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        let decoded = if self.state == State::Closed {
            // RFC 6455 §5.5.1: nothing after the close frame is data.
            self.recv.read_buf.clear();
            Ok(None)
        } else {
            let deflate = self.deflate.as_deref_mut();
            match self.recv.decode(self.role, &self.config, deflate) {
                Ok(Some(Decoded::Message(event))) => Ok(Some(event)),
                Ok(Some(Decoded::Control(opcode, payload))) => {
                    self.on_control(opcode, payload).map(Some)
                }
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        };
        match decoded {
            Ok(None) => {}
            Ok(event) => return Ok(event),
            Err(e) => {
                self.fail(e.clone());
                return Err(e);
            }
        }
        let mut event = None;
        if self.recv.eof && !self.recv.eof_handled {
            // Every complete frame before the end is decoded.
            self.recv.eof_handled = true;
            if self.recv.close_received.is_none() {
                let frame = CloseFrame::new(CloseCode::Abruptly, "");
                self.recv.close_received = Some(frame.clone());
                if self.recv.error.is_none() {
                    event = Some(Event::Close(frame));
                }
            }
            self.state = State::Closed;
            self.recv.stop();
        }
        Ok(event)
    }

    fn on_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<Event, ProtocolError> {
        match opcode {
            OpCode::Ping => {
                // §5.5.2: answer with a pong carrying the same payload, unless
                // we already sent a close frame.
                if self.state == State::Open {
                    let pong = self.send.encode_control(OpCode::Pong, &payload);
                    self.send.out.push_auto_pong(pong);
                }
                Ok(Event::Ping(payload))
            }
            OpCode::Pong => Ok(Event::Pong(payload)),
            _ => {
                let frame = CloseFrame::parse(&payload)?
                    .unwrap_or_else(|| CloseFrame::new(CloseCode::NoReason, ""));
                // A message cut short by the close is dropped: it never completed.
                self.recv.message = None;
                if self.state == State::Open {
                    // §5.5.1: answer with a close frame, echoing the code.
                    self.send.queue_close(&frame);
                }
                self.state = State::Closed;
                self.recv.close_received = Some(frame.clone());
                Ok(Event::Close(frame))
            }
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): sends a close frame with the
    /// error's code unless one was sent, and stops processing input.
    fn fail(&mut self, error: ProtocolError) {
        if self.state == State::Open {
            let mut reason = error.to_string();
            truncate_utf8(&mut reason, MAX_REASON_LEN);
            self.send
                .queue_close(&CloseFrame::new(error.close_code(), reason));
        }
        self.state = State::Closed;
        self.recv.stop();
        self.recv.error = Some(error);
    }

    // ----- sending -----

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_message(MessageKind::Text, text.as_bytes())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Error> {
        self.send_message(MessageKind::Binary, data)
    }

    /// Queues a message, in frames of at most
    /// [`Config::max_send_frame_size`] bytes; compressed if permessage-deflate
    /// was negotiated and the message is not below its threshold.
    pub fn send_message(&mut self, kind: MessageKind, data: &[u8]) -> Result<(), Error> {
        self.send_message_inner(kind, data, self.compresses(data.len()))
    }

    /// Queues a message held in [`Bytes`], like [`Connection::send_message`].
    /// A server's uncompressed message of at least [`SHARED_PAYLOAD_MIN`]
    /// bytes is not copied: its frames are written from `data` itself (a
    /// reference to it is kept), behind their headers.
    pub fn send_message_bytes(&mut self, kind: MessageKind, data: &Bytes) -> Result<(), Error> {
        if self.role == Role::Client
            || data.len() < SHARED_PAYLOAD_MIN
            || self.compresses(data.len())
        {
            return self.send_message(kind, data);
        }
        self.check_can_start_message()?;
        self.send
            .queue_shared(kind, data, self.config.max_send_frame_size);
        Ok(())
    }

    /// Whether a message of `len` bytes is sent compressed.
    fn compresses(&self, len: usize) -> bool {
        self.deflate
            .as_ref()
            .is_some_and(|d| d.should_compress(len))
    }

    /// Queues a message that is never compressed, e.g. data known to be
    /// incompressible.
    pub fn send_message_uncompressed(
        &mut self,
        kind: MessageKind,
        data: &[u8],
    ) -> Result<(), Error> {
        self.send_message_inner(kind, data, false)
    }

    fn send_message_inner(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        compress: bool,
    ) -> Result<(), Error> {
        self.check_can_start_message()?;
        let codec = self.deflate.as_deref_mut().filter(|_| compress);
        self.send
            .queue_message(kind, data, codec, self.config.max_send_frame_size);
        Ok(())
    }

    /// Queues one fragment of a message sent piece by piece: the first call
    /// gives the message's kind, `fin` marks the last piece. Other messages
    /// cannot be sent until the last piece is; control frames can. With
    /// permessage-deflate, each piece is compressed and flushed.
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), Error> {
        self.check_can_send()?;
        self.send
            .queue_fragment(kind, data, fin, self.deflate.as_deref_mut())
    }

    /// Queues a ping (payload at most 125 bytes).
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        check_control_len(payload)?;
        self.send.queue_control(OpCode::Ping, payload);
        Ok(())
    }

    /// Queues an unsolicited pong (payload at most 125 bytes), e.g. as a
    /// unidirectional heartbeat (§5.5.3).
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        check_control_len(payload)?;
        self.send.queue_control(OpCode::Pong, payload);
        Ok(())
    }

    /// Starts the closing handshake: queues a close frame after the data
    /// already queued. [`CloseCode::NoReason`] sends a close frame without
    /// a code. Closing twice is a no-op; closing after the peer's close frame
    /// arrived is one too (it was answered).
    pub fn close(&mut self, frame: CloseFrame) -> Result<(), Error> {
        if frame.code != CloseCode::NoReason {
            frame.check_sendable()?;
        }
        if self.state != State::Open {
            return Ok(());
        }
        self.send.queue_close(&frame);
        self.state = State::Closing;
        Ok(())
    }

    /// A whole message may be queued: the connection is open and no
    /// message is being sent in fragments.
    fn check_can_start_message(&self) -> Result<(), Error> {
        self.check_can_send()?;
        if self.send.sending.is_some() {
            return Err(Error::FragmentedMessageInProgress);
        }
        Ok(())
    }

    fn check_can_send(&self) -> Result<(), Error> {
        if self.state == State::Open && !self.aborted {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// How many bytes wait to be written.
    pub fn pending_output(&self) -> usize {
        if self.aborted {
            0
        } else {
            self.send.out.len()
        }
    }

    /// Fills `dst` with the bytes to write next, in order, and returns how
    /// many slices it filled. Write them (all or a prefix), then call
    /// [`Connection::advance_transmit`] with the number of bytes written.
    pub fn transmit_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        if self.aborted {
            return 0;
        }
        self.send.out.transmit_slices(dst)
    }

    /// The next contiguous bytes to write (one frame or its rest), if any.
    pub fn transmit_chunk(&self) -> Option<&[u8]> {
        if self.aborted {
            return None;
        }
        self.send.out.transmit_chunk()
    }

    /// Marks `n` bytes of the output as written.
    ///
    /// # Panics
    /// If `n` exceeds [`Connection::pending_output`].
    pub fn advance_transmit(&mut self, n: usize) {
        if !self.aborted {
            self.send.out.advance(n);
        }
    }
}

fn check_control_len(payload: &[u8]) -> Result<(), Error> {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        Err(Error::ControlPayloadTooLong(payload.len()))
    } else {
        Ok(())
    }
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
