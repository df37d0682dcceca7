//! Property tests (proptest): encode → decode round trips of frame headers,
//! close payloads and handshake headers; messages reassembled whatever their
//! fragmentation, compression and TCP split points; masking and incremental
//! UTF-8 validation against their definitions.
//!
//! Case counts are tuned to keep the file under ~30 s in a debug build; set
//! `PROPTEST_CASES` to run more.

use dialtone_proto::close::MAX_REASON_LEN;
use dialtone_proto::deflate::{self, Agreed, Deflate};
use dialtone_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use dialtone_proto::handshake::{accept_response, check_request, parse_request, parse_response};
use dialtone_proto::http::HeaderMap;
use dialtone_proto::mask::{apply_mask, apply_mask_at};
use dialtone_proto::utf8::Utf8Validator;
use dialtone_proto::{
    Bytes, ClientHandshake, CloseCode, CloseFrame, Config, Connection, Event, MessageKind,
    ProtocolError, Role,
};
use proptest::collection::vec;
use proptest::prelude::*;

// ----- strategies -----

fn opcode() -> impl Strategy<Value = OpCode> {
    prop_oneof![
        Just(OpCode::Continuation),
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Close),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
    ]
}

/// Payload lengths around each of the three length forms' edges.
fn payload_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=125,
        126u64..=0xFFFF,
        0x1_0000u64..=(1 << 63) - 1,
        prop::sample::select(vec![
            124,
            125,
            126,
            127,
            0xFFFE,
            0xFFFF,
            0x1_0000,
            (1 << 63) - 1
        ]),
    ]
}

fn header() -> impl Strategy<Value = FrameHeader> {
    (
        opcode(),
        any::<[bool; 4]>(),
        any::<Option<[u8; 4]>>(),
        payload_len(),
    )
        .prop_map(
            |(opcode, [fin, rsv1, rsv2, rsv3], mask, payload_len)| FrameHeader {
                fin,
                rsv1,
                rsv2,
                rsv3,
                opcode,
                mask,
                payload_len,
            },
        )
}

/// Every code an endpoint may put in a close frame (RFC 6455 §7.4).
fn sendable_code() -> impl Strategy<Value = CloseCode> {
    prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999].prop_map(CloseCode::from_u16)
}

/// A string of at most `max` bytes, cut at a character boundary.
fn truncated(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn close_reason() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z ]{0,130}", "(κόσμε|𝄞|x){0,60}",]
        .prop_map(|s| truncated(s, MAX_REASON_LEN))
}

/// A permessage-deflate agreement within the RFC's ranges.
fn agreed() -> impl Strategy<Value = Agreed> {
    (any::<[bool; 2]>(), 8u8..=15, 8u8..=15, 0usize..64, 0u32..=9).prop_map(
        |([snct, cnct], server_bits, client_bits, threshold, level)| Agreed {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            threshold,
            level,
        },
    )
}

#[derive(Clone, Debug)]
enum Message {
    Text(String),
    Binary(Vec<u8>),
}

impl Message {
    fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }
    fn bytes(&self) -> &[u8] {
        match self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<String>().prop_map(Message::Text),
        "(κόσμε|𝄞|hello |\u{10FFFF}|x){0,200}".prop_map(Message::Text),
        vec(any::<u8>(), 0..700).prop_map(Message::Binary),
        (vec(any::<u8>(), 1..8), 0usize..400).prop_map(|(unit, n)| Message::Binary(unit.repeat(n))),
        // Past SHARED_PAYLOAD_MIN: a server sends these without copying.
        (vec(any::<u8>(), 4..8), 1024usize..1600)
            .prop_map(|(unit, n)| Message::Binary(unit.repeat(n))),
    ]
}

// ----- helpers -----

/// Takes everything `conn` wants to write.
fn take_output(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = conn.transmit_chunk() {
        let chunk = chunk.to_vec();
        conn.advance_transmit(chunk.len());
        out.extend(chunk);
    }
    out
}

