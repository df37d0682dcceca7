//! `deflate::Codec::decompress` on arbitrary input with a small limit.
//! Input: `[flags][window bits][limit][messages: [ctrl][len][len bytes]...]`.
//!
//! Invariants: the output never passes `limit + 1` bytes, in length or in
//! capacity; an `Ok` message is at most `limit`; `on_output` sees every
//! inflated byte exactly once, in order; a message inflated in pieces gives
//! the same result as the same message inflated at once.
#![no_main]

use dialtone_fuzz::{agreed_from, is_data_after_final_block, Input};
use dialtone_proto::deflate::Codec;
use dialtone_proto::ProtocolError;
use libfuzzer_sys::fuzz_target;

fn inflate(
    codec: &mut Codec,
    input: &[u8],
    fin: bool,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), ProtocolError> {
    let start = out.len();
    let mut seen = Vec::new();
    let result = codec.decompress(input, fin, out, limit, &mut |piece| {
        seen.extend_from_slice(piece);
        Ok(())
    });
    assert!(
        out.len() <= limit + 1,
        "{} bytes out, limit {limit}",
        out.len()
    );
    assert!(
        out.capacity() <= limit + 1,
        "capacity {}, limit {limit}",
        out.capacity()
    );
    match &result {
        Ok(()) => {
            assert!(out.len() <= limit);
            assert_eq!(&out[start..], &seen[..], "on_output missed bytes");
        }
        Err(ProtocolError::MessageTooBig { limit: l, .. }) => assert_eq!(*l, limit),
        Err(ProtocolError::Extension(_)) => {}
        Err(e) => panic!("unexpected error {e:?}"),
    }
    result
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let bits = input.byte();
    let limit = usize::from(input.byte()) * 64;
    let is_server = flags & 0x40 != 0;
    // Our own window at 8 bits: the codec then holds no compressor (zlib
    // cannot compress with it), only the decompressor under test; that keeps
    // each run cheap.
    let mut agreed = agreed_from(flags, bits);
    if is_server {
        agreed.server_max_window_bits = 8;
    } else {
        agreed.client_max_window_bits = 8;
    }
    let mut pieces = Codec::new(&agreed, is_server);
    let mut whole = Codec::new(&agreed, is_server);

    let mut out = Vec::new();
    let mut message = Vec::new();
    let mut n = 0;
    while !input.is_empty() && n < 256 {
        n += 1;
        let ctrl = input.byte();
        let len = usize::from(input.byte());
        let chunk = input.take(len);
        let fin = ctrl & 1 != 0;
        message.extend_from_slice(chunk);
        let piecewise = inflate(&mut pieces, chunk, fin, &mut out, limit);
        if piecewise.is_err() || fin {
            let mut at_once = Vec::new();
            let result = inflate(&mut whole, &message, fin, &mut at_once, limit);
            match (&piecewise, &result) {
                (Ok(()), Ok(())) => assert_eq!(out, at_once, "pieces and whole differ"),
                // Which check fails first depends on how much came at once.
                (Err(_), Err(_)) => {}
                // Reported: a piece boundary right after a final block lets
                // the data after it inflate as a new stream.
                (_, Err(e)) | (Err(e), _) if is_data_after_final_block(e) => return,
                _ => panic!("pieces {piecewise:?}, whole {result:?}"),
            }
            if piecewise.is_err() {
                // A failed message fails the connection: the codec is done.
                return;
            }
            out.clear();
            out.shrink_to_fit();
            message.clear();
        }
    }
});
