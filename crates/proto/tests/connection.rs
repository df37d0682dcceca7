//! The connection state machine, rule by rule (RFC 6455 §5–§8). Each test
//! builds frames by hand, feeds them to a `Connection` and checks the events
//! and the exact bytes it answers with.

use std::io::IoSlice;

use dialtone_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use dialtone_proto::mask::apply_mask;
use dialtone_proto::{
    Bytes, CloseCode, CloseFrame, Config, Connection, Error, Event, MessageKind, ProtocolError,
    Role, State, SHARED_PAYLOAD_MIN,
};

/// Encodes one frame; masked (as a client sends) when `mask` is set.
fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut h = FrameHeader::new(opcode, payload.len() as u64);
    h.fin = fin;
    if mask {
        h.mask = Some([0xa1, 0xb2, 0xc3, 0xd4]);
    }
    let mut head = [0; MAX_HEADER_LEN];
    let n = h.encode(&mut head);
    let mut out = head[..n].to_vec();
    let mut body = payload.to_vec();
    if let Some(key) = h.mask {
        apply_mask(&mut body, key);
    }
    out.extend(body);
    out
}

/// A frame as a client sends it to a server.
fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, payload, true)
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

/// Everything the connection wants to write, decoded into frames.
fn written(conn: &mut Connection) -> Vec<(FrameHeader, Vec<u8>)> {
    written_after(conn, Vec::new())
}

/// Like `written`, for a connection whose first `bytes` were already taken.
fn written_after(conn: &mut Connection, mut bytes: Vec<u8>) -> Vec<(FrameHeader, Vec<u8>)> {
    while let Some(chunk) = conn.transmit_chunk() {
        let chunk = chunk.to_vec();
        conn.advance_transmit(chunk.len());
        bytes.extend(chunk);
    }
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let (h, n) = FrameHeader::decode(rest).unwrap().unwrap();
        let end = n + h.payload_len as usize;
        let mut payload = rest[n..end].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key);
        }
        frames.push((h, payload));
        rest = &rest[end..];
    }
    frames
}

/// Every event the connection can decode now; stops at an error.
fn drain(conn: &mut Connection) -> Result<Vec<Event>, ProtocolError> {
    let mut events = Vec::new();
    while let Some(event) = conn.next_event()? {
        events.push(event);
    }
    Ok(events)
}

/// Feeds bytes and decodes every event they hold.
fn feed(conn: &mut Connection, bytes: &[u8]) -> Result<Vec<Event>, ProtocolError> {
    conn.receive(bytes);
    drain(conn)
}

fn events(conn: &mut Connection) -> Vec<Event> {
    drain(conn).expect("no protocol error")
}

/// Feeds `bytes` to a server and checks it fails with `error` and answers
/// with a close frame carrying `code`.
fn assert_fails_with(bytes: &[u8], error: ProtocolError, code: CloseCode) {
    let mut s = server();
    assert_eq!(feed(&mut s, bytes).map(|_| ()), Err(error.clone()));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.error(), Some(&error));
    let out = written(&mut s);
    let (h, payload) = out.last().expect("a close frame");
    assert_eq!(h.opcode, OpCode::Close);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code.as_u16());
    assert!(std::str::from_utf8(&payload[2..]).is_ok());
    assert!(
        s.should_close_transport(),
        "a server closes TCP after failing"
    );
}

#[test]
fn delivers_text_and_binary_messages() {
    let mut s = server();
    let mut bytes = client_frame(OpCode::Text, true, "κόσμε".as_bytes());
    bytes.extend(client_frame(OpCode::Binary, true, &[0, 255, 7]));
    s.receive(&bytes);
    assert_eq!(
        events(&mut s),
        [
            Event::Text("κόσμε".into()),
            Event::Binary(vec![0, 255, 7].into())
        ]
    );
}

