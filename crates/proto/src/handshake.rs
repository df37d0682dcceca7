//! The opening handshake (RFC 6455 §4), both roles, as pure functions over
//! bytes: build the client's request and check the server's response; parse
//! and check the client's request and build the server's answer.
//!
//! Header parsing is `httparse`'s. The head of a request or response is
//! limited in size ([`DEFAULT_MAX_HANDSHAKE_SIZE`]) and in header count.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use sha1::{Digest, Sha1};

use crate::deflate::{self, Agreed, Deflate, NegotiationError};
use crate::extensions::Extension;

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The default limit on the size of a handshake request or response head.
pub const DEFAULT_MAX_HANDSHAKE_SIZE: usize = 16 * 1024;

/// The most header lines a handshake head may have.
pub const MAX_HEADERS: usize = 64;

/// Why a handshake failed, as seen by the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The response head exceeded the size limit.
    #[error("handshake response exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The response was not HTTP.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The server answered with a status other than 101: the status and the
    /// headers are kept so the caller can tell a 401 from a 404.
    #[error("server answered {} instead of 101 Switching Protocols", .0.status)]
    Rejected(Box<ResponseHead>),
    /// `Upgrade: websocket` was missing.
    #[error("response lacks `Upgrade: websocket`")]
    MissingUpgrade,
    /// `Connection: upgrade` was missing.
    #[error("response lacks `Connection: upgrade`")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` was missing or wrong.
    #[error("response has a missing or wrong Sec-WebSocket-Accept")]
    BadAccept,
    /// The server chose a subprotocol we did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    ProtocolNotOffered(String),
    /// The server accepted an extension we did not offer.
    #[error("server accepted extension {0:?}, which was not offered")]
    ExtensionNotOffered(String),
    /// The server's permessage-deflate answer does not fit our offers.
    #[error("{0}")]
    Deflate(#[from] NegotiationError),
    /// The extension header of the response is malformed.
    #[error("malformed Sec-WebSocket-Extensions in the response")]
    BadExtensions,
    /// An extra request header would override a handshake header.
    #[error("header {0} is set by the handshake and cannot be overridden")]
    ReservedHeader(String),
    /// An extra request header had an invalid name or value.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
}

/// The status line and headers of a handshake response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The HTTP status.
    pub status: StatusCode,
    /// The reason phrase the server gave.
    pub reason: String,
    /// The response headers.
    pub headers: HeaderMap,
}

/// Computes `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2 step 5.4).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes from the operating system's
/// CSPRNG, base64-encoded (RFC 6455 §4.1 item 7).
pub fn generate_key() -> String {
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        // No OS randomness: fall back to the address-space and clock entropy
        // the standard library's hasher seeds from, so the key still varies.
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        nonce[..8].copy_from_slice(&state.hash_one(1u8).to_ne_bytes());
        nonce[8..].copy_from_slice(&state.hash_one(2u8).to_ne_bytes());
    }
    BASE64.encode(nonce)
}

/// Whether a comma-separated header (over all its lines) contains `token`,
/// ignoring ASCII case (RFC 7230 §7, RFC 6455 §4.1).
pub fn header_has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The comma-separated elements of every line of a header, trimmed, empty
/// ones skipped; values that are not visible ASCII are skipped too.
pub fn header_tokens<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Headers that the handshake itself sets; an extra header may not replace them.
const RESERVED_REQUEST_HEADERS: [HeaderName; 7] = [
    header::HOST,
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

/// The client's opening handshake: what it sends and how it judges the answer.
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    host: String,
    resource: String,
    key: String,
    origin: Option<String>,
    protocols: Vec<String>,
    extensions: Vec<String>,
    deflate: Vec<Deflate>,
    headers: HeaderMap,
}

/// What a successful client handshake agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` value the server returned, if any.
    pub extensions: Option<String>,
    /// permessage-deflate, if the server accepted one of our offers.
    pub deflate: Option<Agreed>,
}

impl ClientHandshake {
    /// A handshake for `resource` (path and query, e.g. `/chat?room=1`) on
    /// `host` (the `Host` header value, with the port if not the default),
    /// with a fresh random key.
    pub fn new(host: impl Into<String>, resource: impl Into<String>) -> Self {
        let resource = resource.into();
        ClientHandshake {
            host: host.into(),
            resource: if resource.is_empty() {
                "/".into()
            } else {
                resource
            },
            key: generate_key(),
            origin: None,
            protocols: Vec::new(),
            extensions: Vec::new(),
            deflate: Vec::new(),
            headers: HeaderMap::new(),
        }
    }

