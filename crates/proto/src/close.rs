//! Close codes and close frames (RFC 6455 §5.5.1, §7.4).
//!
//! [`CloseCode`] carries every value of the seed's
//! `Efl.Net.Dialer.Websocket.Close_Reason` enum as a named variant, the codes
//! IANA registered since (1012–1015), and the two ranges open to users.

use std::fmt;

use crate::error::ProtocolError;
use crate::utf8;

/// The status code of a close frame (RFC 6455 §7.4).
///
/// Conversion from `u16` is total: a number with no name becomes
/// [`CloseCode::Reserved`], so a code read off the wire can always be
/// represented and then judged with [`CloseCode::is_allowed_received`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure; the purpose for which the connection was
    /// established has been fulfilled.
    Normal,
    /// 1001: the endpoint is going away, such as a server going down or a
    /// browser having navigated away from a page.
    GoingAway,
    /// 1002: the endpoint is terminating the connection due to a protocol error.
    ProtocolError,
    /// 1003: the endpoint received a type of data it cannot accept (e.g. an
    /// endpoint that understands only text received a binary message).
    UnexpectedData,
    /// 1005: no status code was present in the close frame. Reserved: never
    /// sent on the wire, only reported to applications.
    NoReason,
    /// 1006: the connection was closed abnormally, without a close frame.
    /// Reserved: never sent on the wire, only reported to applications.
    Abruptly,
    /// 1007: a message carried data inconsistent with its type (e.g. invalid
    /// UTF-8 in a text message).
    InconsistentData,
    /// 1008: a message violated the endpoint's policy; a generic code when no
    /// other fits or details are to be hidden.
    PolicyViolation,
    /// 1009: a message was too big to process.
    TooBig,
    /// 1010: the client expected the server to negotiate an extension it did
    /// not return. The reason should list the extensions needed.
    MissingExtension,
    /// 1011: the server met an unexpected condition that prevented it from
    /// fulfilling the request.
    ServerError,
    /// 1012 (IANA): the service is restarting.
    ServiceRestart,
    /// 1013 (IANA): try again later; the service is temporarily overloaded.
    TryAgainLater,
    /// 1014 (IANA): a gateway or proxy received an invalid response from the
    /// upstream server.
    BadGateway,
    /// 1015 (IANA): the TLS handshake failed. Reserved: never sent on the
    /// wire, only reported to applications.
    TlsFailure,
    /// 3000–3999: registered with IANA by libraries, frameworks and
    /// applications (the seed's `iana_registry_start` to `iana_registry_end`).
    Registered(u16),
    /// 4000–4999: private use, by agreement between the two endpoints (the
    /// seed's `private_start` to `private_end`).
    Private(u16),
    /// Any other number: 0–999 (unused), 1004 (reserved), 1016–2999 (reserved
    /// for future RFCs) and 5000 and above (undefined). Never valid on the wire.
    Reserved(u16),
}

impl CloseCode {
    /// The first code of the IANA-registered range (the seed's `iana_registry_start`).
    pub const IANA_REGISTRY_START: u16 = 3000;
    /// The last code of the IANA-registered range (the seed's `iana_registry_end`).
    pub const IANA_REGISTRY_END: u16 = 3999;
    /// The first code of the private range (the seed's `private_start`).
    pub const PRIVATE_START: u16 = 4000;
    /// The last code of the private range (the seed's `private_end`).
    pub const PRIVATE_END: u16 = 4999;