#[test]
fn reassembles_fragmented_message_fed_one_byte_at_a_time() {
    // §5.4: fragments in order, control frames may be interleaved.
    let mut bytes = client_frame(OpCode::Text, false, b"Hel");
    bytes.extend(client_frame(OpCode::Ping, true, b"p"));
    bytes.extend(client_frame(OpCode::Continuation, false, b""));
    bytes.extend(client_frame(OpCode::Continuation, true, "lo κ".as_bytes()));
    let mut s = server();
    for b in &bytes {
        s.receive(&[*b]);
    }
    assert_eq!(
        events(&mut s),
        [
            Event::Ping(b"p".to_vec().into()),
            Event::Text("Hello κ".into())
        ]
    );
}

#[test]
fn answers_ping_with_pong_of_same_payload() {
    // §5.5.2.
    let mut s = server();
    feed(&mut s, &client_frame(OpCode::Ping, true, b"are you there")).unwrap();
    let out = written(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.opcode, OpCode::Pong);
    assert_eq!(out[0].1, b"are you there");
    assert!(out[0].0.mask.is_none(), "servers never mask");
}

#[test]
fn client_masks_every_frame_with_fresh_keys() {
    // §5.3: a new unpredictable key per frame.
    let mut c = Connection::new(Role::Client, Config::default());
    c.send_text("a").unwrap();
    c.send_text("a").unwrap();
    let out = written(&mut c);
    assert!(out.iter().all(|(h, p)| h.mask.is_some() && p == b"a"));
    assert_ne!(out[0].0.mask, out[1].0.mask);
}

#[test]
fn fragments_large_outgoing_messages() {
    let mut c = Connection::new(Role::Client, Config::default().max_send_frame_size(4));
    c.send_binary(b"0123456789").unwrap();
    let out = written(&mut c);
    let shape: Vec<(OpCode, bool, &[u8])> =
        out.iter().map(|(h, p)| (h.opcode, h.fin, &p[..])).collect();
    assert_eq!(
        shape,
        [
            (OpCode::Binary, false, &b"0123"[..]),
            (OpCode::Continuation, false, &b"4567"[..]),
            (OpCode::Continuation, true, &b"89"[..]),
        ]
    );
    // And the other side puts them back together.
    let mut s = server();
    let mut raw = Vec::new();
    for (h, p) in &out {
        raw.extend(frame(h.opcode, h.fin, p, true));
    }
    s.receive(&raw);
    assert_eq!(
        events(&mut s),
        [Event::Binary(b"0123456789".to_vec().into())]
    );
}

#[test]
fn control_frames_go_ahead_of_queued_data_frames() {
    let mut s = Connection::new(Role::Server, Config::default().max_send_frame_size(2));
    s.send_binary(b"abcdef").unwrap();
    // Part of the first data frame is written: it must be finished first.
    let first = s.transmit_chunk().unwrap()[0];
    s.advance_transmit(1);
    feed(&mut s, &client_frame(OpCode::Ping, true, b"!")).unwrap();
    let out = written_after(&mut s, vec![first]);
    let ops: Vec<OpCode> = out.iter().map(|(h, _)| h.opcode).collect();
    assert_eq!(
        ops,
        [
            OpCode::Binary,
            OpCode::Pong,
            OpCode::Continuation,
            OpCode::Continuation
        ]
    );
}

#[test]
fn sends_fragments_piece_by_piece() {
    let mut s = server();
    s.send_fragment(MessageKind::Text, b"ab", false).unwrap();
    assert_eq!(s.send_text("x"), Err(Error::FragmentedMessageInProgress));
    s.send_ping(b"").unwrap();
    s.send_fragment(MessageKind::Text, b"c", true).unwrap();
    let ops: Vec<(OpCode, bool)> = written(&mut s)
        .iter()
        .map(|(h, _)| (h.opcode, h.fin))
        .collect();
    assert_eq!(
        ops,
        [
            (OpCode::Ping, true),
            (OpCode::Text, false),
            (OpCode::Continuation, true)
        ]
    );
}

#[test]
fn rejects_rsv_bits_without_extension() {
    // §5.2.
    let mut bytes = client_frame(OpCode::Text, true, b"x");
    bytes[0] |= 0x40;
    assert_fails_with(
        &bytes,
        ProtocolError::ReservedBitsSet,
        CloseCode::ProtocolError,
    );
    bytes[0] = (bytes[0] & !0x40) | 0x10;
    assert_fails_with(
        &bytes,
        ProtocolError::ReservedBitsSet,
        CloseCode::ProtocolError,
    );
}