    /// Offers permessage-deflate with these settings (call again for
    /// fallback offers, in order of preference).
    pub fn deflate(&mut self, offer: Deflate) -> &mut Self {
        self.extensions.push(offer.offer().to_string());
        self.deflate.push(offer);
        self
    }

    /// The `Sec-WebSocket-Key` this handshake sends.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Sets the `Origin` header.
    pub fn origin(&mut self, origin: impl Into<String>) -> &mut Self {
        self.origin = Some(origin.into());
        self
    }

    /// Offers a subprotocol; the server may pick one of those offered.
    pub fn protocol(&mut self, protocol: impl Into<String>) -> &mut Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Offers an extension: one element of `Sec-WebSocket-Extensions`, with
    /// its parameters (e.g. `permessage-deflate; client_max_window_bits`).
    pub fn extension(&mut self, offer: impl Into<String>) -> &mut Self {
        self.extensions.push(offer.into());
        self
    }

    /// Adds a header to the request. Headers the handshake sets itself
    /// (`Host`, `Upgrade`, `Connection`, `Sec-WebSocket-*`) are refused,
    /// whatever their case.
    pub fn header(&mut self, name: &str, value: &str) -> Result<&mut Self, HandshakeError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HandshakeError::InvalidHeader(name.to_owned()))?;
        if RESERVED_REQUEST_HEADERS.contains(&name) || name == header::SEC_WEBSOCKET_ACCEPT {
            return Err(HandshakeError::ReservedHeader(name.as_str().to_owned()));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| HandshakeError::InvalidHeader(name.as_str().to_owned()))?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// The request head to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut line = |name: &str, value: &[u8]| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        line("Host", self.host.as_bytes());
        line("Upgrade", b"websocket");
        line("Connection", b"Upgrade");
        line("Sec-WebSocket-Key", self.key.as_bytes());
        line("Sec-WebSocket-Version", b"13");
        if let Some(origin) = &self.origin {
            line("Origin", origin.as_bytes());
        }
        if !self.protocols.is_empty() {
            line(
                "Sec-WebSocket-Protocol",
                self.protocols.join(", ").as_bytes(),
            );
        }
        if !self.extensions.is_empty() {
            line(
                "Sec-WebSocket-Extensions",
                self.extensions.join(", ").as_bytes(),
            );
        }
        for (name, value) in &self.headers {
            line(name.as_str(), value.as_bytes());
        }
        let mut head = format!("GET {} HTTP/1.1\r\n", self.resource).into_bytes();
        head.extend_from_slice(&out);
        head.extend_from_slice(b"\r\n");
        head
    }

    /// Judges the server's response head (RFC 6455 §4.1, the client's checks 1–6).
    pub fn check_response(&self, head: &ResponseHead) -> Result<Negotiated, HandshakeError> {
        if head.status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(HandshakeError::Rejected(Box::new(head.clone())));
        }
        let h = &head.headers;
        if !header_has_token(h, &header::UPGRADE, "websocket") {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !header_has_token(h, &header::CONNECTION, "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        let mut accepts = h.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
        match (accepts.next(), accepts.next()) {
            (Some(v), None) if v.as_bytes() == accept_key(self.key.as_bytes()).as_bytes() => {}
            _ => return Err(HandshakeError::BadAccept),
        }
        self.negotiate(h)
    }

    /// The subprotocol and extension checks of a successful answer, the
    /// same over HTTP/1.1 and HTTP/2 (RFC 6455 §4.1 items 5–6; RFC 8441 §5
    /// keeps them as they are).
    fn negotiate(&self, h: &HeaderMap) -> Result<Negotiated, HandshakeError> {
        let protocol = match header_tokens(h, &header::SEC_WEBSOCKET_PROTOCOL).collect::<Vec<_>>()[..]
        {
            [] => None,
            [p] if self.protocols.iter().any(|o| o == p) => Some(p.to_owned()),
            ref other => return Err(HandshakeError::ProtocolNotOffered(other.join(", "))),
        };
        let answered =
            crate::extensions::from_headers(h).map_err(|_| HandshakeError::BadExtensions)?;
        let offered: Vec<&str> = self
            .extensions
            .iter()
            .map(|e| e.split(';').next().unwrap_or("").trim())
            .collect();
        let mut agreed = None;
        for ext in &answered {
            if !offered.iter().any(|o| o.eq_ignore_ascii_case(&ext.name)) {
                return Err(HandshakeError::ExtensionNotOffered(ext.name.clone()));
            }
            if ext.name.eq_ignore_ascii_case(deflate::PERMESSAGE_DEFLATE) {
                if agreed.is_some() {
                    return Err(HandshakeError::Deflate(NegotiationError(
                        "permessage-deflate answered twice".into(),
                    )));
                }
                agreed = Some(Deflate::check_response(&self.deflate, ext)?);
            }
        }
        let extensions: Vec<String> = answered.iter().map(ToString::to_string).collect();
        Ok(Negotiated {
            protocol,
            extensions: (!extensions.is_empty()).then(|| extensions.join(", ")),
            deflate: agreed,
        })
    }
}