    /// The number of this code.
    pub const fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnexpectedData => 1003,
            CloseCode::NoReason => 1005,
            CloseCode::Abruptly => 1006,
            CloseCode::InconsistentData => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::MissingExtension => 1010,
            CloseCode::ServerError => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::TryAgainLater => 1013,
            CloseCode::BadGateway => 1014,
            CloseCode::TlsFailure => 1015,
            CloseCode::Registered(n) | CloseCode::Private(n) | CloseCode::Reserved(n) => n,
        }
    }

    /// The code for a number; total, see [`CloseCode::Reserved`].
    pub const fn from_u16(n: u16) -> CloseCode {
        match n {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1002 => CloseCode::ProtocolError,
            1003 => CloseCode::UnexpectedData,
            1005 => CloseCode::NoReason,
            1006 => CloseCode::Abruptly,
            1007 => CloseCode::InconsistentData,
            1008 => CloseCode::PolicyViolation,
            1009 => CloseCode::TooBig,
            1010 => CloseCode::MissingExtension,
            1011 => CloseCode::ServerError,
            1012 => CloseCode::ServiceRestart,
            1013 => CloseCode::TryAgainLater,
            1014 => CloseCode::BadGateway,
            1015 => CloseCode::TlsFailure,
            3000..=3999 => CloseCode::Registered(n),
            4000..=4999 => CloseCode::Private(n),
            _ => CloseCode::Reserved(n),
        }
    }

    /// Whether an endpoint may put this code in a close frame (RFC 6455
    /// §7.4.1, §7.4.2): 1000–1003, 1007–1014 and 3000–4999.
    ///
    /// 1005, 1006 and 1015 only ever describe a closure to an application;
    /// 1004, numbers below 1000, 1016–2999 and 5000 and above are reserved.
    pub const fn is_sendable(self) -> bool {
        matches!(self.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether a code received in a close frame is acceptable; any other
    /// fails the connection with [`CloseCode::ProtocolError`] (RFC 6455
    /// §7.4.1: reserved codes must not be sent, so a peer that sends one is
    /// broken).
    pub const fn is_allowed_received(self) -> bool {
        self.is_sendable()
    }

    /// The name of the code, as in the seed's enum (`"normal"`, `"too_big"`…),
    /// or the range it belongs to.
    pub const fn name(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::GoingAway => "going_away",
            CloseCode::ProtocolError => "protocol_error",
            CloseCode::UnexpectedData => "unexpected_data",
            CloseCode::NoReason => "no_reason",
            CloseCode::Abruptly => "abruptly",
            CloseCode::InconsistentData => "inconsistent_data",
            CloseCode::PolicyViolation => "policy_violation",
            CloseCode::TooBig => "too_big",
            CloseCode::MissingExtension => "missing_extension",
            CloseCode::ServerError => "server_error",
            CloseCode::ServiceRestart => "service_restart",
            CloseCode::TryAgainLater => "try_again_later",
            CloseCode::BadGateway => "bad_gateway",
            CloseCode::TlsFailure => "tls_failure",
            CloseCode::Registered(_) => "iana_registered",
            CloseCode::Private(_) => "private",
            CloseCode::Reserved(_) => "reserved",
        }
    }
}

impl From<u16> for CloseCode {
    fn from(n: u16) -> Self {
        CloseCode::from_u16(n)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.as_u16()
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

/// The largest close reason that fits a control frame: 125 bytes of payload
/// less the two bytes of the code (RFC 6455 §5.5).
pub const MAX_REASON_LEN: usize = 123;

/// A close frame's code and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, UTF-8, at most [`MAX_REASON_LEN`] bytes on the wire.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with a code and reason.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }

    /// Parses a received close payload (RFC 6455 §5.5.1).
    ///
    /// An empty payload is a close without a code, reported as
    /// [`CloseCode::NoReason`] (`Ok(None)`). A 1-byte payload, or a code that
    /// may not be sent, is a protocol error; a reason that is not UTF-8 is
    /// inconsistent data (§8.1).
    pub fn parse(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::CloseTooShort),
            _ => {
                let code = CloseCode::from_u16(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_allowed_received() {
                    return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
                }
                let reason = utf8::validate(&payload[2..])
                    .map_err(|_| ProtocolError::InvalidUtf8InCloseReason)?;
                Ok(Some(CloseFrame {
                    code,
                    reason: reason.to_owned(),
                }))
            }
        }
    }

    /// Checks that this frame may be sent: a sendable code and a reason that
    /// fits in a control frame.
    pub fn check_sendable(&self) -> Result<(), crate::Error> {
        if !self.code.is_sendable() {
            return Err(crate::Error::CloseCodeNotSendable(self.code));
        }
        if self.reason.len() > MAX_REASON_LEN {
            return Err(crate::Error::CloseReasonTooLong(self.reason.len()));
        }
        Ok(())
    }

