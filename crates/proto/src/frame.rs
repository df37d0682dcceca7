//! Frame headers (RFC 6455 §5.2): opcodes, the FIN and RSV bits, 7/16/64-bit
//! payload lengths and the masking key.
//!
//! Decoding checks only what the header alone can tell (opcode known, 64-bit
//! length MSB clear); rules that depend on the connection (masking direction,
//! negotiated extensions, fragmentation state) live in `connection`.

use crate::error::ProtocolError;

/// The largest encoded header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (RFC 6455 §5.2, §11.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The opcode for the low 4 bits of the first header byte.
    pub fn from_u8(n: u8) -> Result<OpCode, ProtocolError> {
        Ok(match n {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::UnknownOpcode(other)),
        })
    }

    /// The 4-bit value of this opcode.
    pub const fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames (§5.5).
    pub const fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded or to-be-encoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final fragment of a message.
    pub fin: bool,
    /// RSV1 (permessage-deflate's "compressed" bit, RFC 7692 §6).
    pub rsv1: bool,
    /// RSV2, meaningful to no extension we know.
    pub rsv2: bool,
    /// RSV3, meaningful to no extension we know.
    pub rsv3: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length, at most 2^63 − 1.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A final, unmasked header with no RSV bits.
    pub fn new(opcode: OpCode, payload_len: u64) -> Self {
        FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
            payload_len,
        }
    }

    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` does not yet hold the whole header, or the
    /// header and its encoded length.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let opcode = OpCode::from_u8(b0 & 0x0F)?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut pos) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut len = [0u8; 8];
                len.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(len);
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(key)
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin: b0 & 0x80 != 0,
                rsv1: b0 & 0x40 != 0,
                rsv2: b0 & 0x20 != 0,
                rsv3: b0 & 0x10 != 0,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// The number of bytes [`FrameHeader::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Encodes this header into `out`, returning the number of bytes written,
    /// using the shortest length form (§5.2: "the minimal number of bytes").
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7)
            | (u8::from(self.rsv1) << 6)
            | (u8::from(self.rsv2) << 5)
            | (u8::from(self.rsv3) << 4)
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = match self.payload_len {
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(h: FrameHeader) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut buf);
        assert_eq!(n, h.encoded_len());
        assert_eq!(FrameHeader::decode(&buf[..n]), Ok(Some((h, n))));
        for short in 0..n {
            assert_eq!(
                FrameHeader::decode(&buf[..short]),
                Ok(None),
                "prefix {short}"
            );
        }
    }

    #[test]
    fn header_round_trips_at_each_length_form() {
        // RFC 6455 §5.2: 7-bit, 16-bit and 64-bit payload lengths.
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, (1 << 63) - 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut h = FrameHeader::new(OpCode::Binary, len);
                h.mask = mask;
                h.fin = len % 2 == 0;
                h.rsv1 = true;
                h.rsv3 = true;
                round_trip(h);
            }
        }
    }

    #[test]
    fn uses_the_minimal_length_encoding() {
        let mut buf = [0u8; MAX_HEADER_LEN];
        assert_eq!(FrameHeader::new(OpCode::Text, 125).encode(&mut buf), 2);
        assert_eq!(FrameHeader::new(OpCode::Text, 126).encode(&mut buf), 4);
        assert_eq!(FrameHeader::new(OpCode::Text, 65535).encode(&mut buf), 4);
        assert_eq!(FrameHeader::new(OpCode::Text, 65536).encode(&mut buf), 10);
    }

    #[test]
    fn rejects_64_bit_length_with_msb_set() {
        // RFC 6455 §5.2: "the most significant bit MUST be 0".
        let buf = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::decode(&buf), Err(ProtocolError::InvalidLength));
    }

    #[test]
    fn rejects_reserved_opcodes() {
        // RFC 6455 §5.2: 0x3–0x7 and 0xB–0xF are reserved.
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::decode(&[0x80 | op, 0]),
                Err(ProtocolError::UnknownOpcode(op))
            );
        }
    }

    #[test]
    fn decodes_known_bytes() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let buf = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = FrameHeader::decode(&buf).unwrap().unwrap();
        assert_eq!(n, 6);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.payload_len, 5);
    }
}