#[test]
fn rejects_unknown_opcode() {
    // §5.2: opcodes 3–7 and B–F are reserved.
    let mut bytes = client_frame(OpCode::Binary, true, b"");
    bytes[0] = 0x80 | 0x0B;
    assert_fails_with(
        &bytes,
        ProtocolError::UnknownOpcode(0xB),
        CloseCode::ProtocolError,
    );
}

#[test]
fn rejects_unmasked_frame_from_client() {
    // §5.1.
    let bytes = frame(OpCode::Text, true, b"hi", false);
    assert_fails_with(
        &bytes,
        ProtocolError::UnmaskedFrame,
        CloseCode::ProtocolError,
    );
}

#[test]
fn rejects_masked_frame_from_server() {
    // §5.1.
    let mut c = Connection::new(Role::Client, Config::default());
    assert_eq!(
        feed(&mut c, &frame(OpCode::Text, true, b"hi", true)),
        Err(ProtocolError::MaskedFrame)
    );
    let out = written(&mut c);
    assert_eq!(out[0].0.opcode, OpCode::Close);
    assert!(
        out[0].0.mask.is_some(),
        "a client masks its close frame too"
    );
}

#[test]
fn rejects_control_frame_over_125_bytes() {
    // §5.5.
    let bytes = client_frame(OpCode::Ping, true, &[0; 126]);
    assert_fails_with(
        &bytes,
        ProtocolError::ControlFrameTooLong(126),
        CloseCode::ProtocolError,
    );
}

#[test]
fn rejects_fragmented_control_frame() {
    // §5.5.
    let bytes = client_frame(OpCode::Pong, false, b"x");
    assert_fails_with(
        &bytes,
        ProtocolError::FragmentedControlFrame,
        CloseCode::ProtocolError,
    );
}

#[test]
fn rejects_continuation_without_start() {
    // §5.4.
    let bytes = client_frame(OpCode::Continuation, true, b"x");
    assert_fails_with(
        &bytes,
        ProtocolError::UnexpectedContinuation,
        CloseCode::ProtocolError,
    );
}

#[test]
fn rejects_new_data_frame_inside_fragmented_message() {
    // §5.4.
    let mut bytes = client_frame(OpCode::Text, false, b"a");
    bytes.extend(client_frame(OpCode::Binary, true, b"b"));
    assert_fails_with(
        &bytes,
        ProtocolError::ExpectedContinuation,
        CloseCode::ProtocolError,
    );
}

#[test]
fn rejects_one_byte_close_payload() {
    // §5.5.1.
    let bytes = client_frame(OpCode::Close, true, &[3]);
    assert_fails_with(
        &bytes,
        ProtocolError::CloseTooShort,
        CloseCode::ProtocolError,
    );
}

#[test]
fn rejects_close_code_not_allowed_on_the_wire() {
    // §7.4.
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let bytes = client_frame(OpCode::Close, true, &code.to_be_bytes());
        assert_fails_with(
            &bytes,
            ProtocolError::InvalidCloseCode(code),
            CloseCode::ProtocolError,
        );
    }
}

#[test]
fn rejects_invalid_utf8_in_text_with_1007() {
    // §8.1.
    let bytes = client_frame(OpCode::Text, true, &[0xce, 0xba, 0xff]);
    assert_fails_with(
        &bytes,
        ProtocolError::InvalidUtf8,
        CloseCode::InconsistentData,
    );
}

#[test]
fn rejects_invalid_utf8_in_close_reason_with_1007() {
    // §5.5.1 / §8.1.
    let bytes = client_frame(OpCode::Close, true, &[0x03, 0xe8, 0xff]);
    assert_fails_with(
        &bytes,
        ProtocolError::InvalidUtf8InCloseReason,
        CloseCode::InconsistentData,
    );
}

