//! `handshake::parse_request` + `check_request` on arbitrary bytes, then the
//! server's answer. Input: `[config][request bytes]`.
//!
//! Invariants: a `Reject`'s `to_bytes()` is one well-formed HTTP response
//! (httparse parses it whole, its Content-Length covers exactly the rest, its
//! status is the Reject's); an accepted request yields the right accept
//! value, and the 101 built from what was parsed (first subprotocol,
//! negotiated permessage-deflate) parses back to the same values.
#![no_main]

use dialtone_fuzz::Input;
use dialtone_proto::deflate::{self, Deflate};
use dialtone_proto::handshake::{
    accept_key, accept_response, check_request, parse_request, parse_response,
    DEFAULT_MAX_HANDSHAKE_SIZE,
};
use dialtone_proto::http::header::{
    HeaderMap, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
};
use dialtone_proto::http::StatusCode;
use dialtone_proto::Reject;
use libfuzzer_sys::fuzz_target;

fn check_reject(r: &Reject) {
    assert!(r.status.is_client_error(), "{r:?}");
    let bytes = r.to_bytes();
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(&bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "reject does not parse: {other:?}: {:?}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(resp.version, Some(1));
    assert_eq!(resp.code, Some(r.status.as_u16()));
    let lengths: Vec<usize> = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
        .collect();
    assert_eq!(lengths.len(), 1, "one Content-Length");
    assert_eq!(
        n + lengths[0],
        bytes.len(),
        "body is exactly Content-Length"
    );
    let body = std::str::from_utf8(&bytes[n..]).expect("UTF-8 body");
    assert!(
        body.ends_with('\n') && body.matches('\n').count() == 1,
        "{body:?}"
    );
    let (head, len) = parse_response(&bytes, usize::MAX).unwrap().unwrap();
    assert_eq!((head.status, len), (r.status, n));
}

fn policies(cfg: u8) -> Vec<Deflate> {
    let mut out = Vec::new();
    if cfg & 0x01 != 0 {
        out.push(Deflate {
            client_max_window_bits: Some(10),
            server_max_window_bits: Some(9),
            client_no_context_takeover: true,
            ..Deflate::default()
        });
    }
    if cfg & 0x02 != 0 {
        out.push(Deflate {
            server_no_context_takeover: true,
            server_max_window_bits: Some(8),
            ..Deflate::default()
        });
    }
    if cfg & 0x04 != 0 {
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
    let (req, len) = match parse_request(raw, limit) {
        Ok(None) => {
            assert!(raw.len() <= limit, "incomplete head over the limit");
            return;
        }
        Err(r) => return check_reject(&r),
        Ok(Some(parsed)) => parsed,
    };
    assert!(len <= raw.len() && len <= limit);
    let hs = match check_request(&req) {
        Err(r) => return check_reject(&r),
        Ok(hs) => hs,
    };
    let key = &req.headers()[SEC_WEBSOCKET_KEY];
    assert_eq!(hs.accept, accept_key(key.as_bytes()));
    for p in &hs.protocols {
        assert!(!p.is_empty() && !p.contains(',') && p.trim() == p, "{p:?}");
    }
    let answer = deflate::negotiate(&policies(cfg), &hs.extensions);
    let ext = answer.as_ref().map(|(e, agreed)| {
        assert!(
            (8..=15).contains(&agreed.server_max_window_bits),
            "{agreed:?}"
        );
        assert!(
            (8..=15).contains(&agreed.client_max_window_bits),
            "{agreed:?}"
        );
        let s = e.to_string();
        assert_eq!(deflate::parse_extensions(&s), Ok(vec![e.clone()]));
        s
    });
    let protocol = hs.protocols.first().map(String::as_str);
    let resp = accept_response(&hs.accept, protocol, ext.as_deref(), &HeaderMap::new());
    let (head, n) = parse_response(&resp, usize::MAX)
        .expect("our 101 parses")
        .expect("our 101 is complete");
    assert_eq!(n, resp.len());
    assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        head.headers
            .get(SEC_WEBSOCKET_PROTOCOL)
            .map(|v| v.to_str().unwrap()),
        protocol
    );
    assert_eq!(
        head.headers
            .get(SEC_WEBSOCKET_EXTENSIONS)
            .map(|v| v.to_str().unwrap()),
        ext.as_deref()
    );
});