/// Request headers that HTTP/2 forbids (RFC 9113 §8.2.2: connection-specific
/// fields): an extended CONNECT leaves them out rather than have the
/// HTTP/2 layer refuse the whole request.
const HTTP1_ONLY_HEADERS: [&str; 4] = ["keep-alive", "proxy-connection", "transfer-encoding", "te"];

/// The `:protocol` pseudo-header of a WebSocket's extended CONNECT (RFC 8441 §4).
pub const EXTENDED_CONNECT_PROTOCOL: &str = "websocket";

/// The same handshake over HTTP/2 (RFC 8441): an extended CONNECT instead
/// of `GET` + `Upgrade`, answered by `200` instead of `101`. There is no
/// key and no accept (§5: the stream itself proves the server understood);
/// the version, subprotocol and extension headers and their negotiation
/// are those of HTTP/1.1.
impl ClientHandshake {
    /// The extended CONNECT request for this handshake, for the HTTP/2
    /// layer to send with `:protocol` set to [`EXTENDED_CONNECT_PROTOCOL`]:
    /// method `CONNECT`, a URI that gives `:scheme` (`https`, or `http`
    /// for cleartext HTTP/2), `:authority` (the host) and `:path` (the
    /// resource), `sec-websocket-version: 13`, the subprotocol and extension
    /// offers, `origin` and the extra headers, less those HTTP/2 forbids.
    /// No `sec-websocket-key`, `upgrade` or `connection` (RFC 8441 §5).
    pub fn to_extended_connect(&self, scheme: &str) -> Result<Request<()>, HandshakeError> {
        let uri = format!("{scheme}://{}{}", self.host, self.resource);
        let mut builder = Request::builder()
            .method(Method::CONNECT)
            .uri(&uri)
            .version(Version::HTTP_2);
        let h = builder
            .headers_mut()
            .ok_or_else(|| HandshakeError::InvalidHeader(uri.clone()))?;
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        let mut add = |name: HeaderName, value: String| {
            let value = HeaderValue::try_from(value)
                .map_err(|_| HandshakeError::InvalidHeader(name.as_str().to_owned()))?;
            h.insert(name, value);
            Ok::<_, HandshakeError>(())
        };
        if let Some(origin) = &self.origin {
            add(header::ORIGIN, origin.clone())?;
        }
        if !self.protocols.is_empty() {
            add(header::SEC_WEBSOCKET_PROTOCOL, self.protocols.join(", "))?;
        }
        if !self.extensions.is_empty() {
            add(header::SEC_WEBSOCKET_EXTENSIONS, self.extensions.join(", "))?;
        }
        for (name, value) in &self.headers {
            if !HTTP1_ONLY_HEADERS.contains(&name.as_str()) {
                h.append(name.clone(), value.clone());
            }
        }
        builder
            .body(())
            .map_err(|_| HandshakeError::InvalidHeader(uri))
    }

    /// Judges the answer to [`ClientHandshake::to_extended_connect`]: `200`
    /// opens the WebSocket, any other status is [`HandshakeError::Rejected`];
    /// then the subprotocol and extension checks of
    /// [`ClientHandshake::check_response`].
    pub fn check_extended_connect_response(
        &self,
        head: &ResponseHead,
    ) -> Result<Negotiated, HandshakeError> {
        if head.status != StatusCode::OK {
            return Err(HandshakeError::Rejected(Box::new(head.clone())));
        }
        self.negotiate(&head.headers)
    }
}

/// Parses a response head from the start of `buf`: `Ok(None)` until the
/// blank line has arrived, then the head and its length in bytes (what
/// follows it is the first WebSocket data).
pub fn parse_response(
    buf: &[u8],
    limit: usize,
) -> Result<Option<(ResponseHead, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limit => {
            return Err(HandshakeError::TooLarge { limit })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge { limit }),
        Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
    };
    if len > limit {
        return Err(HandshakeError::TooLarge { limit });
    }
    if resp.version != Some(1) {
        return Err(HandshakeError::Malformed("not HTTP/1.1".into()));
    }
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| HandshakeError::Malformed("bad status code".into()))?;
    let reason = resp.reason.unwrap_or("").to_owned();
    let headers = to_header_map(resp.headers)
        .map_err(|name| HandshakeError::Malformed(format!("bad header {name:?}")))?;
    Ok(Some((
        ResponseHead {
            status,
            reason,
            headers,
        },
        len,
    )))
}