/// Delivers `wire` to `conn` in pieces of the sizes given (cyclically),
/// collecting every event; panics on a protocol error.
fn deliver(conn: &mut Connection, wire: &[u8], sizes: &[usize]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    loop {
        while let Some(event) = conn.next_event().expect("no protocol error") {
            events.push(event);
        }
        if rest.is_empty() {
            return events;
        }
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        conn.receive(&rest[..n]);
        rest = &rest[n..];
    }
}

fn peer(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

/// How the sender cuts a message into frames.
#[derive(Clone, Debug)]
enum Framing {
    /// `send_message`: frames of at most `max_send_frame_size` bytes.
    Message,
    /// `send_message_uncompressed`, likewise.
    Uncompressed,
    /// `send_message_bytes`, likewise.
    Shared,
    /// `send_fragment` at these cut points (possibly empty pieces), with a
    /// ping between the fragments if set.
    Fragments(Vec<usize>, bool),
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::Message),
        Just(Framing::Uncompressed),
        Just(Framing::Shared),
        (vec(0usize..1000, 0..6), any::<bool>()).prop_map(|(c, p)| Framing::Fragments(c, p)),
    ]
}

fn send(conn: &mut Connection, msg: &Message, framing: &Framing) -> usize {
    let data = msg.bytes();
    match framing {
        Framing::Message => conn.send_message(msg.kind(), data).unwrap(),
        Framing::Uncompressed => conn.send_message_uncompressed(msg.kind(), data).unwrap(),
        Framing::Shared => conn
            .send_message_bytes(msg.kind(), &Bytes::copy_from_slice(data))
            .unwrap(),
        Framing::Fragments(cuts, ping) => {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut start = 0;
            let mut pings = 0;
            for cut in cuts {
                conn.send_fragment(msg.kind(), &data[start..cut], false)
                    .unwrap();
                start = cut;
                if *ping {
                    conn.send_ping(b"between").unwrap();
                    pings += 1;
                }
            }
            conn.send_fragment(msg.kind(), &data[start..], true)
                .unwrap();
            return pings;
        }
    }
    0
}

