//! The WebSocket state machine (RFC 6455 §5–§7), after the opening handshake.
//!
//! A [`Connection`] is a value: feed it received bytes
//! ([`Connection::receive`]), take [`Event`]s out ([`Connection::next_event`]);
//! hand it messages ([`Connection::send_text`] …), take bytes to write out
//! ([`Connection::transmit_slices`] / [`Connection::advance_transmit`]).
//! It never does I/O and never blocks.
//!
//! States: `Open` → `Closing` (we sent a close frame) → `Closed` (close frames
//! went both ways, or the connection failed). Every rule of the protocol that
//! concerns frames after the handshake is checked in `Connection::check_header`
//! or the control-frame handler, each with its section.
//!
//! Outgoing frames wait in two queues: control frames (pongs, pings) and data
//! frames (messages, and close frames, which must follow the data handed over
//! before them). Control frames are written ahead of queued data frames, at
//! frame boundaries only.

use std::io::IoSlice;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame, MAX_REASON_LEN};
use crate::config::{Config, Role, Timeouts};
use crate::deflate::{Agreed, Codec};
use crate::error::{Error, KeepaliveTimeout, ProtocolError};
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::mask::{apply_mask, apply_mask_at};
use crate::outbox::Outbox;
pub use crate::outbox::MAX_QUEUED_PONGS;
use crate::utf8::{Utf8Bytes, Utf8Validator};

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

/// The frame being received: its header and how much payload is still due.
#[derive(Clone, Copy, Debug)]
struct FrameInProgress {
    header: FrameHeader,
    /// Payload bytes not yet unmasked.
    remaining: u64,
    /// Payload bytes unmasked so far: the mask offset of the next byte. For
    /// a frame received in place they are still at the front of the read
    /// buffer.
    offset: usize,
}

impl FrameInProgress {
    /// A whole uncompressed message in one frame is unmasked (and checked)
    /// in the read buffer as it arrives, and split off as one piece once
    /// complete: its payload is never copied (the read buffer is sized from
    /// [`Connection::read_hint`]). Other data frames are consumed as they
    /// arrive into the message being assembled.
    fn in_place(&self, message_in_progress: bool) -> bool {
        let h = &self.header;
        !message_in_progress && h.fin && !h.rsv1 && !h.opcode.is_control()
    }
}

/// A fragmented (or not yet complete) data message being received.
#[derive(Debug)]
struct MessageInProgress {
    kind: MessageKind,
    /// RSV1 on the first frame: permessage-deflate compressed.
    compressed: bool,
    /// Payload bytes received on the wire so far.
    wire_len: u64,
    /// The payload, if not compressed.
    buf: BytesMut,
    /// The inflated payload, if compressed.
    inflated: Vec<u8>,
    utf8: Utf8Validator,
}

/// Random masking keys from the OS CSPRNG, fetched 64 keys at a time so
/// that small frames do not each cost a system call (RFC 6455 §5.3:
/// keys must be unpredictable).
#[derive(Debug)]
struct MaskKeys {
    pool: [u8; 256],
    used: usize,
}

impl MaskKeys {
    fn new() -> Self {
        MaskKeys {
            pool: [0; 256],
            used: 256,
        }
    }

    fn next(&mut self) -> [u8; 4] {
        if self.used == self.pool.len() {
            if getrandom::fill(&mut self.pool).is_err() {
                // No OS randomness: keep the keys varying from the std
                // hasher's per-process random seed.
                use std::hash::{BuildHasher, RandomState};
                let state = RandomState::new();
                for (i, chunk) in self.pool.chunks_exact_mut(8).enumerate() {
                    chunk.copy_from_slice(&state.hash_one(i).to_ne_bytes());
                }
            }
            self.used = 0;
        }
        let mut key = [0; 4];
        key.copy_from_slice(&self.pool[self.used..self.used + 4]);
        self.used += 4;
        key
    }
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
    /// RSV bits the negotiated extensions use (none yet: RSV set → 1002).
    allowed_rsv: u8,

    read_buf: BytesMut,
    frame: Option<FrameInProgress>,
    /// Checks the text of a frame received in place.
    utf8_in_place: Utf8Validator,
    message: Option<MessageInProgress>,
    close_received: Option<CloseFrame>,
    close_sent: Option<CloseFrame>,
    error: Option<ProtocolError>,
    eof: bool,
    eof_handled: bool,
    /// The transport was given up ([`Connection::abort`]).
    aborted: bool,
    /// `read_buf.len()` when the connection last looked: more means bytes
    /// arrived (the I/O layer may fill the buffer directly).
    read_seen: usize,
    clock: Clock,

