//! The receiving half of a [`Connection`](super::Connection): the read
//! buffer, the frame and the message being decoded, and what came in.
//!
//! It decodes and checks frames; what a frame asks of the connection (a
//! pong, the close handshake, failing) is the connection's.

use bytes::{Buf, Bytes, BytesMut};

use super::{Event, MessageKind};
use crate::close::CloseFrame;
use crate::config::{Config, Role};
use crate::deflate::Codec;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use crate::mask::{apply_mask, apply_mask_at};
use crate::utf8::{Utf8Bytes, Utf8Validator};

/// The frame being received: its header and how much payload is still due.
#[derive(Clone, Copy, Debug)]
pub(super) struct FrameInProgress {
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
pub(super) struct MessageInProgress {
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

/// What [`Receiver::decode`] found.
pub(super) enum Decoded {
    /// A whole text or binary message.
    Message(Event),
    /// A control frame, checked, with its unmasked payload.
    Control(OpCode, Bytes),
}

/// The receiving half: see the module docs of [`super`].
#[derive(Debug)]
pub(super) struct Receiver {
    /// RSV bits the negotiated extensions use (none yet: RSV set → 1002).
    pub(super) allowed_rsv: u8,
    pub(super) read_buf: BytesMut,
    pub(super) frame: Option<FrameInProgress>,
    /// Checks the text of a frame received in place.
    utf8_in_place: Utf8Validator,
    pub(super) message: Option<MessageInProgress>,
    pub(super) close_received: Option<CloseFrame>,
    pub(super) error: Option<ProtocolError>,
    /// The transport ended (or was given up).
    pub(super) eof: bool,
    /// The end was reported: every event before it was returned.
    pub(super) eof_handled: bool,
    /// `read_buf.len()` when the connection last looked: more means bytes
    /// arrived (the I/O layer may fill the buffer directly).
    pub(super) read_seen: usize,
}

impl Receiver {
    pub(super) fn new(allowed_rsv: u8) -> Self {
        Receiver {
            allowed_rsv,
            read_buf: BytesMut::new(),
            frame: None,
            utf8_in_place: Utf8Validator::new(),
            message: None,
            close_received: None,
            error: None,
            eof: false,
            eof_handled: false,
            read_seen: 0,
        }
    }

    /// Drops everything being received: nothing more is decoded.
    pub(super) fn stop(&mut self) {
        self.message = None;
        self.frame = None;
        self.read_buf.clear();
    }

    /// Whether bytes arrived since the last call.
    pub(super) fn take_arrived(&mut self) -> bool {
        let arrived = self.read_buf.len() != self.read_seen;
        self.read_seen = self.read_buf.len();
        arrived
    }

    pub(super) fn read_hint(&self) -> usize {
        match self.frame {
            Some(frame) if frame.in_place(self.message.is_some()) => {
                (frame.offset + frame.remaining as usize).saturating_sub(self.read_buf.len())
            }
            _ => 0,
        }
    }

    /// Decodes what arrived, up to the next message or control frame.
    pub(super) fn decode(
        &mut self,
        role: Role,
        config: &Config,
        mut deflate: Option<&mut Codec>,
    ) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            let mut frame = match self.frame {
                Some(f) => f,
                None => {
                    let Some((header, len)) = FrameHeader::decode(&self.read_buf)? else {
                        return Ok(None);
                    };
                    self.check_header(&header, role, config)?;
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
                return Ok(Some(Decoded::Control(h.opcode, payload.freeze())));
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
                return Ok(Some(Decoded::Message(event)));
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
                let Some(codec) = deflate.as_deref_mut() else {
                    return Err(ProtocolError::ReservedBitsSet);
                };
                let (utf8, is_text) = (&mut message.utf8, message.kind == MessageKind::Text);
                // The inflated size counts against the limit while inflating;
                // text is checked as it comes out, failing fast.
                codec.decompress(
                    &chunk,
                    message_done,
                    &mut message.inflated,
                    config.max_message_size,
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
                return Ok(Some(Decoded::Message(event)));
            }
        }
    }

    /// Every rule a frame header must pass, given the connection's state.
    fn check_header(
        &self,
        h: &FrameHeader,
        role: Role,
        config: &Config,
    ) -> Result<(), ProtocolError> {
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
        match (role, h.mask.is_some()) {
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
        if h.payload_len > config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooBig {
                size: h.payload_len,
                limit: config.max_frame_size,
            });
        }
        let so_far = self.message.as_ref().map_or(0, |m| m.wire_len);
        if so_far + h.payload_len > config.max_message_size as u64 {
            return Err(ProtocolError::MessageTooBig {
                size: so_far + h.payload_len,
                limit: config.max_message_size,
            });
        }
        Ok(())
    }
}
