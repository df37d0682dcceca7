//! permessage-deflate (RFC 7692): negotiation of its four parameters in
//! both roles, and per-message compression with limits. The
//! `Sec-WebSocket-Extensions` grammar it is negotiated in is
//! [`extensions`](crate::extensions)'s (re-exported here).
//!
//! The codec is `flate2` on the `zlib-rs` backend. Two facts of zlib shape
//! this module:
//! - zlib cannot *compress* with an 8-bit window (it refuses raw deflate with
//!   a 256-byte window). When the peer limits our window to 8 bits we accept,
//!   and send every message uncompressed, which RFC 7692 always allows.
//! - `flate2` inflates with windows of 9–15 bits only. A window larger than
//!   the peer's is always able to inflate its data, so an 8-bit peer window
//!   is inflated with 9 bits.
//!
//! Memory. zlib-rs's deflate state is large whatever the window: a 64 Ki-entry
//! hash table (128 KiB) beside 2^(bits+2) bytes of window and 64 KiB of
//! pending output at memLevel 8, about 330 KiB at 15 bits and 210 KiB at 12;
//! inflate keeps 2^bits bytes of window and about 7 KiB. So neither is made
//! before it is needed: a connection that negotiated compression and is idle
//! (most of them, on a busy server) holds no codec state at all. The
//! compressor is made for the first message sent compressed, the
//! decompressor for the first compressed message received; without context
//! takeover (`*_no_context_takeover`) each is freed again when its message
//! ends, since nothing of it may be reused. With context takeover the state
//! lives as long as the connection, and a smaller window is what the peer
//! is asked for: [`Deflate::server_default`] asks for 12 bits both ways, as
//! Python `websockets`' servers do.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::ProtocolError;
pub use crate::extensions::{parse_extensions, Extension, ExtensionSyntaxError};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The 4 bytes a sync flush ends with, removed from each compressed message
/// on the wire (RFC 7692 §7.2.1) and put back before inflating (§7.2.2).
const SYNC_TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

// ----- negotiation (RFC 7692 §7.1) -----

/// permessage-deflate settings. On a client, one offer; on a server, one
/// policy. Parameter names are RFC 7692's, from the server's and the
/// client's point of view whatever our role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deflate {
    /// Client: ask the server not to keep its compression context between
    /// messages. Server: never keep it.
    pub server_no_context_takeover: bool,
    /// Client: promise not to keep ours. Server: require the client not to.
    pub client_no_context_takeover: bool,
    /// Client: limit the server's window to this (8–15). Server: use at most
    /// this window. `None`: 15, and nothing said.
    pub server_max_window_bits: Option<u8>,
    /// Client: offer `client_max_window_bits`, with this value if any (the
    /// server may then limit our window). Server: limit the client's window
    /// to this, if the client offered `client_max_window_bits` (a client
    /// that did not keeps its 15 bits). `None` on a server: no limit.
    pub client_max_window_bits: Option<u8>,
    /// Messages shorter than this are sent uncompressed (default 32 bytes).
    pub threshold: usize,
    /// The compression level, 0–9 (default 6; 1 is fastest).
    pub level: u32,
}

impl Default for Deflate {
    /// The offer browsers make: `permessage-deflate; client_max_window_bits`;
    /// as a server policy, accept any offer with no further limits.
    fn default() -> Self {
        Deflate {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            threshold: 32,
            level: 6,
        }
    }
}

/// What both ends agreed on for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (8–15).
    pub server_max_window_bits: u8,
    /// The client compresses with at most this window (8–15).
    pub client_max_window_bits: u8,
    /// Our threshold for compressing a message.
    pub threshold: usize,
    /// Our compression level.
    pub level: u32,
}

