//! Exit statuses of `dial` and `bench`, and the words for a failed dial.
//!
//! A script should be able to tell "the server went away" from "the server
//! broke the protocol" from "nothing listens there" without parsing stderr,
//! so each outcome has its own status. Close codes 1001–1015 map to 101–115
//! (the last two digits of the code, plus 100) so that the status can be
//! read back into the code without the table.

use std::io;
use std::process::ExitCode;

use dialtone::proto::handshake::HandshakeError;
use dialtone::{CloseCode, Error};

/// The connection ended with a `Normal` (1000) close, or as asked.
pub(crate) const SUCCESS: u8 = 0;
/// Any other failure: an unreadable file, an I/O error on stdin/stdout, a
/// benchmark whose echoes did not match.
pub(crate) const FAILURE: u8 = 1;
/// A bad command line (clap's own status) or an unusable URL.
pub(crate) const USAGE: u8 = 2;
/// Nothing to talk to: DNS failure, connection refused, dial timeout, proxy.
pub(crate) const UNREACHABLE: u8 = 3;
/// The TLS handshake failed (certificate, name, protocol).
pub(crate) const TLS: u8 = 4;
/// The server answered the WebSocket handshake with something other than
/// `101` (a 403, a 404, …), or an answer that is not a valid upgrade.
pub(crate) const REFUSED: u8 = 5;
/// Closed with a code in 3000–3999 (registered with IANA).
pub(crate) const CLOSED_REGISTERED: u8 = 120;
/// Closed with a code in 4000–4999 (private use).
pub(crate) const CLOSED_PRIVATE: u8 = 121;

/// The exit status table, as `--help` shows it (docs/CLI.md has the same).
/// A macro, so that `concat!` can put it in clap's help texts.
macro_rules! exit_table {
    () => {
        "\
Exit status:
    0    closed with Normal (1000), or the server answered our own close
    1    other failure (unreadable file, I/O on stdin/stdout, bench echo mismatch)
    2    bad command line or URL
    3    unreachable: DNS failure, connection refused, dial timeout, proxy failure
    4    TLS handshake failed
    5    handshake refused (HTTP status other than 101) or not a valid upgrade
  101    closed with GoingAway (1001)
  102    closed with ProtocolError (1002), sent by the server or by us
  103    closed with UnexpectedData (1003)
  105    closed without a status code (1005)
  106    dropped without a close frame (1006), or no pong within the deadline
  107    closed with InconsistentData (1007), e.g. invalid UTF-8
  108    closed with PolicyViolation (1008)
  109    closed with TooBig (1009)
  110    closed with MissingExtension (1010)
  111    closed with ServerError (1011)
  112    closed with ServiceRestart (1012)
  113    closed with TryAgainLater (1013)
  114    closed with BadGateway (1014)
  120    closed with a code in 3000-3999
  121    closed with a code in 4000-4999"
    };
}
pub(crate) use exit_table;

#[cfg(test)]
const TABLE: &str = exit_table!();

/// The status for a connection that ended with `code`.
pub(crate) fn for_close(code: CloseCode) -> u8 {
    match code.as_u16() {
        1000 => SUCCESS,
        // 1001..=1015 fits in a u8 once 900 is taken off.
        n @ 1001..=1015 => (n - 900) as u8,
        3000..=3999 => CLOSED_REGISTERED,
        4000..=4999 => CLOSED_PRIVATE,
        _ => FAILURE,
    }
}

/// A failed dial: the status, and what to tell the user.
pub(crate) fn for_dial_error(e: &Error) -> (u8, String) {
    match e {
        Error::Url(_) | Error::UnsupportedScheme(_) => (USAGE, e.to_string()),
        Error::Dns { host, source } => (UNREACHABLE, format!("cannot resolve {host}: {source}")),
        Error::Connect { addr, source } if source.kind() == io::ErrorKind::ConnectionRefused => {
            (UNREACHABLE, format!("connection refused by {addr}"))
        }
        Error::Connect { addr, source } => {
            (UNREACHABLE, format!("cannot connect to {addr}: {source}"))
        }
        Error::Timeout(after) => (
            UNREACHABLE,
            format!("no answer within {:.1} s (--timeout)", after.as_secs_f64()),
        ),
        Error::Proxy { .. } => (UNREACHABLE, e.to_string()),
        Error::Io(source) => (
            UNREACHABLE,
            format!("connection lost during the handshake: {source}"),
        ),
        Error::Tls { host, reason, .. } => {
            (TLS, format!("TLS handshake with {host} failed: {reason}"))
        }
        Error::Rejected(r) => (REFUSED, refusal(r.status.as_u16(), &r.reason, &r.body)),
        Error::Handshake(HandshakeError::Rejected(head)) => {
            (REFUSED, refusal(head.status.as_u16(), &head.reason, &[]))
        }
        Error::Handshake(h) => (REFUSED, format!("not a WebSocket upgrade: {h}")),
        Error::Redirect(_) => (REFUSED, e.to_string()),
        // `--http2 only` and a server that cannot.
        Error::Http2(_) => (REFUSED, e.to_string()),
        _ => (FAILURE, e.to_string()),
    }
}

/// `handshake refused: HTTP/1.1 403 Forbidden`, and the first line of the
/// body when there is one, since servers often say why there. (The status
/// line is rebuilt: the handshake parser accepts only HTTP/1.1 answers.)
fn refusal(status: u16, reason: &str, body: &[u8]) -> String {
    let mut said = format!("handshake refused: HTTP/1.1 {status} {reason}");
    let body = String::from_utf8_lossy(body);
    if let Some(line) = body.lines().map(str::trim).find(|l| !l.is_empty()) {
        let line: String = line.chars().take(200).collect();
        said.push_str(&format!("\n  {line}"));
    }
    said
}

/// `status` as the process's exit code.
pub(crate) fn code(status: u8) -> ExitCode {
    ExitCode::from(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map_to_100_plus_their_last_two_digits() {
        assert_eq!(for_close(CloseCode::Normal), 0);
        assert_eq!(for_close(CloseCode::GoingAway), 101);
        assert_eq!(for_close(CloseCode::ProtocolError), 102);
        assert_eq!(for_close(CloseCode::Abruptly), 106);
        assert_eq!(for_close(CloseCode::PolicyViolation), 108);
        assert_eq!(for_close(CloseCode::BadGateway), 114);
        assert_eq!(for_close(CloseCode::from_u16(3001)), 120);
        assert_eq!(for_close(CloseCode::from_u16(4000)), 121);
    }

    #[test]
    fn every_status_in_the_table_is_documented() {
        for code in (1001..=1015).filter(|&n| n != 1004 && n != 1015) {
            let status = for_close(CloseCode::from_u16(code));
            let row = format!("\n  {status}    closed");
            let dropped = format!("\n  {status}    dropped");
            assert!(
                TABLE.contains(&row) || TABLE.contains(&dropped),
                "{code} → {status} missing from the table"
            );
        }
    }
}
