//! `handshake::parse_response` + `ClientHandshake::check_response` on
//! arbitrary bytes. Input: `[config][response bytes]`; a
//! `Sec-WebSocket-Accept: A` line is replaced by the right accept value so
//! that the fuzzer gets past the key check.
//!
//! Invariants: a complete head parses the same from its own bytes and not
//! from one byte less; an accepted response is a 101 whose subprotocol was
//! offered and whose permessage-deflate agreement fits one of our offers
//! (window sizes in range).
#![no_main]

use dialtone_fuzz::Input;
use dialtone_proto::deflate::{self, Deflate};
use dialtone_proto::handshake::{accept_key, parse_response, DEFAULT_MAX_HANDSHAKE_SIZE};
use dialtone_proto::http::header::{HeaderValue, SEC_WEBSOCKET_ACCEPT};
use dialtone_proto::http::StatusCode;
use dialtone_proto::ClientHandshake;
use libfuzzer_sys::fuzz_target;

const PROTOCOLS: [&str; 3] = ["chat", "superchat", "v2.json"];

fn offers(cfg: u8) -> Vec<Deflate> {
    let mut out = Vec::new();
    if cfg & 0x08 != 0 {
        out.push(Deflate {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(12),
            ..Deflate::default()
        });
    }
    if cfg & 0x10 != 0 {
        out.push(Deflate::default());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let cfg = input.byte();
    let limit = if cfg & 0x80 != 0 {
        256
    } else {
        DEFAULT_MAX_HANDSHAKE_SIZE
    };
    let raw = input.rest();

    let mut client = ClientHandshake::new("example.com", "/chat");
    for (i, p) in PROTOCOLS.iter().enumerate() {
        if cfg & (1 << i) != 0 {
            client.protocol(*p);
        }
    }
    let offers = offers(cfg);
    for o in &offers {
        client.deflate(o.clone());
    }
    if cfg & 0x20 != 0 {
        client.extension("x-foo; a=1");
    }

    let (mut head, len) = match parse_response(raw, limit) {
        Ok(None) => {
            assert!(raw.len() <= limit, "incomplete head over the limit");
            return;
        }
        Err(e) => {
            let _ = e.to_string();
            return;
        }
        Ok(Some(parsed)) => parsed,
    };
    assert!(len <= raw.len() && len <= limit, "head of {len} bytes");
    assert_eq!(
        parse_response(&raw[..len], limit),
        Ok(Some((head.clone(), len))),
        "the head alone parses the same"
    );
    assert!(
        !matches!(parse_response(&raw[..len - 1], limit), Ok(Some(_))),
        "a head one byte short is complete"
    );

    let right = HeaderValue::from_str(&accept_key(client.key().as_bytes())).unwrap();
    let values: Vec<HeaderValue> = head
        .headers
        .get_all(SEC_WEBSOCKET_ACCEPT)
        .iter()
        .map(|v| if v == "A" { right.clone() } else { v.clone() })
        .collect();
    head.headers.remove(SEC_WEBSOCKET_ACCEPT);
    for v in values {
        head.headers.append(SEC_WEBSOCKET_ACCEPT, v);
    }

    match client.check_response(&head) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(neg) => {
            assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
            if let Some(p) = &neg.protocol {
                assert!(
                    PROTOCOLS
                        .iter()
                        .enumerate()
                        .any(|(i, o)| cfg & (1 << i) != 0 && o == p),
                    "protocol {p:?} not offered"
                );
            }
            if let Some(ext) = &neg.extensions {
                assert!(deflate::parse_extensions(ext).is_ok(), "{ext:?}");
            }
            if let Some(a) = neg.deflate {
                assert!(!offers.is_empty(), "deflate agreed without an offer");
                assert!((8..=15).contains(&a.server_max_window_bits), "{a:?}");
                assert!((8..=15).contains(&a.client_max_window_bits), "{a:?}");
                let fits = offers.iter().any(|o| {
                    a.server_max_window_bits <= o.server_max_window_bits.unwrap_or(15)
                        && a.client_max_window_bits <= o.client_max_window_bits.unwrap_or(15)
                        && (a.server_no_context_takeover || !o.server_no_context_takeover)
                        && (a.client_no_context_takeover || !o.client_no_context_takeover)
                });
                assert!(fits, "{a:?} fits none of {offers:?}");
            }
        }
    }
});