impl Agreed {
    /// The extension element that states this agreement (the server's answer).
    pub fn to_extension(&self, client_bits_offered: bool) -> Extension {
        let mut params = Vec::new();
        if self.server_no_context_takeover {
            params.push(("server_no_context_takeover".into(), None));
        }
        if self.client_no_context_takeover {
            params.push(("client_no_context_takeover".into(), None));
        }
        if self.server_max_window_bits < 15 {
            params.push((
                "server_max_window_bits".into(),
                Some(self.server_max_window_bits.to_string()),
            ));
        }
        if client_bits_offered && self.client_max_window_bits < 15 {
            params.push((
                "client_max_window_bits".into(),
                Some(self.client_max_window_bits.to_string()),
            ));
        }
        Extension {
            name: PERMESSAGE_DEFLATE.into(),
            params,
        }
    }
}

/// Why a server's permessage-deflate answer is not acceptable to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unacceptable permessage-deflate response: {0}")]
pub struct NegotiationError(pub String);

/// The four parameters as they appear in one offer or response.
#[derive(Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn window_bits(value: &str) -> Option<u8> {
    // RFC 7692 §7.1.2: 1*DIGIT 8–15, no leading zeros.
    match value.parse::<u8>() {
        Ok(n @ 8..=15) if !value.starts_with('0') => Some(n),
        _ => None,
    }
}

/// Reads the parameters of a permessage-deflate element: unknown or repeated
/// parameters and bad values make it invalid (RFC 7692 §7.1).
fn read_params(ext: &Extension) -> Result<Params, String> {
    let mut p = Params::default();
    let mut seen = Vec::new();
    for (name, value) in &ext.params {
        if seen.contains(&name.as_str()) {
            return Err(format!("{name} repeated"));
        }
        seen.push(name);
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                p.server_max_window_bits =
                    Some(window_bits(v).ok_or_else(|| format!("server_max_window_bits={v}"))?);
            }
            ("client_max_window_bits", None) => p.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                p.client_max_window_bits = Some(Some(
                    window_bits(v).ok_or_else(|| format!("client_max_window_bits={v}"))?,
                ));
            }
            (name, _) => return Err(format!("bad parameter {name}")),
        }
    }
    Ok(p)
}

impl Deflate {
    /// A server policy that keeps memory per connection low: it accepts any
    /// valid offer, and asks for 12-bit windows (4 KiB) both ways where the
    /// offer allows (`server_max_window_bits=12`, and
    /// `client_max_window_bits=12` when the client offered the parameter),
    /// as Python `websockets`' servers do by default. A 12-bit window
    /// compresses typical JSON messages nearly as well as 15 bits, and the
    /// decompressor of a client's messages needs 4 KiB of window instead of
    /// 32 KiB.
    ///
    /// ```
    /// use dialtone_proto::{Config, Deflate};
    /// let config = Config::default().deflate(Deflate::server_default());
    /// # let _ = config;
    /// ```
    pub fn server_default() -> Self {
        Deflate {
            server_max_window_bits: Some(12),
            client_max_window_bits: Some(12),
            ..Deflate::default()
        }
    }

    /// Sets the compression threshold.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Sets the compression level (0–9).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// The client's offer for these settings.
    pub fn offer(&self) -> Extension {
        let mut params = Vec::new();
        if self.server_no_context_takeover {
            params.push(("server_no_context_takeover".into(), None));
        }
        if self.client_no_context_takeover {
            params.push(("client_no_context_takeover".into(), None));
        }
        if let Some(bits) = self.server_max_window_bits {
            params.push((
                "server_max_window_bits".into(),
                Some(bits.clamp(8, 15).to_string()),
            ));
        }
        params.push((
            "client_max_window_bits".into(),
            self.client_max_window_bits
                .map(|b| b.clamp(8, 15).to_string()),
        ));
        Extension {
            name: PERMESSAGE_DEFLATE.into(),
            params,
        }
    }