    out: Outbox,
    /// A client's masking keys (a server sends unmasked: it has none,
    /// which keeps an idle server connection small).
    keys: Option<Box<MaskKeys>>,
    /// The kind of the message being sent in fragments, and whether it is
    /// compressed.
    sending: Option<(MessageKind, bool)>,
    /// permessage-deflate, when negotiated.
    /// (Boxed: a connection without it stays small.)
    deflate: Option<Box<Codec>>,
    /// Reused buffer for compressed output.
    scratch: Vec<u8>,
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
            allowed_rsv: if deflate.is_some() { 0b100 } else { 0 },
            deflate: deflate.map(|a| Box::new(Codec::new(&a, role == Role::Server))),
            scratch: Vec::new(),
            read_buf: BytesMut::new(),
            frame: None,
            utf8_in_place: Utf8Validator::new(),
            message: None,
            close_received: None,
            close_sent: None,
            error: None,
            eof: false,
            eof_handled: false,
            aborted: false,
            read_seen: 0,
            clock: Clock::default(),
            out: Outbox::default(),
            keys: (role == Role::Client).then(|| Box::new(MaskKeys::new())),
            sending: None,
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
        self.close_received.as_ref()
    }

    /// The close frame we sent or queued, once we have.
    pub fn close_sent(&self) -> Option<&CloseFrame> {
        self.close_sent.as_ref()
    }

    /// The protocol error that failed the connection, if one did.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.error.as_ref()
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
            && self.out.len() == 0
            && (self.role == Role::Server || self.eof)
    }

    /// Whether the connection is over: every event was returned, the
    /// transport ended (or was given up) and nothing is left to write. The
    /// I/O layer stops then (after shutting the transport down if
    /// [`Connection::should_close_transport`] says so).
    pub fn is_finished(&self) -> bool {
        self.eof_handled && self.pending_output() == 0
    }

    /// Gives up on the transport: it failed, or the peer did not finish in
    /// time. Nothing more is written (what is queued is dropped) or sent;
    /// the bytes already received are still decoded, then a missing close
    /// frame is reported as [`CloseCode::Abruptly`] (1006), and the
    /// connection is finished.
    pub fn abort(&mut self) {
        self.aborted = true;
        self.eof = true;
        self.out = Outbox::default();
        self.sending = None;
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
                self.queue_control(OpCode::Ping, &[]);
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
        if self.read_buf.len() != self.read_seen {
            self.read_seen = self.read_buf.len();
            self.clock.active = true;
            self.clock.pong_by = None;
        }
    }

    /// Whether the transport has ended ([`Connection::receive_eof`] was called;
    /// events decoded from bytes before the end may still be pending).
    pub fn eof_received(&self) -> bool {
        self.eof
    }

    // ----- receiving -----

    /// The buffer received bytes go into, for transports that read straight
    /// into it (the same as [`Connection::receive`]).
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.read_buf
    }

    /// How many more bytes the frame being received needs to be complete,
    /// when it is received in place (a whole message in one frame); 0
    /// otherwise. A transport that reads into [`Connection::read_buffer`]
    /// makes room for this much (up to a bound of its own, since the length
    /// is the peer's claim) so that the frame arrives in one buffer.
    pub fn read_hint(&self) -> usize {
        match self.frame {
            Some(frame) if frame.in_place(self.message.is_some()) => {
                (frame.offset + frame.remaining as usize).saturating_sub(self.read_buf.len())
            }
            _ => 0,
        }
    }

    /// Adds received bytes. They are decoded lazily, by
    /// [`Connection::next_event`].
    pub fn receive(&mut self, data: &[u8]) {
        self.read_buf.extend_from_slice(data);
    }

    /// Tells the connection the transport ended. Once the bytes received
    /// before are decoded, a missing close frame is reported as an abrupt
    /// closure (1006).
    pub fn receive_eof(&mut self) {
        self.eof = true;
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
        self.read_seen = self.read_buf.len();
        event
    }

    fn decode_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        match self.process_frames() {
            Ok(None) => {}
            Ok(event) => return Ok(event),
            Err(e) => {
                self.fail(e.clone());
                return Err(e);
            }
        }
        let mut event = None;
        if self.eof && !self.eof_handled {
            // Every complete frame before the end is decoded.
            self.eof_handled = true;
            if self.close_received.is_none() {
                let frame = CloseFrame::new(CloseCode::Abruptly, "");
                self.close_received = Some(frame.clone());
                if self.error.is_none() {
                    event = Some(Event::Close(frame));
                }
            }
            self.state = State::Closed;
            self.message = None;
            self.frame = None;
            self.read_buf.clear();
        }
        Ok(event)
    }

    fn process_frames(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            if self.state == State::Closed {
                // RFC 6455 §5.5.1: nothing after the close frame is data.
                self.read_buf.clear();
                return Ok(None);
            }
            let mut frame = match self.frame {
                Some(f) => f,
                None => {
                    let Some((header, len)) = FrameHeader::decode(&self.read_buf)? else {
                        return Ok(None);
                    };
                    self.check_header(&header)?;
                    self.read_buf.advance(len);
                    FrameInProgress {
                        header,
                        remaining: header.payload_len,
                        offset: 0,
                    }
                }
            };
            let h = frame.header;
            let available = self.read_buf.len() as u64;

            if h.opcode.is_control() {
                // At most 125 bytes (checked): wait for the whole payload.
                if available < frame.remaining {
                    self.frame = Some(frame);
                    return Ok(None);
                }
                self.frame = None;
                let mut payload = self.read_buf.split_to(frame.remaining as usize);
                if let Some(key) = h.mask {
                    apply_mask(&mut payload, key);
                }
                return self.on_control(h.opcode, payload.freeze()).map(Some);
            }

            if frame.in_place(self.message.is_some()) {
                // The header's length is at most `max_frame_size` (checked),
                // so it fits in memory.
                let len = frame.offset + frame.remaining as usize;
                let have = self.read_buf.len().min(len);
                let is_text = h.opcode == OpCode::Text;
                let arrived = &mut self.read_buf[frame.offset..have];
                if let Some(key) = h.mask {
                    apply_mask_at(arrived, key, frame.offset);
                }
                if is_text {
                    if frame.offset == 0 {
                        self.utf8_in_place = Utf8Validator::new();
                    }
                    // Fail fast: the first bad byte fails the connection even
                    // mid-frame (RFC 6455 §8.1).
                    self.utf8_in_place
                        .feed(arrived)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                frame.remaining -= (have - frame.offset) as u64;
                frame.offset = have;
                if have < len {
                    self.frame = Some(frame);
                    return Ok(None);
                }
                self.frame = None;
                let payload = self.read_buf.split_to(len).freeze();
                let event = if is_text {
                    self.utf8_in_place
                        .finish()
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                    // SAFETY: `utf8_in_place` was fed every byte of this
                    // payload, in order, as it was unmasked in place (from
                    // offset 0, where it was reset), accepted them all and
                    // finished.
                    Event::Text(unsafe { Utf8Bytes::from_validated(payload) })
                } else {
                    Event::Binary(payload)
                };
                return Ok(Some(event));
            }

            // Streaming path: take what has arrived of this frame.
            let message = self.message.get_or_insert_with(|| MessageInProgress {
                kind: if h.opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                },
                compressed: h.rsv1,
                wire_len: 0,
                buf: BytesMut::new(),
                inflated: Vec::new(),
                utf8: Utf8Validator::new(),
            });
            let take = frame.remaining.min(available) as usize;
            let mut chunk = self.read_buf.split_to(take);
            if let Some(key) = h.mask {
                frame.offset = apply_mask_at(&mut chunk, key, frame.offset);
            }
            message.wire_len += take as u64;
            frame.remaining -= take as u64;
            let message_done = frame.remaining == 0 && h.fin;
            if message.compressed {
                let Some(codec) = self.deflate.as_mut() else {
                    return Err(ProtocolError::ReservedBitsSet);
                };
                let (utf8, is_text) = (&mut message.utf8, message.kind == MessageKind::Text);
                // The inflated size counts against the limit while inflating;
                // text is checked as it comes out, failing fast.
                codec.decompress(
                    &chunk,
                    message_done,
                    &mut message.inflated,
                    self.config.max_message_size,
                    &mut |out| {
                        if is_text {
                            utf8.feed(out).map_err(|_| ProtocolError::InvalidUtf8)?;
                        }
                        Ok(())
                    },
                )?;
            } else {
                if message.kind == MessageKind::Text {
                    // Fail fast: the first bad byte fails the connection even
                    // mid-frame (RFC 6455 §8.1).
                    message
                        .utf8
                        .feed(&chunk)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                message.buf.unsplit(chunk);
            }
            if frame.remaining > 0 {
                self.frame = Some(frame);
                return Ok(None);
            }
            self.frame = None;
            if message_done {
                let Some(mut message) = self.message.take() else {
                    continue;
                };
                let payload = if message.compressed {
                    Bytes::from(std::mem::take(&mut message.inflated))
                } else {
                    message.buf.freeze()
                };
                let event = match message.kind {
                    MessageKind::Text => {
                        message
                            .utf8
                            .finish()
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                        // SAFETY: the message's validator was fed exactly
                        // its payload, in order (each chunk as it joined
                        // `buf`, or each inflated piece as it joined
                        // `inflated`), accepted it all and finished.
                        Event::Text(unsafe { Utf8Bytes::from_validated(payload) })
                    }
                    MessageKind::Binary => Event::Binary(payload),
                };
                return Ok(Some(event));
            }
        }
    }

    /// Every rule a frame header must pass, given the connection's state.
    fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        // §5.2: RSV bits only with an extension that defines them. RFC 7692
        // §6: permessage-deflate's RSV1 marks the first frame of a data
        // message, never a continuation or control frame.
        let rsv = (u8::from(h.rsv1) << 2) | (u8::from(h.rsv2) << 1) | u8::from(h.rsv3);
        if rsv & !self.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBitsSet);
        }
        if h.rsv1 && !matches!(h.opcode, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::ReservedBitsSet);
        }
        // §5.1: clients mask, servers do not.
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            // §5.5: control frames are short and never fragmented.
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong(h.payload_len));
            }
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            return Ok(());
        }
        // §5.4: fragments of one message are consecutive.
        match (h.opcode, &self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => {}
        }
        if h.payload_len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooBig {
                size: h.payload_len,
                limit: self.config.max_frame_size,
            });
        }
        let so_far = self.message.as_ref().map_or(0, |m| m.wire_len);
        if so_far + h.payload_len > self.config.max_message_size as u64 {
            return Err(ProtocolError::MessageTooBig {
                size: so_far + h.payload_len,
                limit: self.config.max_message_size,
            });
        }
        Ok(())
    }

    fn on_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<Event, ProtocolError> {
        match opcode {
            OpCode::Ping => {
                // §5.5.2: answer with a pong carrying the same payload, unless
                // we already sent a close frame.
                if self.state == State::Open {
                    let pong = self.encode_control(OpCode::Pong, &payload);
                    self.out.push_auto_pong(pong);
                }
                Ok(Event::Ping(payload))
            }
            OpCode::Pong => Ok(Event::Pong(payload)),
            _ => {
                let frame = CloseFrame::parse(&payload)?
                    .unwrap_or_else(|| CloseFrame::new(CloseCode::NoReason, ""));
                // A message cut short by the close is dropped: it never completed.
                self.message = None;
                if self.state == State::Open {
                    // §5.5.1: answer with a close frame, echoing the code.
                    self.queue_close(&frame);
                }
                self.state = State::Closed;
                self.close_received = Some(frame.clone());
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
            self.queue_close(&CloseFrame::new(error.close_code(), reason));
        }
        self.state = State::Closed;
        self.message = None;
        self.frame = None;
        self.read_buf.clear();
        self.error = Some(error);
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
        let max = self.config.max_send_frame_size;
        for (opcode, range, fin) in frames(kind.opcode(), data.len(), max) {
            self.queue_data_shared(opcode, fin, data.slice(range));
        }
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
        let max = self.config.max_send_frame_size;
        let Some(codec) = self.deflate.as_mut().filter(|_| compress) else {
            for (opcode, range, fin) in frames(kind.opcode(), data.len(), max) {
                self.queue_data(opcode, fin, false, &data[range]);
            }
            return Ok(());
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        codec.compress(data, true, &mut scratch);
        for (opcode, range, fin) in frames(kind.opcode(), scratch.len(), max) {
            // RFC 7692 §6: RSV1 marks the first frame of a compressed message.
            let rsv1 = opcode != OpCode::Continuation;
            self.queue_data(opcode, fin, rsv1, &scratch[range]);
        }
        scratch.clear();
        if scratch.capacity() > 1 << 20 {
            scratch = Vec::new(); // do not keep a large message's buffer
        }
        self.scratch = scratch;
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
        let (opcode, compressed) = match self.sending {
            Some((current, _)) if current != kind => {
                return Err(Error::FragmentedMessageInProgress)
            }
            Some((_, compressed)) => (OpCode::Continuation, compressed),
            None => (
                kind.opcode(),
                self.deflate.as_deref().is_some_and(Codec::can_compress),
            ),
        };
        self.sending = if fin { None } else { Some((kind, compressed)) };
        let rsv1 = compressed && opcode != OpCode::Continuation;
        match (compressed, self.deflate.as_mut()) {
            (true, Some(codec)) => {
                let mut scratch = std::mem::take(&mut self.scratch);
                codec.compress(data, fin, &mut scratch);
                self.queue_data(opcode, fin, rsv1, &scratch);
                scratch.clear();
                self.scratch = scratch;
            }
            _ => self.queue_data(opcode, fin, false, data),
        }
        Ok(())
    }

    /// Queues a ping (payload at most 125 bytes).
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        check_control_len(payload)?;
        self.queue_control(OpCode::Ping, payload);
        Ok(())
    }

    /// Queues an unsolicited pong (payload at most 125 bytes), e.g. as a
    /// unidirectional heartbeat (§5.5.3).
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        check_control_len(payload)?;
        self.queue_control(OpCode::Pong, payload);
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
        self.queue_close(&frame);
        self.state = State::Closing;
        Ok(())
    }

    /// A whole message may be queued: the connection is open and no
    /// message is being sent in fragments.
    fn check_can_start_message(&self) -> Result<(), Error> {
        self.check_can_send()?;
        if self.sending.is_some() {
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

    fn queue_close(&mut self, frame: &CloseFrame) {
        let payload = if frame.code == CloseCode::NoReason {
            Vec::new()
        } else {
            frame.to_payload()
        };
        // After the data already handed over: nothing handed over is lost.
        self.queue_data(OpCode::Close, true, false, &payload);
        self.close_sent = Some(frame.clone());
    }

    fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
        let frame = self.encode_control(opcode, payload);
        self.out.push_control(frame);
    }

    fn queue_data(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) {
        let (head, head_len, mask) = self.header(opcode, fin, rsv1, payload.len());
        self.out.push_data(&head[..head_len], payload, |payload| {
            if let Some(key) = mask {
                apply_mask(payload, key);
            }
        });
    }

    /// Queues a data frame as its header and, behind it, `payload` itself.
    fn queue_data_shared(&mut self, opcode: OpCode, fin: bool, payload: Bytes) {
        debug_assert_eq!(self.role, Role::Server, "a client's payload is masked");
        let (head, head_len, _) = self.header(opcode, fin, false, payload.len());
        self.out.push_shared(&head[..head_len], payload);
    }

    /// A control frame, encoded (and masked as our role requires) on its
    /// own: control frames are few and may jump the data queue.
    fn encode_control(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
        let (head, head_len, mask) = self.header(opcode, true, false, payload.len());
        let mut frame = Vec::with_capacity(head_len + payload.len());
        frame.extend_from_slice(&head[..head_len]);
        frame.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut frame[head_len..], key);
        }
        Bytes::from(frame)
    }

    /// Encodes a frame header; a client's has a fresh masking key (RFC 6455
    /// §5.3), which is also returned.
    #[inline]
    fn header(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload_len: usize,
    ) -> ([u8; MAX_HEADER_LEN], usize, Option<[u8; 4]>) {
        let mut header = FrameHeader::new(opcode, payload_len as u64);
        header.fin = fin;
        header.rsv1 = rsv1;
        // Only a client has keys (RFC 6455 §5.3: it masks every frame).
        header.mask = self.keys.as_mut().map(|keys| keys.next());
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        (head, head_len, header.mask)
    }

    /// How many bytes wait to be written.
    pub fn pending_output(&self) -> usize {
        if self.aborted {
            0
        } else {
            self.out.len()
        }
    }

    /// Fills `dst` with the bytes to write next, in order, and returns how
    /// many slices it filled. Write them (all or a prefix), then call
    /// [`Connection::advance_transmit`] with the number of bytes written.
    pub fn transmit_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        if self.aborted {
            return 0;
        }
        self.out.transmit_slices(dst)
    }

    /// The next contiguous bytes to write (one frame or its rest), if any.
    pub fn transmit_chunk(&self) -> Option<&[u8]> {
        if self.aborted {
            return None;
        }
        self.out.transmit_chunk()
    }

    /// Marks `n` bytes of the output as written.
    ///
    /// # Panics
    /// If `n` exceeds [`Connection::pending_output`].
    pub fn advance_transmit(&mut self, n: usize) {
        if !self.aborted {
            self.out.advance(n);
        }
    }
}

/// The frames a message payload of `len` bytes goes out in, at most `max`
/// bytes each (and at least one): each one's opcode (the message's, then
/// continuations), its range of the payload, and whether it is the last.
fn frames(
    opcode: OpCode,
    len: usize,
    max: usize,
) -> impl Iterator<Item = (OpCode, Range<usize>, bool)> {
    let max = max.max(1);
    let count = len.div_ceil(max).max(1);
    (0..count).map(move |i| {
        let start = i * max;
        let opcode = if i == 0 { opcode } else { OpCode::Continuation };
        (opcode, start..len.min(start + max), i + 1 == count)
    })
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