// ----- properties -----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// RFC 6455 §5.2: any header encodes in the minimal length form and
    /// decodes to itself; every strict prefix is "not yet complete".
    #[test]
    fn frame_header_round_trips(h in header()) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut buf);
        prop_assert_eq!(n, h.encoded_len());
        let minimal = match h.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        } + if h.mask.is_some() { 4 } else { 0 };
        prop_assert_eq!(n, minimal);
        prop_assert_eq!(FrameHeader::decode(&buf[..n]), Ok(Some((h, n))));
        for short in 0..n {
            prop_assert_eq!(FrameHeader::decode(&buf[..short]), Ok(None));
        }
    }

    /// Any bytes: a decoded header re-encodes to a header that decodes the same.
    #[test]
    fn decoded_headers_re_encode(bytes in vec(any::<u8>(), 0..16)) {
        if let Ok(Some((h, n))) = FrameHeader::decode(&bytes) {
            prop_assert!(n <= bytes.len());
            let mut buf = [0u8; MAX_HEADER_LEN];
            let m = h.encode(&mut buf);
            prop_assert!(m <= n);
            prop_assert_eq!(FrameHeader::decode(&buf[..m]), Ok(Some((h, m))));
        }
    }

    /// RFC 6455 §5.3: masking is its own inverse, and masking in pieces at
    /// their offsets equals masking at once and the definition.
    #[test]
    fn masking_twice_is_the_identity_and_pieces_agree(
        data in vec(any::<u8>(), 0..300),
        key in any::<[u8; 4]>(),
        start in 0usize..8,
        cuts in vec(0usize..300, 0..8),
    ) {
        let mut twice = data.clone();
        apply_mask(&mut twice, key);
        apply_mask(&mut twice, key);
        prop_assert_eq!(&twice, &data);

        let naive: Vec<u8> =
            data.iter().enumerate().map(|(i, b)| b ^ key[(start + i) % 4]).collect();
        let mut whole = data.clone();
        prop_assert_eq!(apply_mask_at(&mut whole, key, start), start + data.len());
        prop_assert_eq!(&whole, &naive);

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
        cuts.push(data.len());
        cuts.sort_unstable();
        let mut pieces = data.clone();
        let (mut from, mut offset) = (0, start);
        for cut in cuts {
            offset = apply_mask_at(&mut pieces[from..cut], key, offset);
            from = cut;
        }
        prop_assert_eq!(&pieces, &naive);
    }

    /// Incremental validation at any split points agrees with
    /// `std::str::from_utf8`, and fails on the piece where the error becomes
    /// certain, never before the first bad byte's piece.
    #[test]
    fn incremental_utf8_agrees_with_std(
        text in prop_oneof![
            any::<String>().prop_map(String::into_bytes),
            "(κόσμε|𝄞|a|\u{10FFFF}|\u{7FF}|\u{FFFF}){0,20}".prop_map(String::into_bytes),
        ],
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        truncate in any::<prop::sample::Index>(),
        cut in any::<bool>(),
        splits in vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut bytes = text;
        if !bytes.is_empty() {
            for (i, b) in edits {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if cut {
                bytes.truncate(truncate.index(bytes.len() + 1));
            }
        }
        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();

        let mut v = Utf8Validator::new();
        let mut from = 0;
        let mut failed_at = None;
        for &to in &cuts {
            if v.feed(&bytes[from..to]).is_err() {
                failed_at = Some((from, to));
                break;
            }
            from = to;
        }
        let verdict = failed_at.is_none() && v.finish().is_ok();
        let std = std::str::from_utf8(&bytes);
        prop_assert_eq!(verdict, std.is_ok(), "{:?} cut at {:?}", bytes, cuts);
        if let Err(e) = std {
            match (e.error_len(), failed_at) {
                // Truncated at the end: only `finish` may tell.
                (None, failed) => prop_assert_eq!(failed, None),
                (Some(len), Some((from, to))) => {
                    // Certain at the bad byte itself, or at the byte after
                    // an incomplete sequence: at `valid_up_to + len` at the
                    // latest.
                    let certain = e.valid_up_to() + len;
                    prop_assert!(from <= certain,
                        "failed late: piece {}..{} for certainty at {}", from, to, certain);
                    prop_assert!(e.valid_up_to() < to, "failed early: piece {}..{}", from, to);
                }
                (Some(_), None) => prop_assert!(false, "error reported by finish only"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// RFC 6455 §5.5.1: any sendable code with any reason of at most 123
    /// bytes round-trips through the payload, and through two connections.
    #[test]
    fn close_payload_round_trips(code in sendable_code(), reason in close_reason()) {
        let frame = CloseFrame::new(code, reason);
        prop_assert!(frame.check_sendable().is_ok());
        let payload = frame.to_payload();
        prop_assert!(payload.len() <= 125);
        prop_assert_eq!(CloseFrame::parse(&payload), Ok(Some(frame.clone())));

        let mut client = Connection::new(Role::Client, Config::default());
        let mut server = Connection::new(Role::Server, Config::default());
        client.close(frame.clone()).unwrap();
        let wire = take_output(&mut client);
        let events = deliver(&mut server, &wire, &[7]);
        prop_assert_eq!(events, vec![Event::Close(frame.clone())]);
        // The server echoes the code (§5.5.1).
        let echo = take_output(&mut server);
        let events = deliver(&mut client, &echo, &[3]);
        match &events[..] {
            [Event::Close(f)] => prop_assert_eq!(f.code, code),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    /// A code that may not be sent is refused by the sender and fails the
    /// receiver with 1002.
    #[test]
    fn unsendable_codes_are_refused(n in any::<u16>(), reason in "[a-z]{0,10}") {
        let code = CloseCode::from_u16(n);
        prop_assume!(!code.is_sendable());
        let frame = CloseFrame::new(code, reason);
        let mut payload = n.to_be_bytes().to_vec();
        payload.extend_from_slice(frame.reason.as_bytes());
        prop_assert_eq!(CloseFrame::parse(&payload), Err(ProtocolError::InvalidCloseCode(n)));
        if code != CloseCode::NoReason {
            let mut client = Connection::new(Role::Client, Config::default());
            prop_assert!(client.close(frame).is_err());
        }
    }

    /// RFC 6455 §4: the server parses the client's request to the same
    /// subprotocols, extra headers, resource and host; its 101 with one of
    /// them (and permessage-deflate, if offered) satisfies the client.
    #[test]
    fn handshake_headers_round_trip(
        host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
        resource in "/[a-zA-Z0-9/?=&._~%-]{0,30}",
        protocols in vec("[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}", 0..5),
        headers in vec(("x-[a-z0-9-]{1,10}", "[!-~]([ !-~]{0,20}[!-~])?"), 0..5),
        origin in proptest::option::of("https?://[a-z.]{1,20}"),
        chosen in any::<prop::sample::Index>(),
        offer in proptest::option::of((any::<[bool; 2]>(), proptest::option::of(8u8..=15), proptest::option::of(8u8..=15))),
    ) {
        let mut client = ClientHandshake::new(host.clone(), resource.clone());
        for p in &protocols {
            client.protocol(p.clone());
        }
        for (name, value) in &headers {
            client.header(name, value).unwrap();
        }
        if let Some(o) = &origin {
            client.origin(o.clone());
        }
        let offer = offer.map(|([snct, cnct], sbits, cbits)| Deflate {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
            ..Deflate::default()
        });
        if let Some(d) = &offer {
            client.deflate(d.clone());
        }
        let bytes = client.to_bytes();
        let (req, len) = parse_request(&bytes, bytes.len()).unwrap().expect("complete");
        prop_assert_eq!(len, bytes.len());
        prop_assert_eq!(req.uri().to_string(), resource);
        prop_assert_eq!(req.headers()["host"].to_str().unwrap(), host);
        for (name, _) in &headers {
            let got: Vec<&str> =
                req.headers().get_all(name.as_str()).iter().map(|v| v.to_str().unwrap()).collect();
            let want: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            prop_assert_eq!(got, want);
        }
        prop_assert_eq!(
            req.headers().get("origin").map(|v| v.to_str().unwrap().to_owned()),
            origin
        );
        let hs = check_request(&req).unwrap();
        prop_assert_eq!(&hs.protocols, &protocols);
        let negotiated = deflate::negotiate(&[Deflate::default()], &hs.extensions);
        prop_assert_eq!(negotiated.is_some(), offer.is_some());

        let protocol = (!protocols.is_empty()).then(|| protocols[chosen.index(protocols.len())].as_str());
        let ext = negotiated.as_ref().map(|(e, _)| e.to_string());
        let resp = accept_response(&hs.accept, protocol, ext.as_deref(), &HeaderMap::new());
        let (head, n) = parse_response(&resp, resp.len()).unwrap().expect("complete");
        prop_assert_eq!(n, resp.len());
        let got = client.check_response(&head).unwrap();
        prop_assert_eq!(got.protocol.as_deref(), protocol);
        let agreed = negotiated.map(|(_, a)| a);
        let strip = |a: Option<Agreed>| a.map(|a| (
            a.server_no_context_takeover,
            a.client_no_context_takeover,
            a.server_max_window_bits,
            a.client_max_window_bits,
        ));
        prop_assert_eq!(strip(got.deflate), strip(agreed));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any fragmentation of any messages (text and binary, with and without
    /// permessage-deflate, any frame sizes, pings between fragments, any TCP
    /// split points) reassembles to the same messages, in order.
    #[test]
    fn any_fragmentation_reassembles(
        messages in vec((message(), framing()), 1..4),
        sender_role in prop_oneof![Just(Role::Client), Just(Role::Server)],
        agreed in proptest::option::of(agreed()),
        max_send in 1usize..300,
        splits in vec(1usize..200, 1..6),
    ) {
        let config = Config::default().max_send_frame_size(max_send);
        let mut sender = Connection::with_deflate(sender_role, config, agreed);
        let mut receiver = Connection::with_deflate(peer(sender_role), Config::default(), agreed);
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        let mut sent_pings = 0;
        for (msg, framing) in &messages {
            sent_pings += send(&mut sender, msg, framing);
            wire.extend(take_output(&mut sender));
            expected.push(match msg {
                Message::Text(s) => Event::Text(s.clone().into()),
                Message::Binary(b) => Event::Binary(b.clone().into()),
            });
        }
        let events = deliver(&mut receiver, &wire, &splits);
        let pings = events.iter().filter(|e| matches!(e, Event::Ping(p) if p == "between")).count();
        prop_assert_eq!(pings, sent_pings);
        let data: Vec<Event> =
            events.into_iter().filter(|e| !matches!(e, Event::Ping(_))).collect();
        prop_assert_eq!(data, expected);
    }
}

/// One step of [`partial_writes_never_put_a_control_frame_inside_a_data_frame`].
#[derive(Clone, Debug)]
enum Step {
    /// Queue a binary message of this size (shared from 4 KiB up).
    Send(usize),
    /// Queue a ping.
    Ping,
    /// Write at most this many bytes, over several slices.
    Write(usize),
}

/// Writes at most `limit` bytes of `conn`'s output, as a vectored write
/// that stops short would.
fn write_some(conn: &mut Connection, limit: usize, wire: &mut Vec<u8>) {
    let mut slices = [std::io::IoSlice::new(&[]); 8];
    let n = conn.transmit_slices(&mut slices);
    let mut taken = 0;
    for slice in &slices[..n] {
        let take = slice.len().min(limit - taken);
        wire.extend_from_slice(&slice[..take]);
        taken += take;
    }
    conn.advance_transmit(taken);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// RFC 6455 §5.4: whatever was written when a ping is queued (part of
    /// a header, of a copied or of a shared payload, several frames), the
    /// ping goes between data frames, never inside one; data frames and
    /// pings each keep their order.
    #[test]
    fn partial_writes_never_put_a_control_frame_inside_a_data_frame(
        steps in vec(prop_oneof![
            (0usize..9000).prop_map(Step::Send),
            Just(Step::Ping),
            (1usize..6000).prop_map(Step::Write),
        ], 1..30),
        max_send in 1usize..5000,
    ) {
        let mut server = Connection::new(Role::Server, Config::default().max_send_frame_size(max_send));
        let (mut wire, mut messages, mut pings) = (Vec::new(), Vec::new(), Vec::new());
        for step in steps {
            match step {
                Step::Send(len) => {
                    let data: Vec<u8> = (0..len).map(|i| (i + messages.len()) as u8).collect();
                    server.send_message_bytes(MessageKind::Binary, &Bytes::from(data.clone())).unwrap();
                    messages.push(Event::Binary(data.into()));
                }
                Step::Ping => {
                    let payload = pings.len().to_string();
                    server.send_ping(payload.as_bytes()).unwrap();
                    pings.push(Event::Ping(payload.into()));
                }
                Step::Write(limit) => write_some(&mut server, limit, &mut wire),
            }
        }
        let pending = server.pending_output();
        let before = wire.len();
        wire.extend(take_output(&mut server));
        prop_assert_eq!(wire.len() - before, pending);
        let mut client = Connection::new(Role::Client, Config::default());
        let events = deliver(&mut client, &wire, &[wire.len().max(1)]);
        let (got_pings, got_data): (Vec<Event>, Vec<Event>) =
            events.into_iter().partition(|e| matches!(e, Event::Ping(_)));
        prop_assert_eq!(got_data, messages);
        prop_assert_eq!(got_pings, pings);
    }
}
