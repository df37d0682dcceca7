//! The one error type of the I/O crate.

use std::io;

use dialtone_proto::handshake::{HandshakeError, Reject};
use dialtone_proto::ProtocolError;

/// Everything that can go wrong dialing, accepting or using a WebSocket.
///
/// ```
/// use dialtone::{Dialer, Error};
///
/// // Refused before anything is connected: not a WebSocket URL.
/// let err = Dialer::new().dial_blocking("http://127.0.0.1/").unwrap_err();
/// assert!(matches!(err, Error::UnsupportedScheme(ref s) if s == "http"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be parsed or lacks a host.
    #[error("invalid URL: {0}")]
    Url(String),
    /// The URL's scheme is not one this build dials: not `ws` or `wss`, or
    /// `wss` in a build without the `tls` feature.
    #[error("unsupported URL scheme {0:?} (expected ws, or wss with the tls feature)")]
    UnsupportedScheme(String),
    /// The host name did not resolve.
    #[error("could not resolve {host}: {source}")]
    Dns {
        /// The name that was looked up.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// No address of the host accepted a TCP connection.
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: String,
        /// The last error.
        source: io::Error,
    },
    /// A deadline passed: the dial, a client's handshake, or a keepalive
    /// ping's pong.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The server refused the handshake or answered badly. A refusal
    /// (`HandshakeError::Rejected`) keeps the status and headers.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server answered the handshake with a status other than 101 (and
    /// it was not a redirect that was followed): status, headers and the
    /// start of the body, so the caller can react (e.g. to a 401).
    #[error("server refused the handshake: {} {}", .0.status, .0.reason)]
    Rejected(Box<Rejection>),
    /// A redirect could not be followed (too many, a downgrade from TLS,
    /// no or a bad `Location`).
    #[error("redirect: {0}")]
    Redirect(String),
    /// We refused a client's handshake (and answered it with this status).
    #[error("handshake refused: {0}")]
    Refused(Box<Reject>),
    /// The peer broke the protocol; the connection was closed with the
    /// matching code.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The connection is closed; nothing more can be sent or received.
    #[error("connection closed")]
    Closed,
    /// The application asked for something the protocol does not allow
    /// (e.g. a reserved close code, a ping over 125 bytes).
    #[error("{0}")]
    Usage(dialtone_proto::Error),
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    /// The TLS handshake failed. `reason` is what rustls said (an expired
    /// certificate, a name mismatch, an unknown issuer, …); `source` is the
    /// rustls error itself when there is one (there is none when the peer
    /// just closed the connection during the TLS handshake).
    #[error("TLS with {host} failed: {reason}")]
    Tls {
        /// The name the certificate was checked against (or the listener's peer).
        host: String,
        /// Why, in words.
        reason: String,
        /// The rustls error, to match on.
        source: Option<rustls::Error>,
    },
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    /// The TLS options cannot be used: an unreadable file, bad PEM, no key,
    /// a key that does not match its certificate, a bad server name.
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// WebSockets over HTTP/2 (RFC 8441) could not be used: the server did
    /// not agree to HTTP/2 (ALPN), did not enable extended CONNECT
    /// (`SETTINGS_ENABLE_CONNECT_PROTOCOL`), or the HTTP/2 connection
    /// failed. Only when HTTP/2 was required (`Http2::Only`,
    /// `Dialer::connect_http2`) or already in use: otherwise the dialer
    /// falls back to HTTP/1.1.
    #[error("HTTP/2: {0}")]
    Http2(String),
    #[cfg(feature = "proxy")]
    #[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
    /// The proxy could not be reached, or refused or failed to open the
    /// tunnel (a 407, a SOCKS authentication failure, a SOCKS reply code, …).
    #[error("proxy {proxy}: {source}")]
    Proxy {
        /// The proxy, as a URL without its password.
        proxy: String,
        /// What went wrong.
        source: crate::proxy::ProxyError,
    },
}

impl From<dialtone_proto::Error> for Error {
    fn from(e: dialtone_proto::Error) -> Self {
        match e {
            dialtone_proto::Error::Closed => Error::Closed,
            other => Error::Usage(other),
        }
    }
}

impl From<dialtone_proto::KeepaliveTimeout> for Error {
    fn from(e: dialtone_proto::KeepaliveTimeout) -> Self {
        Error::Timeout(e.0)
    }
}

/// A refusal of our handshake by the server.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// use dialtone::{Dialer, Error};
///
/// match Dialer::new().dial("ws://127.0.0.1:9001/private").await {
///     Ok((_ws, _response)) => println!("open"),
///     Err(Error::Rejected(r)) if r.status == 401 => {
///         let challenge = r.headers.get("www-authenticate");
///         println!("{} {} ({challenge:?})", r.status, r.reason);
///         println!("{}", String::from_utf8_lossy(&r.body));
///     }
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status.
    pub status: dialtone_proto::http::StatusCode,
    /// The reason phrase.
    pub reason: String,
    /// The response headers.
    pub headers: dialtone_proto::http::HeaderMap,
    /// The body, at most 64 KiB of it.
    pub body: bytes::Bytes,
}

impl Rejection {
    /// The refusal a response head and the start of its body make.
    pub(crate) fn from_head(head: dialtone_proto::ResponseHead, body: bytes::Bytes) -> Self {
        Rejection {
            status: head.status,
            reason: head.reason,
            headers: head.headers,
            body,
        }
    }
}

/// `Result` with [`Error`].
///
/// ```
/// fn port(text: &str) -> dialtone::Result<u16> {
///     text.parse()
///         .map_err(|_| dialtone::Error::Url(format!("bad port {text:?}")))
/// }
/// assert_eq!(port("9001").unwrap(), 9001);
/// assert!(port("ninety").is_err());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;
