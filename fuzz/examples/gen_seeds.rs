//! Writes the seed corpora under `fuzz/corpus/<target>/`, from the cases of
//! the unit tests (RFC 6455 / RFC 7692 examples, the negotiation tables, the
//! handshake requests). Run from `fuzz/`: `cargo run --example gen_seeds`.
//! The files are committed; rerun only to change them.

use std::fs;
use std::path::Path;

use dialtone_fuzz::{agreed_from, encode_frame, flags, ops};
use dialtone_proto::deflate::Codec;
use dialtone_proto::frame::OpCode;

const RFC_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

/// `[flags][bits][k][sizes][body]` for the connection targets.
fn conn_input(fl: u8, bits: u8, sizes: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = vec![fl, bits, (sizes.len() - 1) as u8];
    v.extend_from_slice(sizes);
    v.extend_from_slice(body);
    v
}

fn op(code: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![code, payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

fn connection_seeds(target: &str, peer_masks: bool) {
    let f = |opcode, fin, payload: &[u8]| {
        encode_frame(opcode, fin, false, payload, peer_masks, RFC_KEY)
    };
    let whole = [255u8];
    let mut raw: Vec<(&str, Vec<u8>)> = vec![
        ("text_hello", f(OpCode::Text, true, b"Hello")),
        (
            "fragmented_text",
            [
                f(OpCode::Text, false, b"Hel"),
                f(OpCode::Ping, true, b"mid"),
                f(OpCode::Continuation, false, "lo κό".as_bytes()),
                f(OpCode::Continuation, true, "σμε".as_bytes()),
            ]
            .concat(),
        ),
        ("binary_300", f(OpCode::Binary, true, &[7u8; 300])),
        (
            "ping_pong",
            [f(OpCode::Ping, true, b"p1"), f(OpCode::Pong, true, b"p2")].concat(),
        ),
        ("ping_125", f(OpCode::Ping, true, &[b'x'; 125])),
        ("close_normal", f(OpCode::Close, true, b"\x03\xe8bye")),
        ("close_empty", f(OpCode::Close, true, b"")),
        ("close_bad_code", f(OpCode::Close, true, b"\x03\xed")),
        (
            "close_bad_utf8",
            f(OpCode::Close, true, b"\x03\xe8\xce\xba\xe1\xbd"),
        ),
        (
            "text_bad_utf8",
            f(OpCode::Text, true, b"\xce\xba\xe1\xbd\xf4\x90\x80\x80"),
        ),
        ("continuation_alone", f(OpCode::Continuation, true, b"x")),
        (
            "data_after_close",
            [
                f(OpCode::Close, true, b"\x03\xe8"),
                f(OpCode::Text, true, b"late"),
            ]
            .concat(),
        ),
        (
            "wrong_mask",
            encode_frame(OpCode::Text, true, false, b"hi", !peer_masks, RFC_KEY),
        ),
        ("rsv2", {
            let mut v = f(OpCode::Text, true, b"hi");
            v[0] |= 0x20;
            v
        }),
        ("len64", {
            let mut v = vec![0x82, if peer_masks { 0xff } else { 0x7f }];
            v.extend_from_slice(&70_000u64.to_be_bytes());
            v
        }),
    ];
    if peer_masks {
        // RFC 6455 §5.7 verbatim.
        raw.push((
            "rfc_masked_hello",
            vec![
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
        ));
    } else {
        raw.push(("rfc_hello", vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]));
    }
    for (name, body) in &raw {
        write(
            target,
            &format!("raw_{name}"),
            &conn_input(0, 0, &whole, body),
        );
        write(
            target,
            &format!("raw_{name}_split_eof"),
            &conn_input(flags::EOF | flags::DRAIN, 0, &[0, 2, 6], body),
        );
    }

    // permessage-deflate: RFC 7692 §7.2.3.1 "Hello", then our compressor's
    // output for a fragmented message, with each window size agreement.
    let deflate = flags::DEFLATE;
    let hello = encode_frame(
        OpCode::Text,
        true,
        true,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        peer_masks,
        RFC_KEY,
    );
    write(
        target,
        "deflate_rfc_hello",
        &conn_input(deflate, 0x3f, &whole, &hello),
    );
    for (name, bits, fl) in [
        ("15", 0x3f, 0),
        (
            "9_no_takeover",
            0x09,
            flags::SERVER_NO_CONTEXT_TAKEOVER | flags::CLIENT_NO_CONTEXT_TAKEOVER,
        ),
        ("8", 0x00, 0),
    ] {
        let agreed = agreed_from(deflate | fl, bits);
        let mut peer = Codec::new(&agreed, !peer_masks);
        let mut body = Vec::new();
        let mut c = Vec::new();
        peer.compress(
            "the quick brown fox κόσμε ".repeat(20).as_bytes(),
            false,
            &mut c,
        );
        body.extend(encode_frame(
            OpCode::Text,
            false,
            true,
            &c,
            peer_masks,
            RFC_KEY,
        ));
        body.extend(f(OpCode::Ping, true, b"between"));
        peer.compress(b"jumps over the lazy dog", true, &mut c);
        body.extend(encode_frame(
            OpCode::Continuation,
            true,
            false,
            &c,
            peer_masks,
            RFC_KEY,
        ));
        peer.compress(&[0u8; 4000], true, &mut c);
        body.extend(encode_frame(
            OpCode::Binary,
            true,
            true,
            &c,
            peer_masks,
            RFC_KEY,
        ));
        write(
            target,
            &format!("deflate_{name}"),
            &conn_input(deflate | fl, bits, &whole, &body),
        );
        write(
            target,
            &format!("deflate_{name}_split"),
            &conn_input(deflate | fl | flags::DRAIN, bits, &[3, 0, 40], &body),
        );
    }

    // Structured mode.
    let s = flags::STRUCTURED;
    let fin = ops::OP_FIN;
    let text = OpCode::Text.as_u8();
    let cont = OpCode::Continuation.as_u8();
    let bin = OpCode::Binary.as_u8();
    let ping = OpCode::Ping.as_u8();
    let close = OpCode::Close.as_u8();
    let structured: Vec<(&str, u8, Vec<u8>)> = vec![
        ("text", 0, op(fin | text, "hello κόσμε".as_bytes())),
        (
            "fragments",
            0,
            [
                op(text, b"ab"),
                op(ping, b"p"),
                op(cont, b"cd"),
                op(fin | cont, b"ef"),
            ]
            .concat(),
        ),
        (
            "ping_flood_drain",
            flags::DRAIN,
            [
                op(ping, b"1"),
                op(ping, b"22"),
                op(ops::DRAIN, &[0; 1]),
                op(ping, b"333"),
                op(ping, &[b'4'; 125]),
                op(ops::DRAIN, &[0; 3]),
                op(ping, b"5"),
                op(fin | close, b"\x03\xe8"),
            ]
            .concat(),
        ),
        (
            "ping_flood_40",
            0,
            (0u8..40).flat_map(|i| op(ping, &[i; 3])).collect(),
        ),
        ("big_binary", 0, op(fin | ops::OP_BIG | bin, &[1; 60])),
        ("too_big_frame", 0, op(fin | ops::OP_BIG | bin, &[1; 65])),
        (
            "raw_and_flush",
            0,
            [
                op(ops::RAW, &[0x81]),
                op(ops::FLUSH, b""),
                op(ops::RAW, &[0x80]),
                op(ops::WRONG_MASK, b"x"),
            ]
            .concat(),
        ),
        (
            "deflate_fragments",
            flags::DEFLATE,
            [
                op(
                    ops::OP_RSV1 | ops::OP_COMPRESS | text,
                    "κόσμε ".repeat(10).as_bytes(),
                ),
                op(ping, b""),
                op(fin | ops::OP_COMPRESS | cont, b"end"),
                op(fin | ops::OP_RSV1 | ops::OP_COMPRESS | bin, &[9; 100]),
            ]
            .concat(),
        ),
        (
            "deflate_bomb",
            flags::DEFLATE,
            [
                op(
                    ops::OP_RSV1 | ops::OP_COMPRESS | ops::OP_BIG | bin,
                    &[0; 200],
                ),
                op(ops::OP_COMPRESS | ops::OP_BIG | cont, &[0; 200]),
                op(fin | ops::OP_COMPRESS | ops::OP_BIG | cont, &[0; 200]),
            ]
            .concat(),
        ),
    ];
    for (name, fl, body) in structured {
        write(
            target,
            &format!("ops_{name}"),
            &conn_input(s | fl, 0x3f, &[7, 30], &body),
        );
    }
}

fn main() {
    connection_seeds("connection_server", true);
    connection_seeds("connection_client", false);

    // client_response: config byte (bits 0-2 protocols, 3-4 deflate offers,
    // 5 an x-foo offer, 7 a 256-byte limit), then the response.
    let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: A\r\n";
    let responses: Vec<(&str, u8, String)> = vec![
        ("plain", 0, format!("{ok}\r\n")),
        ("case", 0, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Accept: A\r\n\r\n".into()),
        ("protocol", 0x03, format!("{ok}Sec-WebSocket-Protocol: superchat\r\n\r\n")),
        ("deflate", 0x18, format!("{ok}Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9\r\n\r\n")),
        ("deflate_plain", 0x10, format!("{ok}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")),
        ("deflate_twice", 0x10, format!("{ok}Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")),
        ("xfoo", 0x20, format!("{ok}Sec-WebSocket-Extensions: x-foo; a=1\r\n\r\nDATA")),
        ("refusal", 0, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\r\n".into()),
        ("partial", 0x80, "HTTP/1.1 101 OK\r\nX: ".into()),
    ];
    for (name, cfg, text) in responses {
        let mut v = vec![cfg];
        v.extend_from_slice(text.as_bytes());
        write("client_response", name, &v);
    }

    // server_request: config byte (bits 0-2 deflate policies, 7 small
    // limit), then the request.
    let base = "GET /chat?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let requests: Vec<(&str, u8, String)> = vec![
        ("valid", 0, format!("{base}Sec-WebSocket-Version: 13\r\n\r\n")),
        ("protocols", 0, format!("{base}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\nOrigin: http://example.com\r\n\r\n")),
        ("deflate", 0x07, format!("{base}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=12; client_no_context_takeover\r\n\r\n")),
        ("version_8", 0, format!("{base}Sec-WebSocket-Version: 8\r\n\r\n")),
        ("http10", 0, "GET / HTTP/1.0\r\nHost: h\r\n\r\n".into()),
        ("post", 0, format!("{}Sec-WebSocket-Version: 13\r\n\r\n", base.replacen("GET", "POST", 1))),
        ("short_key", 0, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n".into()),
        ("garbage", 0, "GARBAGE\0\r\n\r\n".into()),
        ("big", 0x80, format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(300))),
    ];
    for (name, cfg, text) in requests {
        let mut v = vec![cfg];
        v.extend_from_slice(text.as_bytes());
        write("server_request", name, &v);
    }

    // extensions: 4 config bytes (a policy, an offer), then a header value.
    let values = [
        "permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\" , permessage-deflate,x-foo;a=b",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=15; client_max_window_bits=9",
        "permessage-deflate; foo, permessage-deflate; server_max_window_bits=12, permessage-deflate",
        "permessage-deflate; server_max_window_bits=010",
        "a;b=\"c d\"",
        ", ,permessage-deflate;client_max_window_bits=\"8\"",
    ];
    for (i, value) in values.iter().enumerate() {
        let mut v = vec![0x1a, 0x0c, 0x29, 0x0f];
        v.extend_from_slice(value.as_bytes());
        write("extensions", &format!("value_{i}"), &v);
    }

    // inflate: flags, window bits, limit/64, then messages
    // `[ctrl (bit 0: fin)][len][bytes]`.
    let mut rfc = vec![0x00, 0x3f, 1, 1, 6];
    rfc.extend_from_slice(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07]);
    write("inflate", "rfc_hello", &rfc);
    for (name, fl, bits) in [("15", 0u8, 0x3fu8), ("9_reset", 0x30, 0x09)] {
        let agreed = agreed_from(fl, bits);
        let mut peer = Codec::new(&agreed, true);
        let mut v = vec![fl, bits, 8];
        let mut c = Vec::new();
        for msg in [
            &b"Hello, Hello, what a message this is"[..],
            &[0u8; 2000],
            b"",
        ] {
            peer.compress(msg, true, &mut c);
            let (a, b) = c.split_at(c.len() / 2);
            v.extend([0, a.len() as u8]);
            v.extend_from_slice(a);
            v.extend([1, b.len() as u8]);
            v.extend_from_slice(b);
        }
        write("inflate", &format!("messages_{name}"), &v);
    }
}