fn to_header_map(parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| h.name.to_owned())?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| h.name.to_owned())?;
        map.append(name, value);
    }
    Ok(map)
}

/// A refusal of a client's handshake: the HTTP status, a one-line reason
/// (sent as the body) and any headers the status calls for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Reject {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// A one-line reason, sent as the body.
    pub reason: String,
    /// Extra response headers (e.g. `Sec-WebSocket-Version: 13` with 426).
    /// A list rather than a map, to keep refusals small.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reject {
    /// A refusal with a status and a reason.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Reject {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    fn bad_request(reason: &str) -> Self {
        Reject::new(StatusCode::BAD_REQUEST, reason)
    }

    /// The refusal as an HTTP response for servers whose HTTP layer writes
    /// the bytes (hyper): the status, the reason as a `text/plain` body and
    /// the headers; on HTTP/2 and later, headers that only mean something
    /// to an HTTP/1.1 connection (`Upgrade`, `Connection`), which HTTP/2
    /// forbids, are left out.
    pub fn to_response(&self, version: Version) -> http::Response<String> {
        let reason: String = self.reason.chars().filter(|c| !c.is_control()).collect();
        let mut response = http::Response::new(format!("{reason}\n"));
        *response.status_mut() = self.status;
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let h1 = version <= Version::HTTP_11;
        for (name, value) in &self.headers {
            if h1 || (name != header::UPGRADE && name != header::CONNECTION) {
                h.append(name.clone(), value.clone());
            }
        }
        response
    }

    /// The whole HTTP response, head and body; it asks the client to close.
    pub fn to_bytes(&self) -> Vec<u8> {
        let reason: String = self.reason.chars().filter(|c| !c.is_control()).collect();
        let body = format!("{reason}\n");
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// Parses a request head from the start of `buf`: `Ok(None)` until the blank
/// line has arrived, then the request and its length in bytes. A head over
/// `limit` bytes or [`MAX_HEADERS`] lines is refused with 431.
pub fn parse_request(buf: &[u8], limit: usize) -> Result<Option<(Request<()>, usize)>, Reject> {
    let too_large = || {
        Reject::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request head exceeds {limit} bytes or {MAX_HEADERS} headers"),
        )
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limit => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(e) => return Err(Reject::bad_request(&format!("malformed HTTP request: {e}"))),
    };
    if len > limit {
        return Err(too_large());
    }
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        _ => return Err(Reject::bad_request("HTTP/1.1 or later is required")),
    };
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| Reject::bad_request("bad method"))?;
    let mut builder = Request::builder()
        .method(method)
        .uri(req.path.unwrap_or("/"))
        .version(version);
    if let Some(map) = builder.headers_mut() {
        *map = to_header_map(req.headers)
            .map_err(|name| Reject::bad_request(&format!("bad header {name:?}")))?;
    }
    let request = builder
        .body(())
        .map_err(|_| Reject::bad_request("bad request target"))?;
    Ok(Some((request, len)))
}

/// What a valid client request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHandshake {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// The subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// The extension offers, in the client's order (empty if the header was
    /// malformed: a bad offer is declined, not fatal).
    pub extensions: Vec<Extension>,
}

/// Checks a client's opening handshake (RFC 6455 §4.2.1).
pub fn check_request<B>(req: &Request<B>) -> Result<ServerHandshake, Reject> {
    if req.method() != Method::GET {
        return Err(Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "the WebSocket handshake must be a GET",
        ));
    }
    let h = req.headers();
    if h.get(header::HOST).is_none() {
        return Err(Reject::bad_request("missing Host header"));
    }
    if !header_has_token(h, &header::UPGRADE, "websocket") {
        return Err(
            Reject::new(StatusCode::UPGRADE_REQUIRED, "missing `Upgrade: websocket`")
                .with_header(header::UPGRADE, HeaderValue::from_static("websocket")),
        );
    }
    if !header_has_token(h, &header::CONNECTION, "upgrade") {
        return Err(Reject::bad_request("missing `Connection: upgrade`"));
    }
    check_version(h)?;
    let mut keys = h.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.as_bytes(),
        _ => return Err(Reject::bad_request("missing or repeated Sec-WebSocket-Key")),
    };
    match BASE64.decode(key) {
        Ok(nonce) if nonce.len() == 16 => {}
        _ => {
            return Err(Reject::bad_request(
                "Sec-WebSocket-Key is not 16 bytes in base64",
            ))
        }
    }
    Ok(ServerHandshake {
        accept: accept_key(key),
        protocols: header_tokens(h, &header::SEC_WEBSOCKET_PROTOCOL)
            .map(str::to_owned)
            .collect(),
        extensions: crate::extensions::from_headers(h).unwrap_or_default(),
    })
}