    /// Server: the answer to one client offer under this policy, or `None`
    /// to decline it (RFC 7692 §7.1: an invalid offer is declined, not fatal).
    fn answer(&self, offer: &Extension) -> Option<(Extension, Agreed)> {
        let p = read_params(offer).ok()?;
        // Local settings outside 8–15 are clamped, never answered as is.
        let our_server = self.server_max_window_bits.map(|b| b.clamp(8, 15));
        let our_client = self.client_max_window_bits.map(|b| b.clamp(8, 15));
        let server_bits = match (p.server_max_window_bits, our_server) {
            (Some(asked), Some(ours)) => asked.min(ours),
            (Some(asked), None) => asked,
            (None, ours) => ours.unwrap_or(15),
        };
        let client_bits = match (p.client_max_window_bits, our_client) {
            // A client that did not say it can be limited keeps its 15 bits
            // (RFC 7692 §7.1.2.2: the server may not limit it).
            (None, _) => 15,
            (Some(offered), ours) => offered.unwrap_or(15).min(ours.unwrap_or(15)),
        };
        let agreed = Agreed {
            server_no_context_takeover: p.server_no_context_takeover
                || self.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            threshold: self.threshold,
            level: self.level,
        };
        let mut answer = agreed.to_extension(p.client_max_window_bits.is_some());
        // A window the client asked for is always answered, even at 15.
        if p.server_max_window_bits.is_some() && server_bits == 15 {
            answer
                .params
                .push(("server_max_window_bits".into(), Some("15".into())));
        }
        Some((answer, agreed))
    }