#[test]
fn fails_fast_on_invalid_utf8_before_the_frame_ends() {
    // §8.1; Autobahn 6.4.3: the bad byte arrives, the frame is not complete.
    let mut payload = "κόσμε".as_bytes().to_vec();
    payload.extend([0xf4, 0x90, 0x80, 0x80]);
    payload.extend(b"more to come");
    let bytes = client_frame(OpCode::Text, true, &payload);
    let mut s = server();
    let head = 6; // 2-byte header + 4-byte mask
    feed(&mut s, &bytes[..head + 10]).unwrap();
    assert_eq!(
        feed(&mut s, &bytes[head + 10..head + 12]),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn fails_fast_on_invalid_utf8_in_a_non_final_fragment() {
    // §8.1; Autobahn 6.4.1: the message is not complete when it fails.
    let mut s = server();
    feed(
        &mut s,
        &client_frame(OpCode::Text, false, "κόσμε".as_bytes()),
    )
    .unwrap();
    assert_eq!(
        feed(
            &mut s,
            &client_frame(OpCode::Continuation, false, &[0xf4, 0x90])
        ),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn rejects_frame_over_limit_without_allocating() {
    // A header claiming 2^63 − 1 bytes: refused from the header alone.
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend(((1u64 << 63) - 1).to_be_bytes());
    bytes.extend([1, 2, 3, 4]);
    assert_fails_with(
        &bytes,
        ProtocolError::FrameTooBig {
            size: (1 << 63) - 1,
            limit: Config::DEFAULT_MAX_FRAME_SIZE,
        },
        CloseCode::TooBig,
    );
}

#[test]
fn rejects_message_over_limit_with_1009() {
    let mut s = Connection::new(Role::Server, Config::default().max_message_size(5));
    feed(&mut s, &client_frame(OpCode::Binary, false, b"123")).unwrap();
    assert_eq!(
        feed(&mut s, &client_frame(OpCode::Continuation, true, b"456")),
        Err(ProtocolError::MessageTooBig { size: 6, limit: 5 })
    );
    assert_eq!(written(&mut s)[0].1[..2], 1009u16.to_be_bytes());
}

#[test]
fn echoes_peer_close_code_and_closes_first_as_server() {
    // §5.5.1, §7.1.1: answer a close with a close, echoing the code; the
    // server closes the TCP connection first.
    let mut s = server();
    let payload = CloseFrame::new(CloseCode::GoingAway, "bye").to_payload();
    s.receive(&client_frame(OpCode::Close, true, &payload));
    assert_eq!(
        events(&mut s),
        [Event::Close(CloseFrame::new(CloseCode::GoingAway, "bye"))]
    );
    assert_eq!(s.state(), State::Closed);
    assert!(!s.should_close_transport(), "the echo is not written yet");
    let out = written(&mut s);
    assert_eq!(out[0].0.opcode, OpCode::Close);
    assert_eq!(out[0].1[..2], 1001u16.to_be_bytes());
    assert!(s.should_close_transport());
    assert_eq!(s.send_text("late"), Err(Error::Closed));
}

#[test]
fn client_waits_for_the_server_to_close_the_transport() {
    // §7.1.1: the client waits for the server's TCP close.
    let mut c = Connection::new(Role::Client, Config::default());
    c.close(CloseFrame::new(CloseCode::Normal, "done")).unwrap();
    assert_eq!(c.state(), State::Closing);
    written(&mut c);
    feed(
        &mut c,
        &frame(OpCode::Close, true, &1000u16.to_be_bytes(), false),
    )
    .unwrap();
    assert_eq!(c.state(), State::Closed);
    assert!(!c.should_close_transport());
    c.receive_eof();
    assert!(c.should_close_transport());
    assert_eq!(
        c.close_received(),
        Some(&CloseFrame::new(CloseCode::Normal, ""))
    );
}

#[test]
fn close_without_code_is_reported_as_no_reason() {
    let mut s = server();
    s.receive(&client_frame(OpCode::Close, true, b""));
    assert_eq!(
        events(&mut s),
        [Event::Close(CloseFrame::new(CloseCode::NoReason, ""))]
    );
    // And the echo carries no code either.
    assert!(written(&mut s)[0].1.is_empty());
}

#[test]
fn transport_end_without_close_is_reported_as_abruptly() {
    let mut s = server();
    s.receive(&client_frame(OpCode::Text, false, b"half"));
    s.receive_eof();
    assert_eq!(
        events(&mut s),
        [Event::Close(CloseFrame::new(CloseCode::Abruptly, ""))]
    );
}

#[test]
fn keeps_delivering_messages_while_closing() {
    // §7.1.2: after sending a close, the endpoint still reads until the peer's close.
    let mut s = server();
    s.close(CloseFrame::new(CloseCode::Normal, "")).unwrap();
    s.receive(&client_frame(OpCode::Text, true, b"last"));
    assert_eq!(events(&mut s), [Event::Text("last".into())]);
}

#[test]
fn close_goes_after_the_data_already_handed_over() {
    let mut s = server();
    s.send_text("one").unwrap();
    s.close(CloseFrame::new(CloseCode::Normal, "")).unwrap();
    let ops: Vec<OpCode> = written(&mut s).iter().map(|(h, _)| h.opcode).collect();
    assert_eq!(ops, [OpCode::Text, OpCode::Close]);
}

#[test]
fn refuses_to_send_reserved_close_codes() {
    let mut s = server();
    assert_eq!(
        s.close(CloseFrame::new(CloseCode::Abruptly, "")),
        Err(Error::CloseCodeNotSendable(CloseCode::Abruptly))
    );
    assert_eq!(s.state(), State::Open);
}

#[test]
fn ignores_everything_after_the_close_frame() {
    // §5.5.1: the close frame is the last frame.
    let mut s = server();
    let mut bytes = client_frame(OpCode::Close, true, &1000u16.to_be_bytes());
    bytes.extend(client_frame(OpCode::Text, true, b"ignored"));
    bytes.extend([0xff; 10]);
    s.receive(&bytes);
    assert_eq!(events(&mut s).len(), 1);
}

#[test]
fn rejects_ping_payload_over_125_bytes_from_the_application() {
    let mut s = server();
    assert_eq!(
        s.send_ping(&[0; 126]),
        Err(Error::ControlPayloadTooLong(126))
    );
}

#[test]
fn stops_decoding_at_each_event_so_earlier_messages_can_be_answered() {
    // Autobahn 3.2: a good message, then a bad frame, in one read: the good
    // message is delivered and can be answered before the connection fails.
    let mut s = server();
    let mut bytes = client_frame(OpCode::Text, true, b"Hello");
    let mut bad = client_frame(OpCode::Text, true, b"x");
    bad[0] |= 0x20;
    bytes.extend(bad);
    bytes.extend(client_frame(OpCode::Ping, true, b""));
    s.receive(&bytes);
    assert_eq!(s.next_event(), Ok(Some(Event::Text("Hello".into()))));
    s.send_text("Hello").unwrap();
    assert_eq!(s.next_event(), Err(ProtocolError::ReservedBitsSet));
    let ops: Vec<OpCode> = written(&mut s).iter().map(|(h, _)| h.opcode).collect();
    assert_eq!(
        ops,
        [OpCode::Text, OpCode::Close],
        "no pong for the ping after the bad frame"
    );
}

#[test]
fn decodes_frames_received_before_the_transport_ended() {
    let mut s = server();
    s.receive(&client_frame(OpCode::Text, true, b"one"));
    s.receive(&client_frame(OpCode::Close, true, &1000u16.to_be_bytes()));
    s.receive_eof();
    assert_eq!(
        events(&mut s),
        [
            Event::Text("one".into()),
            Event::Close(CloseFrame::new(CloseCode::Normal, ""))
        ]
    );
}

#[test]
fn a_ping_flood_queues_one_pong_at_a_time() {
    // §5.5.3: a pong may answer only the most recent ping.
    let mut s = server();
    for i in 0..10_000u32 {
        s.receive(&client_frame(OpCode::Ping, true, &i.to_be_bytes()));
        drain(&mut s).unwrap();
    }
    let out = written(&mut s);
    assert_eq!(out.len(), dialtone_proto::connection::MAX_QUEUED_PONGS);
    assert!(out.iter().all(|(h, _)| h.opcode == OpCode::Pong));
    // The first ones are answered in order, the last answers the latest ping.
    assert_eq!(out[0].1, 0u32.to_be_bytes());
    assert_eq!(out.last().unwrap().1, 9_999u32.to_be_bytes());
}

#[test]
fn a_burst_of_pings_gets_every_pong() {
    // Autobahn 2.10: ten pings, ten pongs, in order.
    let mut s = server();
    for i in 0..10u8 {
        s.receive(&client_frame(OpCode::Ping, true, &[i]));
    }
    drain(&mut s).unwrap();
    let payloads: Vec<u8> = written(&mut s).iter().map(|(_, p)| p[0]).collect();
    assert_eq!(payloads, (0..10).collect::<Vec<u8>>());
}

#[test]
fn a_pong_being_written_is_not_replaced() {
    let mut s = server();
    s.receive(&client_frame(OpCode::Ping, true, b"one"));
    drain(&mut s).unwrap();
    let first = s.transmit_chunk().unwrap()[0];
    s.advance_transmit(1);
    for i in 0..100u8 {
        s.receive(&client_frame(OpCode::Ping, true, &[i]));
    }
    drain(&mut s).unwrap();
    let out = written_after(&mut s, vec![first]);
    assert_eq!(
        out[0].1, b"one",
        "the pong being written is finished intact"
    );
    assert_eq!(out.len(), 1 + dialtone_proto::connection::MAX_QUEUED_PONGS);
    assert_eq!(out.last().unwrap().1, [99]);
}

/// A whole message in one frame that arrives in pieces is unmasked in the
/// read buffer and split off in one piece: `read_hint` tells the transport
/// how much is still missing, so that it can make room for all of it.
#[test]
fn single_frame_message_arriving_in_pieces_is_received_in_place() {
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i * 7) as u8).collect();
    let wire = client_frame(OpCode::Binary, true, &payload);
    let mut s = server();
    assert_eq!(s.read_hint(), 0, "nothing announced yet");
    let mut fed = 0;
    for piece in wire.chunks(9_999) {
        assert_eq!(events(&mut s), Vec::<Event>::new());
        s.receive(piece);
        fed += piece.len();
        let decoded = drain(&mut s).unwrap();
        if fed < wire.len() {
            assert!(decoded.is_empty(), "delivered before the frame is complete");
            assert_eq!(s.read_hint(), wire.len() - fed, "after {fed} bytes");
        } else {
            assert_eq!(decoded, vec![Event::Binary(payload.clone().into())]);
        }
    }
    assert_eq!(s.read_hint(), 0);
    assert!(s.read_buffer().is_empty());
}

/// RFC 6455 §8.1 (Autobahn 6.4.3): invalid UTF-8 in a text frame that is
/// still arriving fails the connection at once, not when the frame ends.
#[test]
fn invalid_utf8_fails_fast_inside_a_frame_still_arriving() {
    let mut payload = "κόσμε".repeat(1000).into_bytes();
    let bad = payload.len() / 2;
    payload[bad] = 0xff;
    let wire = client_frame(OpCode::Text, true, &payload);
    let mut s = server();
    assert_eq!(feed(&mut s, &wire[..bad - 10]), Ok(vec![]));
    assert_eq!(
        feed(&mut s, &wire[bad - 10..bad + 20]),
        Err(ProtocolError::InvalidUtf8)
    );
    let out = written(&mut s);
    let (h, close) = out.last().expect("a close frame");
    assert_eq!(h.opcode, OpCode::Close);
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1007);
}

/// A text frame cut inside a code point, at every split, is delivered whole.
#[test]
fn text_frame_split_inside_a_code_point_is_delivered_whole() {
    let text = "añ€😀".repeat(50);
    let wire = client_frame(OpCode::Text, true, text.as_bytes());
    for cut in 1..wire.len() {
        let mut s = server();
        assert_eq!(feed(&mut s, &wire[..cut]), Ok(vec![]), "cut at {cut}");
        assert_eq!(
            feed(&mut s, &wire[cut..]),
            Ok(vec![Event::Text(text.clone().into())]),
            "cut at {cut}"
        );
    }
}

/// A server's large message goes out from the application's own buffer,
/// behind its header: the bytes to write are the `Bytes` handed over.
#[test]
fn server_sends_large_shared_payload_without_copying() {
    let data = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let mut s = Connection::new(Role::Server, Config::default().max_send_frame_size(30_000));
    s.send_message_bytes(MessageKind::Binary, &data).unwrap();
    let mut slices = [IoSlice::new(&[]); 16];
    let n = s.transmit_slices(&mut slices);
    assert_eq!(n, 8, "a header and a payload piece per frame");
    let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
    for payload in slices[..n].iter().skip(1).step_by(2) {
        let at = payload.as_ptr() as usize;
        assert!(at >= start && at < end, "payload piece is a copy");
    }
    let frames = written(&mut s);
    assert_eq!(frames.len(), 4);
    let joined: Vec<u8> = frames.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(joined, data);
    assert!(frames[..3].iter().all(|(h, _)| !h.fin));
    assert!(frames[3].0.fin);
}

/// RFC 6455 §5.4: a control frame may go between the frames of a message,
/// never inside one, even when the frame's header is written and its
/// shared payload is not.
#[test]
fn control_frame_waits_for_the_rest_of_a_started_shared_frame() {
    let data = Bytes::from(vec![7u8; 10_000]);
    let mut s = server();
    s.send_message_bytes(MessageKind::Binary, &data).unwrap();
    let header = s.transmit_chunk().unwrap().to_vec();
    assert_eq!(header.len(), 4, "the header alone comes first");
    s.advance_transmit(header.len());
    s.send_ping(b"now").unwrap();
    let frames = written_after(&mut s, header);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].0.opcode, OpCode::Binary);
    assert_eq!(frames[0].1, data);
    assert_eq!(frames[1].0.opcode, OpCode::Ping);

    // Before anything is written, the ping goes first.
    let mut s = server();
    s.send_message_bytes(MessageKind::Binary, &data).unwrap();
    s.send_ping(b"now").unwrap();
    let frames = written(&mut s);
    assert_eq!(frames[0].0.opcode, OpCode::Ping);
    assert_eq!(frames[1].1, data);
}