/// The one WebSocket version there is, or the refusal of a request that
/// asks for another (or several): 426 with `Sec-WebSocket-Version: 13`
/// (RFC 6455 §4.2.2 item 4), on HTTP/1.1 and HTTP/2 alike.
fn check_version(h: &HeaderMap) -> Result<(), Reject> {
    let versions: Vec<&str> = header_tokens(h, &header::SEC_WEBSOCKET_VERSION).collect();
    if versions != ["13"] {
        return Err(Reject::new(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version; this server speaks 13",
        )
        .with_header(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        ));
    }
    Ok(())
}

/// What a valid HTTP/2 (or HTTP/3) extended CONNECT asks for: a
/// WebSocket's subprotocols and extension offers, and no key (RFC 8441
/// §5: the `:protocol` pseudo-header does what the key did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendedConnect {
    /// The subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// The extension offers, in the client's order (a malformed header is
    /// declined, as on HTTP/1.1).
    pub extensions: Vec<Extension>,
}

/// Checks a WebSocket opening handshake carried by an HTTP/2 extended
/// CONNECT (RFC 8441 §4–5); `protocol` is the request's `:protocol`
/// pseudo-header, which the HTTP/2 layer keeps outside the header map.
///
/// The method must be CONNECT (405), `:protocol` must be `websocket` (400;
/// none at all is a plain CONNECT, which a WebSocket server does not
/// serve), `Sec-WebSocket-Version` must be 13 (426, as on HTTP/1.1), and
/// `Sec-WebSocket-Key` / `Sec-WebSocket-Accept` must be absent (400: RFC
/// 8441 §5 replaces their processing with `:protocol`). HTTP/2 has no
/// `Host` header: the `:authority` is the request URI's.
pub fn check_extended_connect<B>(
    req: &Request<B>,
    protocol: Option<&str>,
) -> Result<ExtendedConnect, Reject> {
    if req.method() != Method::CONNECT {
        return Err(Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket over HTTP/2 is opened with an extended CONNECT",
        ));
    }
    match protocol {
        Some(p) if p.eq_ignore_ascii_case("websocket") => {}
        Some(_) => {
            return Err(Reject::bad_request(
                "the extended CONNECT's :protocol is not websocket",
            ))
        }
        None => {
            return Err(Reject::bad_request(
                "a CONNECT without :protocol is not a WebSocket handshake",
            ))
        }
    }
    let h = req.headers();
    if req.uri().authority().is_none() && h.get(header::HOST).is_none() {
        return Err(Reject::bad_request("missing :authority"));
    }
    check_version(h)?;
    if h.contains_key(header::SEC_WEBSOCKET_KEY) || h.contains_key(header::SEC_WEBSOCKET_ACCEPT) {
        return Err(Reject::bad_request(
            "Sec-WebSocket-Key is not used over HTTP/2 (RFC 8441 section 5)",
        ));
    }
    Ok(ExtendedConnect {
        protocols: header_tokens(h, &header::SEC_WEBSOCKET_PROTOCOL)
            .map(str::to_owned)
            .collect(),
        extensions: crate::extensions::from_headers(h).unwrap_or_default(),
    })
}

