//! Shared harness code for the fuzz targets: an input reader, the connection
//! driver behind `connection_server` / `connection_client`, and the frame
//! encoding the seed generator (`examples/gen_seeds.rs`) shares with it.
//!
//! Every target asserts invariants, not only "no panic"; an assertion that
//! fails is a finding, reported by libFuzzer as a crash with its input saved
//! under `fuzz/artifacts/<target>/`.

use dialtone_proto::connection::MAX_QUEUED_PONGS;
use dialtone_proto::deflate::{Agreed, Codec};
use dialtone_proto::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use dialtone_proto::mask::apply_mask;
use dialtone_proto::{
    CloseCode, CloseFrame, Config, Connection, Event, ProtocolError, Role, State,
};

/// Reads an input front to back; past the end it yields zeros / empty slices.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The limits the connection targets run with.
pub const MAX_FRAME: usize = 64 << 10;
pub const MAX_MESSAGE: usize = 256 << 10;

/// Flags of the connection targets' first input byte.
pub mod flags {
    /// permessage-deflate agreed (parameters from the second byte).
    pub const DEFLATE: u8 = 1 << 0;
    /// The rest of the input is a list of frame-building ops, not raw bytes.
    pub const STRUCTURED: u8 = 1 << 1;
    /// The transport ends after the last byte.
    pub const EOF: u8 = 1 << 2;
    /// Output is written (partially) while input arrives.
    pub const DRAIN: u8 = 1 << 3;
    pub const SERVER_NO_CONTEXT_TAKEOVER: u8 = 1 << 4;
    pub const CLIENT_NO_CONTEXT_TAKEOVER: u8 = 1 << 5;
}

/// Ops of structured mode: `[op][len][len bytes]`. Low nibble: an opcode
/// (0, 1, 2, 8, 9, 10) makes a frame, masked as the peer must; the other
/// values are the actions below. High bits: see `OP_*`.
pub mod ops {
    /// The payload goes on the wire verbatim.
    pub const RAW: u8 = 3;
    /// Write `len * 4` bytes of our output.
    pub const DRAIN: u8 = 4;
    /// Deliver everything on the wire so far, then go on.
    pub const FLUSH: u8 = 5;
    /// A frame with the masking the peer must not use.
    pub const WRONG_MASK: u8 = 6;
    pub const OP_FIN: u8 = 0x80;
    pub const OP_RSV1: u8 = 0x40;
    /// With deflate: compress the payload with the peer's compressor.
    pub const OP_COMPRESS: u8 = 0x20;
    /// Repeat the payload 1024 times (big frames, deflate bombs).
    pub const OP_BIG: u8 = 0x10;
}

/// Encodes one frame as a peer in `peer_role` sends it (masked iff client).
pub fn encode_frame(
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    payload: &[u8],
    masked: bool,
    key: [u8; 4],
) -> Vec<u8> {
    let mut h = FrameHeader::new(opcode, payload.len() as u64);
    h.fin = fin;
    h.rsv1 = rsv1;
    if masked {
        h.mask = Some(key);
    }
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut head);
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if masked {
        apply_mask(&mut out[start..], key);
    }
    out
}

/// What the connection reported, for comparing two deliveries of one wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(CloseFrame),
    Error(ProtocolError),
}

/// A connection under test plus everything observed about it.
pub struct Driven {
    pub conn: Connection,
    pub role: Role,
    pub seen: Vec<Seen>,
    /// An `Err` or a `Close` event came: nothing may follow.
    pub done: bool,
    /// Bytes written out so far (taken with `transmit_chunk`).
    pub written: Vec<u8>,
    /// Whether output was written before the end (coalescing of pongs then
    /// depends on timing, so outputs of two deliveries differ).
    pub drained_early: bool,
    /// The payload of each ping received while the state was `Open`.
    pub pings_open: Vec<Vec<u8>>,
}

