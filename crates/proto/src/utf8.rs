//! UTF-8 validation: whole buffers, and incrementally across the frames and
//! reads of one text message, failing on the first invalid byte (RFC 6455
//! §8.1; Autobahn cases 6.x check that the failure comes "fast").
//!
//! Validation is `simdutf8`'s; this module adds the carrying of a code point
//! split across chunks, and [`Utf8Bytes`], a cheaply cloned string.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// The bytes are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a whole buffer.
#[inline]
pub fn validate(bytes: &[u8]) -> Result<&str, Utf8Error> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| Utf8Error)
}

/// Validates a text message chunk by chunk.
///
/// A code point cut between two chunks is held (at most 3 bytes) until the
/// next chunk completes it. An error is reported as soon as the bytes seen so
/// far cannot begin valid UTF-8, even if the message is not complete.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: usize,
}

/// The length of the sequence a lead byte announces (1 for ASCII and for
/// bytes that start no sequence, which validation then rejects).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// Where the code point that `data` cuts off at its end starts, or
/// `data.len()` if `data` ends on a sequence boundary (or on bytes that
/// validation will reject anyway). Only the last 3 bytes are looked at.
fn incomplete_tail_start(data: &[u8]) -> usize {
    let len = data.len();
    for back in 1..=len.min(3) {
        let b = data[len - back];
        if b & 0xC0 != 0x80 {
            // The last lead byte: does its sequence run past the end?
            return if sequence_len(b) > back {
                len - back
            } else {
                len
            };
        }
    }
    len
}

/// Checks that `seq`, the start of one code point, can still complete.
fn check_prefix(seq: &[u8]) -> Result<(), Utf8Error> {
    // At most 3 bytes: std's scalar check is as fast as anything here, and
    // its `error_len() == None` means "valid so far, cut short".
    match std::str::from_utf8(seq) {
        Err(e) if e.error_len().is_some() => Err(Utf8Error),
        _ => Ok(()),
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next chunk of the message.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len > 0 {
            let want = sequence_len(self.pending[0]);
            let take = (want - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            let seq = &self.pending[..self.pending_len];
            if self.pending_len < want {
                return check_prefix(seq);
            }
            simdutf8::basic::from_utf8(seq).map_err(|_| Utf8Error)?;
            self.pending_len = 0;
        }
        // One SIMD pass over everything up to the last complete code point,
        // so that a chunk cut inside a code point is not validated twice.
        let (whole, tail) = data.split_at(incomplete_tail_start(data));
        simdutf8::basic::from_utf8(whole).map_err(|_| Utf8Error)?;
        if !tail.is_empty() {
            check_prefix(tail)?;
            self.pending[..tail.len()].copy_from_slice(tail);
            self.pending_len = tail.len();
        }
        Ok(())
    }

    /// Checks that the message does not end inside a code point.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }
}

/// An immutable UTF-8 string backed by [`Bytes`]: cloning and slicing it
/// does not copy.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes after checking that they are UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, Utf8Error> {
        validate(&bytes)?;
        Ok(Utf8Bytes(bytes))
    }

    /// Wraps bytes without checking them again (debug builds still do).
    ///
    /// # Safety
    /// `bytes` must be UTF-8: in the connection, bytes that a
    /// [`Utf8Validator`] was fed exactly, accepted in full and finished.
    pub(crate) unsafe fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(validate(&bytes).is_ok());
        Utf8Bytes(bytes)
    }

    /// The string.
    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: every safe constructor checks that the bytes are UTF-8
        // (`try_from_bytes`, `From<String>`, `From<&'static str>`); the one
        // that does not, `from_validated`, is `unsafe` and requires it; and
        // `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives up the string, keeping the bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(data: &[u8], cut: usize) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        for piece in data.chunks(cut.max(1)) {
            v.feed(piece)?;
        }
        v.finish()
    }

    #[test]
    fn accepts_valid_text_cut_anywhere() {
        let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞 \u{10FFFF}".as_bytes();
        for cut in 1..=text.len() {
            assert_eq!(feed_in_pieces(text, cut), Ok(()), "cut {cut}");
        }
    }

    #[test]
    fn fails_on_the_first_invalid_byte_before_the_message_ends() {
        // RFC 6455 §8.1; Autobahn 6.4.x: fail fast, mid-message.
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert_eq!(v.feed(&[0xf4, 0x90, 0x80, 0x80]), Err(Utf8Error));
    }

    #[test]
    fn fails_fast_on_a_split_code_point_that_cannot_complete() {
        // 0xF4 0x90 would encode above U+10FFFF: invalid after the second byte.
        let mut v = Utf8Validator::new();
        v.feed(&[b'a', 0xf4]).unwrap();
        assert_eq!(v.feed(&[0x90]), Err(Utf8Error));
        // An overlong lead byte is wrong at once.
        assert_eq!(Utf8Validator::new().feed(&[0xc0]), Err(Utf8Error));
        // A surrogate (ED A0 80) is wrong after its second byte.
        let mut v = Utf8Validator::new();
        v.feed(&[0xed]).unwrap();
        assert_eq!(v.feed(&[0xa0]), Err(Utf8Error));
    }

    #[test]
    fn rejects_a_message_ending_inside_a_code_point() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xce, 0xba, 0xe1]).unwrap();
        assert_eq!(v.finish(), Err(Utf8Error));
    }

    #[test]
    fn completes_a_code_point_across_three_chunks() {
        let mut v = Utf8Validator::new();
        let clef = "𝄞".as_bytes();
        v.feed(&clef[..1]).unwrap();
        v.feed(&clef[1..2]).unwrap();
        v.feed(&clef[2..]).unwrap();
        v.feed(b"x").unwrap();
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn agrees_with_std_for_every_two_and_three_piece_cut() {
        let samples: [&[u8]; 12] = [
            "a κ € 𝄞 \u{10FFFF}".as_bytes(),
            b"\xe2\x82",         // cut short
            b"ab\xf0\x9d\x84",   // cut short after ASCII
            b"\xc0\xaf",         // overlong
            b"\xed\xa0\x80x",    // surrogate
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"\xf8\x88\x80\x80\x80",
            b"x\xff",
            b"\x80abc", // stray continuation
            b"\xce\xba\xce",
            b"\xe2\x82\xac\xe2\x28\xa1",
            b"\xf0\x9d\x84\x9e\x9e",
        ];
        for data in samples {
            let expected = std::str::from_utf8(data).is_ok();
            for i in 0..=data.len() {
                for j in i..=data.len() {
                    let mut v = Utf8Validator::new();
                    let verdict = [&data[..i], &data[i..j], &data[j..]]
                        .iter()
                        .try_for_each(|piece| v.feed(piece))
                        .and_then(|()| v.finish())
                        .is_ok();
                    assert_eq!(verdict, expected, "{data:?} cut at {i} and {j}");
                }
            }
        }
    }

    #[test]
    fn utf8_bytes_checks_its_input() {
        assert!(Utf8Bytes::try_from_bytes(Bytes::from_static(b"\xff")).is_err());
        let s = Utf8Bytes::try_from_bytes(Bytes::from_static("ok κ".as_bytes())).unwrap();
        assert_eq!(s, "ok κ");
    }
}