/// The server's acceptance as an HTTP response head, for servers whose
/// HTTP layer writes the bytes (hyper): `101 Switching Protocols` with
/// `Upgrade`, `Connection` and `Sec-WebSocket-Accept` when `accept` is
/// given (HTTP/1.1, RFC 6455 §4.2.2), else `200 OK` (HTTP/2 extended
/// CONNECT, RFC 8441 §5); the chosen subprotocol and extensions either way.
pub fn accept_response_head(
    accept: Option<&str>,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = match accept {
        Some(_) => StatusCode::SWITCHING_PROTOCOLS,
        None => StatusCode::OK,
    };
    let h = response.headers_mut();
    let value = |v: &str| HeaderValue::from_str(v).ok();
    if let Some(accept) = accept {
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Some(v) = value(accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
    }
    if let Some(v) = protocol.and_then(value) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Some(v) = extensions.and_then(value) {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    response
}

/// The server's `101 Switching Protocols` answer (RFC 6455 §4.2.2).
pub fn accept_response(
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    headers: &HeaderMap,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    if let Some(p) = protocol {
        line(b"Sec-WebSocket-Protocol", p.as_bytes());
    }
    if let Some(e) = extensions {
        line(b"Sec-WebSocket-Extensions", e.as_bytes());
    }
    for (name, value) in headers {
        line(name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = DEFAULT_MAX_HANDSHAKE_SIZE;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn generated_keys_are_16_random_bytes() {
        let a = generate_key();
        let b = generate_key();
        assert_eq!(BASE64.decode(&a).unwrap().len(), 16);
        assert_ne!(a, b);
    }

    fn server_answer(client: &ClientHandshake, extra: &str) -> ResponseHead {
        let raw = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
            accept_key(client.key().as_bytes())
        );
        let (head, len) = parse_response(raw.as_bytes(), LIMIT).unwrap().unwrap();
        assert_eq!(len, raw.len());
        head
    }

    #[test]
    fn client_and_server_agree() {
        let mut client = ClientHandshake::new("example.com:8080", "/chat?x=1");
        client
            .protocol("chat")
            .protocol("superchat")
            .origin("http://example.com");
        client.header("Authorization", "Bearer t").unwrap();
        let bytes = client.to_bytes();
        let (req, len) = parse_request(&bytes, LIMIT).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(req.uri(), "/chat?x=1");
        assert_eq!(req.headers()["authorization"], "Bearer t");
        assert_eq!(req.headers()["origin"], "http://example.com");
        let server = check_request(&req).unwrap();
        assert_eq!(server.protocols, ["chat", "superchat"]);
        let resp = accept_response(&server.accept, Some("superchat"), None, &HeaderMap::new());
        let (head, _) = parse_response(&resp, LIMIT).unwrap().unwrap();
        assert_eq!(
            client.check_response(&head).unwrap().protocol.as_deref(),
            Some("superchat")
        );
    }

    #[test]
    fn response_tokens_are_case_insensitive() {
        // RFC 6455 §4.1 items 2–3: "websocket" and "upgrade" match ASCII case-insensitively.
        let client = ClientHandshake::new("h", "/");
        assert!(client.check_response(&server_answer(&client, "")).is_ok());
    }

    #[test]
    fn rejects_wrong_accept_key() {
        let client = ClientHandshake::new("h", "/");
        let other = ClientHandshake::new("h", "/");
        assert_eq!(
            client.check_response(&server_answer(&other, "")),
            Err(HandshakeError::BadAccept)
        );
    }

    #[test]
    fn exposes_status_and_headers_of_a_refusal() {
        let client = ClientHandshake::new("h", "/");
        let raw = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\r\n";
        let (head, _) = parse_response(raw, LIMIT).unwrap().unwrap();
        match client.check_response(&head) {
            Err(HandshakeError::Rejected(head)) => {
                assert_eq!(head.status, StatusCode::UNAUTHORIZED);
                assert_eq!(head.headers["www-authenticate"], "Basic realm=\"x\"");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_subprotocol_not_offered() {
        // RFC 6455 §4.1 item 6.
        let mut client = ClientHandshake::new("h", "/");
        client.protocol("a");
        let head = server_answer(&client, "Sec-WebSocket-Protocol: b\r\n");
        assert_eq!(
            client.check_response(&head),
            Err(HandshakeError::ProtocolNotOffered("b".into()))
        );
    }

    #[test]
    fn rejects_extension_not_offered() {
        // RFC 6455 §4.1 item 5.
        let client = ClientHandshake::new("h", "/");
        let head = server_answer(&client, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert_eq!(
            client.check_response(&head),
            Err(HandshakeError::ExtensionNotOffered(
                "permessage-deflate".into()
            ))
        );
    }

    #[test]
    fn rejects_missing_upgrade_headers() {
        let client = ClientHandshake::new("h", "/");
        let accept = accept_key(client.key().as_bytes());
        for (raw, want) in [
            (
                format!("HTTP/1.1 101 OK\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"),
                HandshakeError::MissingUpgrade,
            ),
            (
                format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"),
                HandshakeError::MissingConnectionUpgrade,
            ),
        ] {
            let (head, _) = parse_response(raw.as_bytes(), LIMIT).unwrap().unwrap();
            assert_eq!(client.check_response(&head), Err(want));
        }
    }

    #[test]
    fn refuses_handshake_headers_as_extra_headers_whatever_their_case() {
        let mut client = ClientHandshake::new("h", "/");
        for name in [
            "sec-websocket-key",
            "UPGRADE",
            "Connection",
            "Sec-WebSocket-Version",
            "host",
        ] {
            assert!(matches!(
                client.header(name, "x"),
                Err(HandshakeError::ReservedHeader(_))
            ));
        }
        assert!(client.header("X-Ok", "1").is_ok());
    }

    fn request(extra: &str) -> String {
        format!("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n")
    }

    fn check(raw: &str) -> Result<ServerHandshake, Reject> {
        let (req, _) = parse_request(raw.as_bytes(), LIMIT)?.expect("complete");
        check_request(&req)
    }

    #[test]
    fn answers_426_to_other_versions() {
        // RFC 6455 §4.2.2 item 4.
        let r = check(&request("Sec-WebSocket-Version: 8\r\n")).unwrap_err();
        assert_eq!(r.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(
            r.headers,
            [(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13")
            )]
        );
        let wire = String::from_utf8(r.to_bytes()).unwrap();
        assert!(wire.starts_with("HTTP/1.1 426 "));
        assert!(wire.contains("sec-websocket-version: 13\r\n"));
    }

    #[test]
    fn accepts_a_valid_request() {
        let hs = check(&request("Sec-WebSocket-Version: 13\r\n")).unwrap();
        assert_eq!(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn answers_400_to_bad_requests() {
        let bad = [
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_owned(),
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_owned(),
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n".to_owned(),
            "GET / HTTP/1.0\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_owned(),
            "GARBAGE\0\r\n\r\n".to_owned(),
        ];
        for raw in bad {
            let r = check(&raw).unwrap_err();
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{raw:?}");
            assert!(!r.reason.contains('\n'));
        }
        let post = check(&request("Sec-WebSocket-Version: 13\r\n").replacen("GET", "POST", 1));
        assert_eq!(post.unwrap_err().status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn refuses_oversized_heads_with_431() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(LIMIT));
        let r = parse_request(big.as_bytes(), LIMIT).unwrap_err();
        assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        let r = parse_request(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), LIMIT);
        assert_eq!(
            r.unwrap_err().status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let resp = format!("HTTP/1.1 101 OK\r\nX: {}\r\n", "b".repeat(LIMIT));
        assert_eq!(
            parse_response(resp.as_bytes(), LIMIT),
            Err(HandshakeError::TooLarge { limit: LIMIT })
        );
    }

    #[test]
    fn waits_for_the_whole_head() {
        let raw = request("Sec-WebSocket-Version: 13\r\n");
        for cut in 0..raw.len() {
            assert!(matches!(
                parse_request(&raw.as_bytes()[..cut], LIMIT),
                Ok(None)
            ));
        }
    }
}

#[cfg(test)]
mod extended_connect_tests {
    use super::*;

    fn connect(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .method(Method::CONNECT)
            .uri("https://example.com/chat")
            .version(Version::HTTP_2);
        for (name, value) in headers {
            b = b.header(*name, *value);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn accepts_an_extended_connect_with_version_13_and_reads_the_offers() {
        let req = connect(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ]);
        let offer = check_extended_connect(&req, Some("websocket")).unwrap();
        assert_eq!(offer.protocols, ["chat", "superchat"]);
        assert_eq!(offer.extensions.len(), 1);
    }

    #[test]
    fn refuses_what_rfc_8441_section_5_rules_out() {
        let v13 = ("sec-websocket-version", "13");
        let status =
            |req: Request<()>, protocol| check_extended_connect(&req, protocol).unwrap_err().status;
        assert_eq!(status(connect(&[v13]), None), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(connect(&[v13]), Some("webtransport")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(
                connect(&[("sec-websocket-version", "8")]),
                Some("websocket")
            ),
            StatusCode::UPGRADE_REQUIRED
        );
        assert_eq!(
            status(
                connect(&[v13, ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]),
                Some("websocket")
            ),
            StatusCode::BAD_REQUEST
        );
        let get = Request::get("https://example.com/").body(()).unwrap();
        assert_eq!(
            status(get, Some("websocket")),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn the_acceptance_is_101_with_accept_on_http11_and_200_without_on_http2() {
        let h1 = accept_response_head(Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), Some("chat"), None);
        assert_eq!(h1.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            h1.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(h1.headers()["upgrade"], "websocket");
        let h2 = accept_response_head(None, Some("chat"), Some("permessage-deflate"));
        assert_eq!(h2.status(), StatusCode::OK);
        assert!(!h2.headers().contains_key("sec-websocket-accept"));
        assert!(!h2.headers().contains_key("upgrade"));
        assert_eq!(h2.headers()["sec-websocket-protocol"], "chat");
        assert_eq!(
            h2.headers()["sec-websocket-extensions"],
            "permessage-deflate"
        );
    }

    #[test]
    fn a_refusal_on_http2_leaves_out_http11_connection_headers() {
        let reject = Reject::new(StatusCode::UPGRADE_REQUIRED, "x")
            .with_header(header::UPGRADE, HeaderValue::from_static("websocket"))
            .with_header(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        let h1 = reject.to_response(Version::HTTP_11);
        assert_eq!(h1.headers()["upgrade"], "websocket");
        let h2 = reject.to_response(Version::HTTP_2);
        assert_eq!(h2.status(), StatusCode::UPGRADE_REQUIRED);
        assert!(!h2.headers().contains_key("upgrade"));
        assert_eq!(h2.headers()["sec-websocket-version"], "13");
        assert_eq!(h2.body(), "x\n");
    }

    fn answer(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        ResponseHead {
            status: StatusCode::from_u16(status).unwrap(),
            reason: String::new(),
            headers: map,
        }
    }

    #[test]
    fn extended_connect_carries_offers_but_no_key_and_no_http1_headers() {
        let mut client = ClientHandshake::new("example.com:8443", "/chat?room=1");
        client
            .protocol("chat")
            .protocol("v2")
            .origin("https://example.com");
        client.deflate(Deflate::default());
        client.header("Authorization", "Bearer t").unwrap();
        client.header("Keep-Alive", "timeout=5").unwrap();
        let req = client.to_extended_connect("https").unwrap();
        assert_eq!(req.method(), Method::CONNECT);
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.uri().scheme_str(), Some("https"));
        assert_eq!(req.uri().authority().unwrap(), "example.com:8443");
        assert_eq!(req.uri().path_and_query().unwrap(), "/chat?room=1");
        let h = req.headers();
        assert_eq!(h["sec-websocket-version"], "13");
        assert_eq!(h["sec-websocket-protocol"], "chat, v2");
        assert!(h["sec-websocket-extensions"]
            .to_str()
            .unwrap()
            .starts_with("permessage-deflate"));
        assert_eq!(h["origin"], "https://example.com");
        assert_eq!(h["authorization"], "Bearer t");
        for absent in [
            "sec-websocket-key",
            "upgrade",
            "connection",
            "host",
            "keep-alive",
        ] {
            assert!(
                !h.contains_key(absent),
                "{absent} must not be sent over HTTP/2"
            );
        }
    }

    #[test]
    fn extended_connect_answer_is_200_and_negotiates_as_http1() {
        let mut client = ClientHandshake::new("h", "/");
        client.protocol("chat");
        client.deflate(Deflate::default());
        let ok = answer(
            200,
            &[
                ("sec-websocket-protocol", "chat"),
                ("sec-websocket-extensions", "permessage-deflate"),
            ],
        );
        let negotiated = client.check_extended_connect_response(&ok).unwrap();
        assert_eq!(negotiated.protocol.as_deref(), Some("chat"));
        assert!(negotiated.deflate.is_some());
        // No accept key is looked for, but the offers still bind the server.
        assert_eq!(
            client
                .check_extended_connect_response(&answer(200, &[("sec-websocket-protocol", "x")])),
            Err(HandshakeError::ProtocolNotOffered("x".into()))
        );
        assert_eq!(
            client.check_extended_connect_response(&answer(
                200,
                &[("sec-websocket-extensions", "x-other")]
            )),
            Err(HandshakeError::ExtensionNotOffered("x-other".into()))
        );
        for status in [101, 204, 403] {
            assert!(matches!(
                client.check_extended_connect_response(&answer(status, &[])),
                Err(HandshakeError::Rejected(head)) if head.status == status
            ));
        }
    }
}

#[cfg(test)]
mod deflate_tests {
    use super::*;

    #[test]
    fn client_offer_is_parsed_by_the_server_and_the_answer_accepted() {
        let mut client = ClientHandshake::new("h", "/");
        client.deflate(Deflate::default());
        let bytes = client.to_bytes();
        let (req, _) = parse_request(&bytes, DEFAULT_MAX_HANDSHAKE_SIZE)
            .unwrap()
            .unwrap();
        let server = check_request(&req).unwrap();
        assert_eq!(server.extensions.len(), 1);
        let (ext, agreed) = deflate::negotiate(&[Deflate::default()], &server.extensions).unwrap();
        let resp = accept_response(
            &server.accept,
            None,
            Some(&ext.to_string()),
            &HeaderMap::new(),
        );
        let (head, _) = parse_response(&resp, DEFAULT_MAX_HANDSHAKE_SIZE)
            .unwrap()
            .unwrap();
        let negotiated = client.check_response(&head).unwrap();
        assert_eq!(negotiated.deflate, Some(agreed));
    }
}