/// The most output a connection fed only input may hold: a partly written
/// control frame, `MAX_QUEUED_PONGS` waiting automatic pongs (past those a
/// newer one replaces the latest) and a close frame, each at most 125 bytes
/// of payload plus a 6-byte header.
pub const MAX_PENDING: usize = (MAX_QUEUED_PONGS + 2) * (MAX_CONTROL_PAYLOAD + 6);

impl Driven {
    pub fn new(role: Role, agreed: Option<Agreed>) -> Self {
        let config = Config::default()
            .max_frame_size(MAX_FRAME)
            .max_message_size(MAX_MESSAGE);
        Driven {
            conn: Connection::with_deflate(role, config, agreed),
            role,
            seen: Vec::new(),
            done: false,
            written: Vec::new(),
            drained_early: false,
            pings_open: Vec::new(),
        }
    }

    /// Takes every event the connection has now, checking each.
    pub fn drain_events(&mut self) {
        for _ in 0..1_000_000 {
            let state_before = self.conn.state();
            let next = self.conn.next_event();
            if self.done {
                assert!(
                    matches!(next, Ok(None)),
                    "after an error or a close event: {next:?} (seen {:?})",
                    self.seen.last()
                );
                return;
            }
            match next {
                Ok(None) => {
                    self.check_output_bound();
                    return;
                }
                Ok(Some(event)) => {
                    let seen = match event {
                        Event::Text(t) => {
                            assert!(std::str::from_utf8(t.as_bytes()).is_ok(), "text not UTF-8");
                            assert!(t.len() <= MAX_MESSAGE, "text of {} bytes", t.len());
                            Seen::Text(t.as_bytes().to_vec())
                        }
                        Event::Binary(b) => {
                            assert!(b.len() <= MAX_MESSAGE, "binary of {} bytes", b.len());
                            Seen::Binary(b.to_vec())
                        }
                        Event::Ping(p) => {
                            assert!(p.len() <= MAX_CONTROL_PAYLOAD);
                            if state_before == State::Open {
                                self.pings_open.push(p.to_vec());
                            }
                            Seen::Ping(p.to_vec())
                        }
                        Event::Pong(p) => {
                            assert!(p.len() <= MAX_CONTROL_PAYLOAD);
                            Seen::Pong(p.to_vec())
                        }
                        Event::Close(f) => {
                            self.done = true;
                            assert_eq!(self.conn.state(), State::Closed);
                            assert_eq!(self.conn.close_received(), Some(&f));
                            if f.code != CloseCode::Abruptly {
                                assert!(f.reason.len() <= 123);
                            }
                            Seen::Close(f)
                        }
                    };
                    self.seen.push(seen);
                }
                Err(e) => {
                    self.done = true;
                    assert_eq!(self.conn.state(), State::Closed);
                    assert_eq!(self.conn.error(), Some(&e));
                    let sent = self
                        .conn
                        .close_sent()
                        .expect("a close frame after an error");
                    assert_eq!(sent.code, e.close_code(), "close code for {e:?}");
                    self.seen.push(Seen::Error(e));
                }
            }
            self.check_output_bound();
        }
        panic!("next_event never returned Ok(None)");
    }

    fn check_output_bound(&self) {
        let pending = self.conn.pending_output();
        assert!(
            pending <= MAX_PENDING,
            "{pending} bytes of output pending with nothing sent by the application"
        );
    }

    /// Writes up to `n` bytes of output, in chunks, checking the views.
    pub fn write_output(&mut self, mut n: usize) {
        while n > 0 {
            let pending = self.conn.pending_output();
            let first_slice = {
                let mut slots = [std::io::IoSlice::new(&[]); 8];
                let filled = self.conn.transmit_slices(&mut slots);
                let total: usize = slots[..filled].iter().map(|s| s.len()).sum();
                if filled < slots.len() {
                    assert_eq!(total, pending, "transmit_slices covers all the output");
                } else {
                    assert!(total <= pending);
                }
                slots[..filled].first().map(|s| s.to_vec())
            };
            let Some(chunk) = self.conn.transmit_chunk() else {
                assert_eq!(pending, 0, "no chunk but {pending} bytes pending");
                assert_eq!(first_slice, None);
                return;
            };
            assert!(!chunk.is_empty(), "empty chunk");
            assert_eq!(
                Some(chunk),
                first_slice.as_deref(),
                "chunk is the first slice"
            );
            let take = chunk.len().min(n);
            self.written.extend_from_slice(&chunk[..take]);
            self.conn.advance_transmit(take);
            assert_eq!(self.conn.pending_output(), pending - take);
            n -= take;
        }
    }

