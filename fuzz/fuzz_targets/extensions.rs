//! `deflate::parse_extensions`, `negotiate` and `Deflate::check_response`.
//! Input: `[policy config][offer config x2][header value]`.
//!
//! Invariants: a parsed header re-serializes (Display) to text that parses
//! to the same elements, one by one and joined; negotiation never panics and
//! its window sizes are in range; the server's answer to an offer our client
//! could have made is accepted by that client with the same agreement.
#![no_main]

use dialtone_fuzz::Input;
use dialtone_proto::deflate::{self, Agreed, Deflate, Extension};
use libfuzzer_sys::fuzz_target;

fn bits(b: u8) -> Option<u8> {
    (b & 0x08 != 0).then_some(8 + (b & 7))
}

/// A valid policy or offer from two bytes.
fn deflate_from(a: u8, b: u8) -> Deflate {
    Deflate {
        server_no_context_takeover: a & 0x10 != 0,
        client_no_context_takeover: a & 0x20 != 0,
        server_max_window_bits: bits(a),
        client_max_window_bits: bits(b),
        ..Deflate::default()
    }
}

fn negotiated(a: &Agreed) -> (bool, bool, u8, u8) {
    (
        a.server_no_context_takeover,
        a.client_no_context_takeover,
        a.server_max_window_bits,
        a.client_max_window_bits,
    )
}

/// The client settings whose `offer()` is exactly this element (parameters in
/// any order), if our client could have sent it.
fn client_offer(ext: &Extension) -> Option<Deflate> {
    let mut d = Deflate::default();
    for (name, value) in &ext.params {
        let window = |v: &Option<String>| -> Option<u8> {
            let v = v.as_deref()?;
            let n: u8 = v.parse().ok()?;
            ((8..=15).contains(&n) && n.to_string() == v).then_some(n)
        };
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => d.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => d.client_no_context_takeover = true,
            ("server_max_window_bits", v) => d.server_max_window_bits = Some(window(v)?),
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", v) => d.client_max_window_bits = Some(window(v)?),
            _ => return None,
        }
    }
    let mut ours = d.offer().params;
    let mut theirs = ext.params.clone();
    ours.sort();
    theirs.sort();
    (ours == theirs).then_some(d)
}

/// Window sizes a codec can be built with (`Codec::new` asserts them).
fn check_ranges(a: &Agreed) {
    assert!((8..=15).contains(&a.server_max_window_bits), "{a:?}");
    assert!((8..=15).contains(&a.client_max_window_bits), "{a:?}");
}

fn round_trip(policies: &[Deflate], offer: &Extension, client: &Deflate) {
    let Some((answer, agreed)) = deflate::negotiate(policies, std::slice::from_ref(offer)) else {
        return;
    };
    check_ranges(&agreed);
    let text = answer.to_string();
    assert_eq!(deflate::parse_extensions(&text), Ok(vec![answer.clone()]));
    match Deflate::check_response(std::slice::from_ref(client), &answer) {
        Ok(got) => assert_eq!(
            negotiated(&got),
            negotiated(&agreed),
            "client and server disagree on {text:?} to {offer}"
        ),
        Err(e) => panic!("client refuses {text:?}, the answer to its own offer {offer}: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let (p, q, r, s) = (input.byte(), input.byte(), input.byte(), input.byte());
    let mut policies = vec![deflate_from(p, q)];
    if p & 0x40 != 0 {
        policies.push(Deflate::default());
    }

    // A generated offer: the round trip through text and negotiation.
    let client = deflate_from(r, s);
    let offer = client.offer();
    assert_eq!(
        deflate::parse_extensions(&offer.to_string()),
        Ok(vec![offer.clone()])
    );
    round_trip(&policies, &offer, &client);

    // An arbitrary header value.
    let Ok(value) = std::str::from_utf8(input.rest()) else {
        return;
    };
    let Ok(exts) = deflate::parse_extensions(value) else {
        return;
    };
    for e in &exts {
        assert!(!e.name.is_empty());
        let text = e.to_string();
        assert_eq!(
            deflate::parse_extensions(&text),
            Ok(vec![e.clone()]),
            "{text:?}"
        );
    }
    let joined: Vec<String> = exts.iter().map(ToString::to_string).collect();
    assert_eq!(
        deflate::parse_extensions(&joined.join(", ")).as_ref(),
        Ok(&exts)
    );

    if let Some((answer, agreed)) = deflate::negotiate(&policies, &exts) {
        // The answer is to the first offer that a policy accepts alone.
        let offer = exts
            .iter()
            .find(|o| deflate::negotiate(&policies, std::slice::from_ref(*o)).is_some())
            .expect("some offer was answered");
        assert_eq!(
            deflate::negotiate(&policies, std::slice::from_ref(offer)),
            Some((answer, agreed))
        );
        check_ranges(&agreed);
        if let Some(client) = client_offer(offer) {
            round_trip(&policies, offer, &client);
        }
    }
});