    /// The payload of this close frame: the code in network order, then the reason.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.reason.len());
        out.extend_from_slice(&self.code.as_u16().to_be_bytes());
        out.extend_from_slice(self.reason.as_bytes());
        out
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {:?}", self.code, self.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u16_round_trips_for_every_number() {
        for n in 0..=u16::MAX {
            assert_eq!(CloseCode::from_u16(n).as_u16(), n);
        }
    }

    #[test]
    fn seed_values_have_names_and_numbers() {
        // The seed's Efl.Net.Dialer.Websocket.Close_Reason, value by value.
        let seed = [
            (CloseCode::Normal, 1000),
            (CloseCode::GoingAway, 1001),
            (CloseCode::ProtocolError, 1002),
            (CloseCode::NoReason, 1005),
            (CloseCode::Abruptly, 1006),
            (CloseCode::UnexpectedData, 1003),
            (CloseCode::InconsistentData, 1007),
            (CloseCode::PolicyViolation, 1008),
            (CloseCode::TooBig, 1009),
            (CloseCode::MissingExtension, 1010),
            (CloseCode::ServerError, 1011),
            (CloseCode::Registered(3000), CloseCode::IANA_REGISTRY_START),
            (CloseCode::Registered(3999), CloseCode::IANA_REGISTRY_END),
            (CloseCode::Private(4000), CloseCode::PRIVATE_START),
            (CloseCode::Private(4999), CloseCode::PRIVATE_END),
        ];
        for (code, n) in seed {
            assert_eq!(u16::from(code), n);
            assert_eq!(CloseCode::from(n), code);
        }
        assert_eq!(CloseCode::TooBig.to_string(), "too_big (1009)");
    }

    #[test]
    fn sendable_codes_follow_rfc6455_section_7_4() {
        let sendable: Vec<u16> = (0..=u16::MAX)
            .filter(|&n| CloseCode::from_u16(n).is_sendable())
            .collect();
        let mut expected: Vec<u16> = (1000..=1003).collect();
        expected.extend(1007..=1014);
        expected.extend(3000..=4999);
        assert_eq!(sendable, expected);
        for n in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(!CloseCode::from_u16(n).is_allowed_received(), "{n}");
        }
    }

    #[test]
    fn rejects_one_byte_close_payload() {
        // RFC 6455 §5.5.1: the body, if any, starts with a 2-byte code.
        assert_eq!(CloseFrame::parse(&[3]), Err(ProtocolError::CloseTooShort));
    }

    #[test]
    fn empty_close_payload_means_no_code() {
        assert_eq!(CloseFrame::parse(&[]), Ok(None));
    }

    #[test]
    fn rejects_close_code_not_allowed_on_the_wire() {
        for n in [1005u16, 1006, 1015, 999, 2000, 5000] {
            assert_eq!(
                CloseFrame::parse(&n.to_be_bytes()),
                Err(ProtocolError::InvalidCloseCode(n))
            );
        }
    }

    #[test]
    fn rejects_invalid_utf8_in_close_reason() {
        // RFC 6455 §5.5.1 / §8.1.
        let payload = [0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd];
        assert_eq!(
            CloseFrame::parse(&payload),
            Err(ProtocolError::InvalidUtf8InCloseReason)
        );
    }

    #[test]
    fn close_payload_round_trips() {
        let frame = CloseFrame::new(CloseCode::Private(4321), "bye κόσμε");
        assert_eq!(CloseFrame::parse(&frame.to_payload()), Ok(Some(frame)));
    }

    #[test]
    fn refuses_to_send_reserved_code_or_long_reason() {
        assert!(CloseFrame::new(CloseCode::Abruptly, "")
            .check_sendable()
            .is_err());
        assert!(CloseFrame::new(CloseCode::Normal, "x".repeat(124))
            .check_sendable()
            .is_err());
        assert!(CloseFrame::new(CloseCode::Normal, "x".repeat(123))
            .check_sendable()
            .is_ok());
    }
}