    /// Client: checks the server's answer to our offers (in our order) and
    /// returns what was agreed. The answer must fit one of the offers.
    pub fn check_response(
        offers: &[Deflate],
        response: &Extension,
    ) -> Result<Agreed, NegotiationError> {
        let p = read_params(response).map_err(NegotiationError)?;
        let mut last = NegotiationError("no offer matches".into());
        for offer in offers {
            match offer.fits(&p) {
                Ok(agreed) => return Ok(agreed),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Whether a response fits this offer (RFC 7692 §7.1.1, §7.1.2).
    fn fits(&self, p: &Params) -> Result<Agreed, NegotiationError> {
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            return Err(NegotiationError(
                "server_no_context_takeover was requested but not accepted".into(),
            ));
        }
        let server_bits = match (self.server_max_window_bits, p.server_max_window_bits) {
            (Some(asked), Some(got)) if got <= asked => got,
            (Some(asked), Some(got)) => {
                return Err(NegotiationError(format!(
                    "server_max_window_bits={got} exceeds the {asked} requested"
                )))
            }
            (Some(_), None) => {
                return Err(NegotiationError(
                    "server_max_window_bits was requested but not answered".into(),
                ))
            }
            (None, got) => got.unwrap_or(15),
        };
        let client_bits = match p.client_max_window_bits {
            None => self.client_max_window_bits.unwrap_or(15),
            Some(None) => {
                return Err(NegotiationError(
                    "client_max_window_bits without a value".into(),
                ))
            }
            Some(Some(got)) if got <= self.client_max_window_bits.unwrap_or(15) => got,
            Some(Some(got)) => {
                return Err(NegotiationError(format!(
                    "client_max_window_bits={got} exceeds our offer"
                )))
            }
        };
        Ok(Agreed {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            threshold: self.threshold,
            level: self.level,
        })
    }
}

/// Server: picks the first client offer (in the client's order) that one of
/// our policies (in our order) accepts. Returns the response element and the
/// agreement, or `None` to go without compression. Offers of other
/// extensions are ignored.
pub fn negotiate(policies: &[Deflate], offers: &[Extension]) -> Option<(Extension, Agreed)> {
    offers
        .iter()
        .filter(|o| o.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
        .find_map(|offer| policies.iter().find_map(|p| p.answer(offer)))
}

// ----- per-message compression (RFC 7692 §7.2) -----

/// The compression state of one connection, one role.
pub struct Codec {
    /// Made on first use (see the module docs on memory); `None` between
    /// messages without context takeover, and always when `compress_bits`
    /// is `None`.
    compressor: Option<Compress>,
    /// Our window, or `None` when we may not compress (8-bit window): we
    /// send uncompressed.
    compress_bits: Option<u8>,
    level: u32,
    reset_compressor: bool,
    /// Made for the first compressed message received; `None` between
    /// messages without context takeover.
    decompressor: Option<Decompress>,
    decompress_bits: u8,
    reset_decompressor: bool,
    /// The message's deflate stream ended with a final block: nothing more
    /// may come before the message ends, however the reads split it.
    ended: bool,
    threshold: usize,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("compresses", &self.compress_bits.is_some())
            .field("compressor_allocated", &self.compressor.is_some())
            .field("decompressor_allocated", &self.decompressor.is_some())
            .field("reset_compressor", &self.reset_compressor)
            .field("reset_decompressor", &self.reset_decompressor)
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl Codec {
    /// The codec for our side of an agreement.
    pub fn new(agreed: &Agreed, is_server: bool) -> Codec {
        let (ours, our_reset, theirs, their_reset) = if is_server {
            (
                agreed.server_max_window_bits,
                agreed.server_no_context_takeover,
                agreed.client_max_window_bits,
                agreed.client_no_context_takeover,
            )
        } else {
            (
                agreed.client_max_window_bits,
                agreed.client_no_context_takeover,
                agreed.server_max_window_bits,
                agreed.server_no_context_takeover,
            )
        };
        Codec {
            // Window bits come from negotiation (8–15) or local settings:
            // outside 9–15 zlib cannot compress, and inflating with a larger
            // window than the peer's is always safe.
            compressor: None,
            compress_bits: (9..=15).contains(&ours).then_some(ours),
            level: agreed.level,
            reset_compressor: our_reset,
            decompressor: None,
            decompress_bits: theirs.clamp(9, 15),
            reset_decompressor: their_reset,
            ended: false,
            threshold: agreed.threshold,
        }
    }

    /// Whether a message of `len` bytes should be sent compressed.
    pub fn should_compress(&self, len: usize) -> bool {
        self.compress_bits.is_some() && len >= self.threshold
    }

    /// Whether we can compress at all (not with an 8-bit window).
    pub fn can_compress(&self) -> bool {
        self.compress_bits.is_some()
    }

    /// Whether compressor or decompressor state is allocated now (an idle
    /// connection holds neither; see the module docs on memory).
    pub fn holds_state(&self) -> (bool, bool) {
        (self.compressor.is_some(), self.decompressor.is_some())
    }

    /// Compresses one piece of a message into `out` (cleared first). The last
    /// piece (`fin`) loses the sync-flush trailer and ends the message.
    pub fn compress(&mut self, input: &[u8], fin: bool, out: &mut Vec<u8>) {
        out.clear();
        let Some(bits) = self.compress_bits else {
            out.extend_from_slice(input);
            return;
        };
        let level = self.level;
        let c = self.compressor.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(level), false, bits)
        });
        out.reserve(input.len() / 2 + 64);
        let mut input = input;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = c.total_in();
            // Compressing from memory to memory cannot fail but on misuse.
            let _ = c.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(c.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if fin {
            if out.ends_with(&SYNC_TRAILER) {
                out.truncate(out.len() - SYNC_TRAILER.len());
            }
            if out.is_empty() {
                // Nothing new since the last flush (zlib emits no second
                // empty block): an empty stored block, which the receiver's
                // trailer completes (RFC 7692 §7.2.3.6).
                out.push(0x00);
            }
            if self.reset_compressor {
                // Nothing of it may be used again: free it until the next.
                self.compressor = None;
            }
        }
    }

    /// Inflates one piece of a compressed message, appending to `out`; the
    /// last piece (`fin`) also inflates the trailer and ends the message.
    ///
    /// `out` never grows past `limit + 1` bytes: a message that would inflate
    /// past `limit` fails with [`ProtocolError::MessageTooBig`] as soon as it
    /// does. `on_output` sees each newly inflated piece (for UTF-8 checks).
    pub fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: usize,
        on_output: &mut dyn FnMut(&[u8]) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        self.inflate(input, out, limit, on_output)?;
        if fin {
            if !self.ended {
                self.inflate(&SYNC_TRAILER, out, limit, on_output)?;
            }
            // A final block ended the stream: the next message starts afresh.
            if self.reset_decompressor {
                // Nothing of it may be used again: free it until the next.
                self.decompressor = None;
            } else if self.ended {
                if let Some(d) = self.decompressor.as_mut() {
                    d.reset(false);
                }
            }
            self.ended = false;
        }
        Ok(())
    }

    fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        on_output: &mut dyn FnMut(&[u8]) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        if self.ended {
            return if input.is_empty() {
                Ok(())
            } else {
                Err(ProtocolError::Extension(
                    "data after the final block".into(),
                ))
            };
        }
        let bits = self.decompress_bits;
        let decompressor = self
            .decompressor
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        loop {
            if out.len() == out.capacity() {
                // Grow geometrically, but never past one byte over the limit.
                let room = (limit + 1).saturating_sub(out.len());
                if room == 0 {
                    return Err(ProtocolError::MessageTooBig {
                        size: out.len() as u64,
                        limit,
                    });
                }
                out.reserve_exact(out.len().clamp(4096, 1 << 20).min(room));
            }
            let (in_before, out_before) = (decompressor.total_in(), out.len());
            let status = decompressor
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| ProtocolError::Extension(format!("inflate: {e}")))?;
            input = &input[(decompressor.total_in() - in_before) as usize..];
            if out.len() > limit {
                return Err(ProtocolError::MessageTooBig {
                    size: out.len() as u64,
                    limit,
                });
            }
            on_output(&out[out_before..])?;
            let output_full = out.len() == out.capacity();
            if status == Status::StreamEnd {
                // A final block ends the deflate stream: nothing may follow.
                self.ended = true;
                if !input.is_empty() {
                    return Err(ProtocolError::Extension(
                        "data after the final block".into(),
                    ));
                }
                return Ok(());
            }
            if input.is_empty() && !output_full {
                return Ok(());
            }
            if !output_full && out.len() == out_before && !input.is_empty() {
                return Err(ProtocolError::Extension("inflate made no progress".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> Extension {
        let mut v = parse_extensions(s).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn default_offer_is_what_browsers_send() {
        assert_eq!(
            Deflate::default().offer().to_string(),
            "permessage-deflate; client_max_window_bits"
        );
    }

    /// Server policy × client offer → the answer's text, or declined.
    fn answer(policy: Deflate, offer: &str) -> Option<String> {
        negotiate(&[policy], &parse_extensions(offer).unwrap()).map(|(e, _)| e.to_string())
    }

    #[test]
    fn negotiation_table_server_side() {
        // RFC 7692 §7.1: offer × server policy → response (or declined).
        let d = Deflate::default;
        let rows: Vec<(Deflate, &str, Option<&str>)> = vec![
            (d(), "permessage-deflate", Some("permessage-deflate")),
            (
                d(),
                "permessage-deflate; server_no_context_takeover",
                Some("permessage-deflate; server_no_context_takeover"),
            ),
            (
                d(),
                "permessage-deflate; client_no_context_takeover",
                Some("permessage-deflate; client_no_context_takeover"),
            ),
            (
                Deflate {
                    client_no_context_takeover: true,
                    ..d()
                },
                "permessage-deflate",
                Some("permessage-deflate; client_no_context_takeover"),
            ),
            (
                Deflate {
                    server_no_context_takeover: true,
                    ..d()
                },
                "permessage-deflate",
                Some("permessage-deflate; server_no_context_takeover"),
            ),
            (
                d(),
                "permessage-deflate; server_max_window_bits=10",
                Some("permessage-deflate; server_max_window_bits=10"),
            ),
            (
                d(),
                "permessage-deflate; server_max_window_bits=15",
                Some("permessage-deflate; server_max_window_bits=15"),
            ),
            (
                Deflate {
                    server_max_window_bits: Some(9),
                    ..d()
                },
                "permessage-deflate; server_max_window_bits=12",
                Some("permessage-deflate; server_max_window_bits=9"),
            ),
            (
                Deflate {
                    server_max_window_bits: Some(11),
                    ..d()
                },
                "permessage-deflate",
                Some("permessage-deflate; server_max_window_bits=11"),
            ),
            (
                d(),
                "permessage-deflate; client_max_window_bits",
                Some("permessage-deflate"),
            ),
            (
                d(),
                "permessage-deflate; client_max_window_bits=9",
                Some("permessage-deflate; client_max_window_bits=9"),
            ),
            (
                Deflate {
                    client_max_window_bits: Some(10),
                    ..d()
                },
                "permessage-deflate; client_max_window_bits",
                Some("permessage-deflate; client_max_window_bits=10"),
            ),
            (
                Deflate {
                    client_max_window_bits: Some(10),
                    ..d()
                },
                "permessage-deflate; client_max_window_bits=12",
                Some("permessage-deflate; client_max_window_bits=10"),
            ),
            // The server would limit the client, which cannot be limited:
            // accepted with the client's 15 bits (as Python websockets does).
            (
                Deflate {
                    client_max_window_bits: Some(10),
                    ..d()
                },
                "permessage-deflate",
                Some("permessage-deflate"),
            ),
            // The server default: 12-bit windows where the offer allows.
            (
                Deflate::server_default(),
                "permessage-deflate; client_max_window_bits",
                Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
            ),
            (
                Deflate::server_default(),
                "permessage-deflate",
                Some("permessage-deflate; server_max_window_bits=12"),
            ),
            (
                Deflate::server_default(),
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
                Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"),
            ),
            // Invalid offers are declined, not fatal.
            (d(), "permessage-deflate; server_max_window_bits=7", None),
            (d(), "permessage-deflate; server_max_window_bits=16", None),
            (d(), "permessage-deflate; server_max_window_bits=010", None),
            (d(), "permessage-deflate; server_max_window_bits", None),
            (d(), "permessage-deflate; client_max_window_bits=0", None),
            (d(), "permessage-deflate; server_no_context_takeover=1", None),
            (d(), "permessage-deflate; foo", None),
            (
                d(),
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                None,
            ),
            (d(), "x-webkit-deflate-frame", None),
            // The first acceptable offer wins.
            (
                d(),
                "permessage-deflate; foo, permessage-deflate; server_max_window_bits=12, permessage-deflate",
                Some("permessage-deflate; server_max_window_bits=12"),
            ),
        ];
        for (policy, offer, want) in rows {
            assert_eq!(answer(policy, offer).as_deref(), want, "offer {offer:?}");
        }
    }

    fn check(offer: Deflate, response: &str) -> Result<Agreed, NegotiationError> {
        Deflate::check_response(&[offer], &ext(response))
    }

    #[test]
    fn negotiation_table_client_side() {
        let d = Deflate::default;
        // Acceptable answers.
        let a = check(d(), "permessage-deflate").unwrap();
        assert_eq!(
            (a.server_max_window_bits, a.client_max_window_bits),
            (15, 15)
        );
        let a = check(d(), "permessage-deflate; client_max_window_bits=9").unwrap();
        assert_eq!(a.client_max_window_bits, 9);
        let a = check(d(), "permessage-deflate; server_no_context_takeover").unwrap();
        assert!(a.server_no_context_takeover);
        let a = check(d(), "permessage-deflate; client_no_context_takeover").unwrap();
        assert!(a.client_no_context_takeover);
        let a = check(d(), "permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(a.server_max_window_bits, 10);
        let asked = Deflate {
            server_max_window_bits: Some(10),
            server_no_context_takeover: true,
            ..d()
        };
        let a = check(
            asked.clone(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8",
        )
        .unwrap();
        assert_eq!(a.server_max_window_bits, 8);
        // Answers the client did not allow: the connection fails.
        for (offer, response) in [
            (
                asked.clone(),
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                asked.clone(),
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
            ),
            (asked, "permessage-deflate; server_no_context_takeover"),
            (d(), "permessage-deflate; client_max_window_bits"),
            (
                Deflate {
                    client_max_window_bits: Some(10),
                    ..d()
                },
                "permessage-deflate; client_max_window_bits=11",
            ),
            (d(), "permessage-deflate; server_max_window_bits=7"),
            (d(), "permessage-deflate; bogus"),
            (
                d(),
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            ),
        ] {
            assert!(check(offer, response).is_err(), "{response}");
        }
    }

    fn agreed(server_bits: u8, client_bits: u8, no_takeover: bool) -> Agreed {
        Agreed {
            server_no_context_takeover: no_takeover,
            client_no_context_takeover: no_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            threshold: 0,
            level: 6,
        }
    }

    fn round_trip(a: &Agreed, messages: &[Vec<u8>]) {
        let mut server = Codec::new(a, true);
        let mut client = Codec::new(a, false);
        if a.server_max_window_bits == 8 {
            // zlib cannot compress with 256 bytes of window: we send plain.
            assert!(!server.can_compress() && !server.should_compress(100));
            return;
        }
        for msg in messages {
            let mut wire = Vec::new();
            server.compress(msg, true, &mut wire);
            let mut back = Vec::new();
            client
                .decompress(&wire, true, &mut back, usize::MAX - 1, &mut |_| Ok(()))
                .unwrap();
            assert_eq!(&back, msg);
        }
    }

    #[test]
    fn round_trips_at_every_window_size() {
        let text: Vec<u8> = (0..20_000u32)
            .map(|i| b"the quick brown fox "[(i % 20) as usize] ^ ((i / 997) as u8 & 1))
            .collect();
        let messages = vec![text.clone(), Vec::new(), b"x".to_vec(), text];
        for bits in 8..=15 {
            for no_takeover in [false, true] {
                round_trip(&agreed(bits, bits, no_takeover), &messages);
            }
        }
    }

    #[test]
    fn an_idle_codec_holds_no_state_until_its_first_message() {
        let a = agreed(15, 15, false);
        let (mut server, mut client) = (Codec::new(&a, true), Codec::new(&a, false));
        assert_eq!(server.holds_state(), (false, false));
        let mut wire = Vec::new();
        server.compress(b"hello hello hello hello", true, &mut wire);
        assert_eq!(server.holds_state(), (true, false));
        let mut back = Vec::new();
        client
            .decompress(&wire, true, &mut back, 1 << 20, &mut |_| Ok(()))
            .unwrap();
        assert_eq!(back, b"hello hello hello hello");
        // With context takeover the state outlives the message.
        assert_eq!(client.holds_state(), (false, true));
    }

    #[test]
    fn without_context_takeover_the_state_is_freed_between_messages() {
        let a = agreed(15, 15, true);
        let (mut server, mut client) = (Codec::new(&a, true), Codec::new(&a, false));
        for msg in [&b"first message, first message"[..], b"second", b""] {
            let mut wire = Vec::new();
            server.compress(msg, true, &mut wire);
            assert_eq!(server.holds_state(), (false, false));
            let mut back = Vec::new();
            // A message split in two: the state lives until it ends.
            let (head, tail) = wire.split_at(wire.len() / 2);
            client
                .decompress(head, false, &mut back, 1 << 20, &mut |_| Ok(()))
                .unwrap();
            if !head.is_empty() {
                assert_eq!(client.holds_state(), (false, true));
            }
            client
                .decompress(tail, true, &mut back, 1 << 20, &mut |_| Ok(()))
                .unwrap();
            assert_eq!(client.holds_state(), (false, false));
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn compresses_the_empty_message_to_one_zero_byte() {
        // RFC 7692 §7.2.3.6.
        let mut c = Codec::new(&agreed(15, 15, false), true);
        let mut out = Vec::new();
        c.compress(b"", true, &mut out);
        assert_eq!(out, [0x00]);
    }

    #[test]
    fn inflates_the_rfc_example() {
        // RFC 7692 §7.2.3.1: "Hello" compressed.
        let mut c = Codec::new(&agreed(15, 15, false), false);
        let mut out = Vec::new();
        c.decompress(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            100,
            &mut |_| Ok(()),
        )
        .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn context_takeover_shrinks_a_repeated_message() {
        // RFC 7692 §7.2.3.2: with context takeover the second copy is shorter.
        let msg = b"Hello, Hello, what a message this is".to_vec();
        let mut keep = Codec::new(&agreed(15, 15, false), true);
        let mut reset = Codec::new(&agreed(15, 15, true), true);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keep.compress(&msg, true, &mut a);
        let first = a.len();
        keep.compress(&msg, true, &mut a);
        reset.compress(&msg, true, &mut b);
        reset.compress(&msg, true, &mut b);
        assert!(a.len() < first, "takeover: {} then {}", first, a.len());
        assert_eq!(b.len(), first, "no takeover: the same each time");
    }

    #[test]
    fn stops_inflating_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let mut c = Codec::new(&agreed(15, 15, false), true);
        let mut wire = Vec::new();
        c.compress(&zeros, true, &mut wire);
        assert!(wire.len() < 20_000);
        let mut d = Codec::new(&agreed(15, 15, false), false);
        let mut out = Vec::new();
        let err = d
            .decompress(&wire, true, &mut out, 1 << 20, &mut |_| Ok(()))
            .unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooBig { limit, .. } if limit == 1 << 20));
        assert!(
            out.capacity() <= (1 << 20) + 1,
            "capacity {}",
            out.capacity()
        );
    }

    #[test]
    fn data_after_a_final_block_fails_however_the_reads_split_it() {
        // Two final-block streams ("A", then "B") in one message: refused
        // whether they arrive together or cut between them (found by fuzzing).
        let wire = [0x73, 0x04, 0x00, 0x73, 0x02, 0x00];
        for cut in 0..=wire.len() {
            let mut d = Codec::new(&agreed(15, 15, false), true);
            let mut out = Vec::new();
            let first = d.decompress(&wire[..cut], false, &mut out, 100, &mut |_| Ok(()));
            let r = first
                .and_then(|()| d.decompress(&wire[cut..], true, &mut out, 100, &mut |_| Ok(())));
            assert!(r.is_err(), "cut at {cut}");
        }
        // One final block alone is a whole message, and the next starts afresh.
        let mut d = Codec::new(&agreed(15, 15, false), true);
        let mut out = Vec::new();
        d.decompress(&wire[..3], true, &mut out, 100, &mut |_| Ok(()))
            .unwrap();
        d.decompress(&wire[3..], true, &mut out, 100, &mut |_| Ok(()))
            .unwrap();
        assert_eq!(out, b"AB");
    }

    #[test]
    fn window_bits_outside_the_range_are_clamped_not_panicked() {
        let policy = Deflate {
            server_max_window_bits: Some(16),
            client_max_window_bits: Some(3),
            ..Deflate::default()
        };
        let (ext, agreed) = negotiate(
            &[policy],
            &parse_extensions("permessage-deflate; client_max_window_bits").unwrap(),
        )
        .unwrap();
        assert_eq!(agreed.server_max_window_bits, 15);
        assert_eq!(agreed.client_max_window_bits, 8);
        assert!(ext.to_string().contains("client_max_window_bits=8"));
        let _ = Codec::new(&agreed, true);
        let _ = Codec::new(
            &Agreed {
                server_max_window_bits: 40,
                ..agreed
            },
            false,
        );
    }

    #[test]
    fn rejects_corrupt_data() {
        let mut d = Codec::new(&agreed(15, 15, false), false);
        let mut out = Vec::new();
        assert!(d
            .decompress(&[0xff, 0xff, 0xff], true, &mut out, 100, &mut |_| Ok(()))
            .is_err());
    }
}
