//! The sending half of a [`Connection`](super::Connection): frames
//! encoded (and masked, for a client) into the outbox, the message being
//! sent in fragments, and the close frame sent.
//!
//! It encodes what the connection decided to send; whether it may be sent
//! (the state, the close handshake) is the connection's.

use std::ops::Range;

use bytes::Bytes;

use super::MessageKind;
use crate::close::{CloseCode, CloseFrame};
use crate::config::Role;
use crate::deflate::Codec;
use crate::error::Error;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::outbox::Outbox;

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

/// The sending half: see the module docs of [`super`].
#[derive(Debug)]
pub(super) struct Sender {
    pub(super) out: Outbox,
    /// A client's masking keys (a server sends unmasked: it has none,
    /// which keeps an idle server connection small).
    keys: Option<Box<MaskKeys>>,
    /// The kind of the message being sent in fragments, and whether it is
    /// compressed.
    pub(super) sending: Option<(MessageKind, bool)>,
    /// Reused buffer for compressed output.
    scratch: Vec<u8>,
    pub(super) close_sent: Option<CloseFrame>,
}

impl Sender {
    pub(super) fn new(role: Role) -> Self {
        Sender {
            out: Outbox::default(),
            keys: (role == Role::Client).then(|| Box::new(MaskKeys::new())),
            sending: None,
            scratch: Vec::new(),
            close_sent: None,
        }
    }

    /// Queues a whole message in frames of at most `max` bytes, compressed
    /// with `codec` if given.
    pub(super) fn queue_message(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        codec: Option<&mut Codec>,
        max: usize,
    ) {
        let Some(codec) = codec else {
            for (opcode, range, fin) in frames(kind.opcode(), data.len(), max) {
                self.queue_data(opcode, fin, false, &data[range]);
            }
            return;
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
    }

    /// Queues a server's uncompressed message as frame headers with the
    /// payload itself behind each.
    pub(super) fn queue_shared(&mut self, kind: MessageKind, data: &Bytes, max: usize) {
        for (opcode, range, fin) in frames(kind.opcode(), data.len(), max) {
            self.queue_data_shared(opcode, fin, data.slice(range));
        }
    }

    /// Queues one piece of a message sent in fragments; `codec` is the
    /// connection's permessage-deflate, if negotiated.
    pub(super) fn queue_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
        codec: Option<&mut Codec>,
    ) -> Result<(), Error> {
        let (opcode, compressed) = match self.sending {
            Some((current, _)) if current != kind => {
                return Err(Error::FragmentedMessageInProgress)
            }
            Some((_, compressed)) => (OpCode::Continuation, compressed),
            None => (
                kind.opcode(),
                codec.as_deref().is_some_and(Codec::can_compress),
            ),
        };
        self.sending = if fin { None } else { Some((kind, compressed)) };
        let rsv1 = compressed && opcode != OpCode::Continuation;
        match (compressed, codec) {
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

    pub(super) fn queue_close(&mut self, frame: &CloseFrame) {
        let payload = if frame.code == CloseCode::NoReason {
            Vec::new()
        } else {
            frame.to_payload()
        };
        // After the data already handed over: nothing handed over is lost.
        self.queue_data(OpCode::Close, true, false, &payload);
        self.close_sent = Some(frame.clone());
    }

    pub(super) fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
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
        debug_assert!(self.keys.is_none(), "a client's payload is masked");
        let (head, head_len, _) = self.header(opcode, fin, false, payload.len());
        self.out.push_shared(&head[..head_len], payload);
    }

    /// A control frame, encoded (and masked as our role requires) on its
    /// own: control frames are few and may jump the data queue.
    pub(super) fn encode_control(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
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