    /// The frames written, decoded and unmasked, after writing everything.
    pub fn finish_output(&mut self) -> Vec<(FrameHeader, Vec<u8>)> {
        self.write_output(usize::MAX);
        assert_eq!(self.conn.pending_output(), 0);
        let mut frames = Vec::new();
        let mut rest = &self.written[..];
        while !rest.is_empty() {
            let (h, n) = FrameHeader::decode(rest)
                .expect("our output decodes")
                .expect("our output holds whole frames");
            let end = n + h.payload_len as usize;
            assert!(end <= rest.len(), "truncated frame in our output");
            let mut payload = rest[n..end].to_vec();
            if let Some(key) = h.mask {
                apply_mask(&mut payload, key);
            }
            frames.push((h, payload));
            rest = &rest[end..];
        }
        frames
    }

    /// Checks the output as a whole: well-formed control frames, the close
    /// frame last and carrying the right code, pongs answering pings.
    pub fn check_final_output(&mut self) -> Vec<(FrameHeader, Vec<u8>)> {
        let frames = self.finish_output();
        let mut closes = 0;
        let mut pongs = Vec::new();
        for (i, (h, payload)) in frames.iter().enumerate() {
            assert!(h.fin && !h.rsv1 && !h.rsv2 && !h.rsv3, "{h:?}");
            assert_eq!(
                h.mask.is_some(),
                self.role == Role::Client,
                "masking of {h:?}"
            );
            assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
            match h.opcode {
                OpCode::Pong => pongs.push(payload.clone()),
                OpCode::Close => {
                    closes += 1;
                    assert_eq!(i, frames.len() - 1, "close frame is not the last");
                    let parsed = CloseFrame::parse(payload).expect("our close frame parses");
                    let expected = self.conn.close_sent().expect("close_sent set");
                    match parsed {
                        None => assert_eq!(expected.code, CloseCode::NoReason),
                        Some(f) => assert_eq!(&f, expected),
                    }
                }
                other => panic!("wrote a {other:?} frame with nothing sent"),
            }
        }
        // Pongs answer pings received while open, in order, the latest always.
        let mut pings = self.pings_open.iter();
        for pong in &pongs {
            assert!(
                pings.any(|p| p == pong),
                "pong {pong:?} answers no ping, or out of order"
            );
        }
        assert_eq!(
            pongs.last(),
            self.pings_open.last(),
            "latest ping unanswered"
        );
        if !self.drained_early {
            // Nothing written until now: the first MAX_QUEUED_PONGS - 1 pings
            // are answered one by one, then only the latest.
            let n = self.pings_open.len();
            let mut expected = self.pings_open.clone();
            if n > MAX_QUEUED_PONGS {
                expected.drain(MAX_QUEUED_PONGS - 1..n - 1);
            }
            assert_eq!(pongs, expected, "pongs for {n} pings");
        }
        match self.seen.last() {
            Some(Seen::Error(e)) => {
                assert_eq!(closes, 1, "error {e:?} without a close frame");
                let (_, payload) = frames.last().unwrap();
                let f = CloseFrame::parse(payload)
                    .unwrap()
                    .expect("close with a code");
                assert_eq!(f.code, e.close_code(), "close code for {e:?}");
            }
            Some(Seen::Close(f)) if f.code != CloseCode::Abruptly => {
                assert_eq!(closes, 1, "peer's close not answered");
                let (_, payload) = frames.last().unwrap();
                match CloseFrame::parse(payload).unwrap() {
                    None => assert_eq!(f.code, CloseCode::NoReason),
                    Some(echo) => assert_eq!(echo.code, f.code, "close code not echoed"),
                }
            }
            _ => assert_eq!(closes, 0, "a close frame nobody asked for"),
        }
        frames
    }
}

