//! Errors. A [`ProtocolError`] is something the peer did wrong; each maps to
//! the close code that answers it. An [`Error`] is something the caller asked
//! for that cannot be done.

use std::time::Duration;

use crate::close::CloseCode;

/// A violation of RFC 6455 (or of our limits) by the peer. Each one fails the
/// connection with the close code given by [`ProtocolError::close_code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// RSV1–3 set with no extension negotiated that defines them (§5.2).
    #[error("reserved bits set without a negotiated extension")]
    ReservedBitsSet,
    /// Opcode 0x3–0x7 or 0xB–0xF (§5.2).
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A client frame without a mask (§5.1).
    #[error("frame from the client is not masked")]
    UnmaskedFrame,
    /// A server frame with a mask (§5.1).
    #[error("frame from the server is masked")]
    MaskedFrame,
    /// A 64-bit length with its most significant bit set (§5.2).
    #[error("64-bit payload length has its most significant bit set")]
    InvalidLength,
    /// A control frame with more than 125 bytes of payload (§5.5).
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// A control frame without FIN (§5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A continuation frame with no message in progress (§5.4).
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is in progress (§5.4).
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A close payload of exactly one byte (§5.5.1).
    #[error("close frame payload of 1 byte")]
    CloseTooShort,
    /// A close code that may not be sent on the wire (§7.4).
    #[error("close code {0} is not allowed on the wire")]
    InvalidCloseCode(u16),
    /// A text message that is not UTF-8 (§8.1).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close reason that is not UTF-8 (§5.5.1).
    #[error("close reason is not valid UTF-8")]
    InvalidUtf8InCloseReason,
    /// A frame longer than the configured maximum.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooBig {
        /// The length the frame header announced.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message longer than the configured maximum.
    #[error("message of at least {size} bytes exceeds the limit of {limit}")]
    MessageTooBig {
        /// How many bytes the message had reached.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// An extension (e.g. permessage-deflate) reported bad data.
    #[error("extension error: {0}")]
    Extension(String),
}

impl ProtocolError {
    /// The close code that answers this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidUtf8InCloseReason => {
                CloseCode::InconsistentData
            }
            ProtocolError::FrameTooBig { .. } | ProtocolError::MessageTooBig { .. } => {
                CloseCode::TooBig
            }
            _ => CloseCode::ProtocolError,
        }
    }
}

/// What [`Connection`](crate::Connection)'s calls refuse (the handshake's
/// own errors are [`HandshakeError`](crate::HandshakeError)s).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A message was handed over after the close frame was sent.
    #[error("the connection is closing or closed; nothing more can be sent")]
    Closed,
    /// The application asked to send a close code that may not go on the wire.
    #[error("close code {0} may not be sent on the wire")]
    CloseCodeNotSendable(CloseCode),
    /// The application asked to send a close reason longer than 123 bytes.
    #[error("close reason of {0} bytes exceeds 123")]
    CloseReasonTooLong(usize),
    /// A message was handed over while a message sent in fragments was
    /// unfinished.
    #[error("a fragmented message is being sent; finish it first")]
    FragmentedMessageInProgress,
    /// The application asked to send a ping or pong over 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlPayloadTooLong(usize),
}

/// No bytes came from the peer within the keepalive's pong deadline (the
/// duration held), so the connection was dropped without a closing
/// handshake: see [`Timeouts`](crate::config::Timeouts) and
/// [`Connection::handle_timeout`](crate::Connection::handle_timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no answer to a keepalive ping within {0:?}")]
pub struct KeepaliveTimeout(pub Duration);