/// Below `SHARED_PAYLOAD_MIN` bytes, and for a client (which masks), the
/// payload is copied into the frame: one piece per frame.
#[test]
fn small_or_masked_payloads_are_copied_into_one_piece() {
    let small = Bytes::from(vec![1u8; SHARED_PAYLOAD_MIN - 1]);
    let mut s = server();
    s.send_message_bytes(MessageKind::Binary, &small).unwrap();
    let mut slices = [IoSlice::new(&[]); 4];
    assert_eq!(s.transmit_slices(&mut slices), 1);

    let big = Bytes::from(vec![2u8; 3 * SHARED_PAYLOAD_MIN]);
    let mut c = Connection::new(Role::Client, Config::default());
    c.send_message_bytes(MessageKind::Binary, &big).unwrap();
    assert_eq!(c.transmit_slices(&mut slices), 1);
    let frames = written(&mut c);
    assert!(frames[0].0.mask.is_some());
    assert_eq!(frames[0].1, big);
}

/// `max_send_frame_size` is a public field: set to 0 directly (the builder
/// clamps it), it means one byte per frame, not a panic.
#[test]
fn a_zero_send_frame_size_sends_one_byte_frames() {
    let mut config = Config::default();
    config.max_send_frame_size = 0;
    for shared in [false, true] {
        let mut s = Connection::new(Role::Server, config.clone());
        let data = Bytes::from(vec![5u8; SHARED_PAYLOAD_MIN]);
        if shared {
            s.send_message_bytes(MessageKind::Binary, &data).unwrap();
        } else {
            s.send_binary(&data).unwrap();
        }
        let frames = written(&mut s);
        assert_eq!(frames.len(), SHARED_PAYLOAD_MIN);
        assert!(frames.iter().all(|(_, p)| p == &[5]));
        assert_eq!(frames[0].0.opcode, OpCode::Binary);
        assert!(frames[1..]
            .iter()
            .all(|(h, _)| h.opcode == OpCode::Continuation));
        assert!(frames.last().unwrap().0.fin);
    }
}