/// The agreement a connection target runs with, from two input bytes.
pub fn agreed_from(flags_byte: u8, bits: u8) -> Agreed {
    Agreed {
        server_no_context_takeover: flags_byte & flags::SERVER_NO_CONTEXT_TAKEOVER != 0,
        client_no_context_takeover: flags_byte & flags::CLIENT_NO_CONTEXT_TAKEOVER != 0,
        server_max_window_bits: 8 + (bits & 7),
        client_max_window_bits: 8 + ((bits >> 3) & 7),
        threshold: 0,
        level: 1 + u32::from(bits >> 6),
    }
}

/// Delivers a wire in pieces of the sizes given, cyclically.
struct Pieces {
    sizes: Vec<usize>,
    next: usize,
    /// The wire not yet delivered is `pending[start..]`.
    pending: Vec<u8>,
    start: usize,
}

/// The connection targets: `[flags][window bits][k][k split sizes][body]`,
/// the body raw bytes or structured ops (see [`ops`]).
pub fn run_connection(role: Role, data: &[u8]) {
    let mut input = Input::new(data);
    let fl = input.byte();
    let bits = input.byte();
    let k = usize::from(input.byte() % 8) + 1;
    // Pieces of 1-192 bytes, or multiples of 4 KiB up to 256 KiB.
    let sizes: Vec<usize> = (0..k)
        .map(|_| match input.byte() {
            b @ 0..=191 => usize::from(b) + 1,
            b => usize::from(b - 191) * 4096,
        })
        .collect();
    // The peer's window comes from the input; ours is 8 bits, so that our
    // codec holds no compressor (zlib cannot compress with 8 bits): a
    // connection that only receives never uses it, and it is costly to
    // allocate on every run.
    let agreed = (fl & flags::DEFLATE != 0).then(|| {
        let mut a = agreed_from(fl, bits);
        match role {
            Role::Server => a.server_max_window_bits = 8,
            Role::Client => a.client_max_window_bits = 8,
        }
        a
    });
    let drain = fl & flags::DRAIN != 0;

    let mut split = Driven::new(role, agreed);
    let mut pieces = Pieces {
        sizes,
        next: 0,
        pending: Vec::new(),
        start: 0,
    };
    let mut wire = Vec::new();

    let deliver = |d: &mut Driven, pieces: &mut Pieces, all: bool| loop {
        let size = pieces.sizes[pieces.next];
        let left = pieces.pending.len() - pieces.start;
        if left == 0 || (!all && left < size) {
            if left == 0 {
                pieces.pending.clear();
                pieces.start = 0;
            }
            return;
        }
        let end = pieces.start + size.min(left);
        pieces.next = (pieces.next + 1) % pieces.sizes.len();
        d.conn.receive(&pieces.pending[pieces.start..end]);
        pieces.start = end;
        d.drain_events();
        if drain {
            d.drained_early = true;
            d.write_output(size * 3);
            d.drain_events();
        }
    };

    if fl & flags::STRUCTURED == 0 {
        let body = input.rest();
        wire.extend_from_slice(body);
        pieces.pending.extend_from_slice(body);
        deliver(&mut split, &mut pieces, true);
    } else {
        // The peer's compressor, for frames marked OP_COMPRESS.
        let mut peer = agreed.map(|a| Codec::new(&a, role == Role::Client));
        let peer_masks = role == Role::Server;
        let mut scratch = Vec::new();
        let mut n_ops = 0;
        while !input.is_empty() && n_ops < 4096 {
            n_ops += 1;
            let op = input.byte();
            let len = usize::from(input.byte());
            let mut payload = input.take(len).to_vec();
            if op & ops::OP_BIG != 0 {
                payload = payload.repeat(1024);
            }
            let key = [op, len as u8, 0x5a, 0xa5];
            let bytes = match op & 0x0F {
                ops::RAW => payload,
                ops::DRAIN => {
                    split.drained_early = true;
                    split.write_output(len * 4);
                    split.drain_events();
                    continue;
                }
                ops::FLUSH => {
                    deliver(&mut split, &mut pieces, true);
                    continue;
                }
                ops::WRONG_MASK => {
                    encode_frame(OpCode::Binary, true, false, &payload, !peer_masks, key)
                }
                n => {
                    let Ok(opcode) = OpCode::from_u8(n) else {
                        continue;
                    };
                    let fin = op & ops::OP_FIN != 0 || opcode.is_control();
                    if op & ops::OP_COMPRESS != 0 && !opcode.is_control() {
                        if let Some(codec) = peer.as_mut() {
                            codec.compress(&payload, fin, &mut scratch);
                            payload = std::mem::take(&mut scratch);
                        }
                    }
                    if opcode.is_control() {
                        payload.truncate(MAX_CONTROL_PAYLOAD);
                    }
                    encode_frame(
                        opcode,
                        fin,
                        op & ops::OP_RSV1 != 0,
                        &payload,
                        peer_masks,
                        key,
                    )
                }
            };
            wire.extend_from_slice(&bytes);
            pieces.pending.extend_from_slice(&bytes);
            deliver(&mut split, &mut pieces, false);
        }
        deliver(&mut split, &mut pieces, true);
    }
    if fl & flags::EOF != 0 {
        split.conn.receive_eof();
    }
    split.drain_events();
    if fl & flags::EOF != 0 {
        // The transport ended: some close event or error was reported.
        assert!(split.done, "end of transport reported nothing");
        assert_eq!(split.conn.state(), State::Closed);
    }
    let split_frames = split.check_final_output();

    // The same wire delivered at once must give the same events.
    let mut whole = Driven::new(role, agreed);
    whole.conn.receive(&wire);
    if fl & flags::EOF != 0 {
        whole.conn.receive_eof();
    }
    whole.drain_events();
    compare_events(&split.seen, &whole.seen, agreed.is_some());
    let whole_frames = whole.check_final_output();
    if !split.drained_early && split.seen == whole.seen {
        let strip = |f: &[(FrameHeader, Vec<u8>)]| {
            f.iter()
                .map(|(h, p)| (h.opcode, p.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&split_frames), strip(&whole_frames), "outputs differ");
    }
}

/// The inflater's error for a final deflate block followed by more data in
/// the same piece: with a piece boundary right after the final block the data
/// inflates as a new stream instead (reported finding), so the two
/// deliveries of one wire may differ there.
pub fn is_data_after_final_block(e: &ProtocolError) -> bool {
    matches!(e, ProtocolError::Extension(s) if s == "data after the final block")
}

/// Events of two deliveries of one wire must agree. Errors must agree in kind
/// and close code without compression; with it, which check fails first (UTF-8
/// of the inflated bytes, the limit, corrupt data) depends on how much
/// arrived at once, so only the presence of an error must agree.
fn compare_events(split: &[Seen], whole: &[Seen], deflate: bool) {
    for (a, b) in split.iter().zip(whole) {
        match (a, b) {
            (Seen::Error(x), Seen::Error(y)) if deflate => {
                let _ = (x, y);
                return;
            }
            (Seen::Error(x), Seen::Error(y)) => {
                assert_eq!(
                    std::mem::discriminant(x),
                    std::mem::discriminant(y),
                    "split {x:?}, whole {y:?}"
                );
                assert_eq!(x.close_code(), y.close_code());
            }
            (_, Seen::Error(e)) | (Seen::Error(e), _)
                if deflate && is_data_after_final_block(e) =>
            {
                return;
            }
            _ => assert_eq!(a, b, "split and whole deliveries differ"),
        }
    }
    assert_eq!(split.len(), whole.len(), "split {split:?}\nwhole {whole:?}");
}
