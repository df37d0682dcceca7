//! Payload masking (RFC 6455 §5.3): XOR with a 4-byte key, in place.
//!
//! Masking is its own inverse. The loop works on 32 bytes at a time with the
//! key spread over a `u64`, which the compiler turns into vector instructions:
//! 16 bytes wide on the x86-64 baseline (SSE2). On x86-64 CPUs with AVX2,
//! found at run time, the same safe loop compiled for AVX2 runs 32 bytes wide;
//! calling it is the one `unsafe` here. At 16 KiB (in L1) that is ~1.6× the
//! SSE2 loop, at 1 MiB ~1.2× (`cargo bench -p dialtone-proto --bench mask`).

/// XORs `buf` in place with `key`, as if `buf` started at `offset` bytes into
/// the payload. Returns the offset just past `buf`, for the next chunk of the
/// same payload.
#[inline]
pub fn apply_mask_at(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let rot = (offset % 4) as u32;
    let key = u32::from_ne_bytes(key);
    // Rotate the key so that byte 0 of `buf` lines up with key byte `offset % 4`.
    let key = if cfg!(target_endian = "little") {
        key.rotate_right(rot * 8)
    } else {
        key.rotate_left(rot * 8)
    };
    apply_mask(buf, key.to_ne_bytes());
    offset.wrapping_add(buf.len())
}

/// Below this length the AVX2 loop gains nothing over the cost of choosing it.
#[cfg(target_arch = "x86_64")]
const AVX2_MIN_LEN: usize = 128;

/// XORs `buf` in place with `key`, starting at key byte 0.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= AVX2_MIN_LEN && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `apply_mask_avx2` is only unsafe to call on a CPU without
        // AVX2, and this one has it (checked just above).
        unsafe { apply_mask_avx2(buf, key) };
        return;
    }
    apply_mask_words(buf, key);
}

/// [`apply_mask_words`] compiled for AVX2.
///
/// # Safety
///
/// The CPU must support AVX2. The body is safe code; only the instructions
/// the compiler may use for it need the feature.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_mask_avx2(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_words(buf, key);
}

/// The portable loop. Always inlined, so that it is compiled again with the
/// caller's target features (see [`apply_mask_avx2`]).
#[inline(always)]
fn apply_mask_words(buf: &mut [u8], key: [u8; 4]) {
    let key32 = u32::from_ne_bytes(key);
    let key64 = (u64::from(key32) << 32) | u64::from(key32);
    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        for word in chunk.chunks_exact_mut(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            word.copy_from_slice(&(u64::from_ne_bytes(w) ^ key64).to_ne_bytes());
        }
    }
    // Every chunk was a multiple of 4 bytes, so the tail starts at key byte 0.
    let tail = chunks.into_remainder();
    let mut words = tail.chunks_exact_mut(4);
    for word in &mut words {
        let mut w = [0u8; 4];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u32::from_ne_bytes(w) ^ key32).to_ne_bytes());
    }
    for (b, k) in words.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_the_rfc_definition_for_every_length_and_offset() {
        // RFC 6455 §5.3: octet i of the payload is XORed with key octet i mod 4.
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..100 {
            for offset in 0..8 {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                assert_eq!(apply_mask_at(&mut fast, key, offset), offset + len);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    /// A fixed sequence of keys (xorshift32), the same on every run.
    fn keys(n: usize) -> impl Iterator<Item = [u8; 4]> {
        let mut x = 0x9E37_79B9u32;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_ne_bytes()
        })
    }

    /// `mask(buf, key)` applied as if `buf` started `offset` bytes into the
    /// payload, by the RFC's definition of which key byte comes first.
    fn at_offset(mask: impl Fn(&mut [u8], [u8; 4])) -> impl Fn(&mut [u8], [u8; 4], usize) {
        move |buf, key, offset| mask(buf, std::array::from_fn(|i| key[(offset + i) % 4]))
    }

    /// Checks `mask(buf, key, offset)` against the RFC definition for every
    /// length 0..=300, at every alignment of the buffer and every key offset,
    /// with many keys.
    fn check_against_naive(mask: impl Fn(&mut [u8], [u8; 4], usize)) {
        // Miri (crates/proto/miri.sh) interprets ~10^6 times slower: there,
        // one key, and the lengths around each loop's edges (tails of 0..=70
        // bytes, and the AVX2 dispatch threshold of 128).
        let (key_count, lengths): (usize, Vec<usize>) = if cfg!(miri) {
            (1, (0..=70).chain([127, 128, 129, 300]).collect())
        } else {
            (32, (0..=300).collect())
        };
        let data: Vec<u8> = (0..300 + 4).map(|i| (i * 7 + 3) as u8).collect();
        let (mut fast, mut slow) = (data.clone(), data.clone());
        for key in keys(key_count) {
            for &len in &lengths {
                for start in 0..4 {
                    for offset in 0..4 {
                        let range = start..start + len;
                        fast[range.clone()].copy_from_slice(&data[range.clone()]);
                        slow[range.clone()].copy_from_slice(&data[range.clone()]);
                        mask(&mut fast[range.clone()], key, offset);
                        naive(&mut slow[range.clone()], key, offset);
                        assert_eq!(
                            fast, slow,
                            "len {len} start {start} key {key:?} offset {offset}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_path_matches_the_rfc_definition() {
        check_against_naive(|buf, key, offset| {
            apply_mask_at(buf, key, offset);
        });
        check_against_naive(at_offset(apply_mask));
        check_against_naive(at_offset(apply_mask_words));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_loop_matches_the_rfc_definition() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 on this CPU (or Miri without +avx2): not tested");
            return;
        }
        check_against_naive(at_offset(|buf, key| {
            // SAFETY: the CPU has AVX2, checked above.
            unsafe { apply_mask_avx2(buf, key) }
        }));
    }

    #[test]
    fn masks_the_rfc_example() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut buf = *b"Hello";
        apply_mask(&mut buf, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(buf, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn masking_twice_is_the_identity() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31) as u8).collect();
        let mut buf = data.clone();
        apply_mask(&mut buf, [9, 8, 7, 6]);
        assert_ne!(buf, data);
        apply_mask(&mut buf, [9, 8, 7, 6]);
        assert_eq!(buf, data);
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..257u32).map(|i| i as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key);
        let mut pieces = data;
        let mut off = 0;
        for range in [0..3, 3..10, 10..11, 11..200, 200..257] {
            off = apply_mask_at(&mut pieces[range], key, off);
        }
        assert_eq!(pieces, whole);
    }
}
