//! What goes over a WebSocket, as the application sees it.

use bytes::Bytes;
use dialtone_proto::{CloseFrame, Event, MessageKind, Utf8Bytes};

/// A message or control frame, received or to send.
///
/// ```
/// use dialtone::Message;
///
/// let hello = Message::text("hello");
/// assert!(hello.is_data());
/// assert_eq!(hello.as_payload(), b"hello");
/// assert_eq!(Message::from(vec![1u8, 2]), Message::binary(vec![1u8, 2]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping. Received pings are answered automatically.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: received, the peer's code and reason (`NoReason` if it
    /// gave none, `Abruptly` if the connection dropped without one); sent,
    /// starts the closing handshake.
    Close(CloseFrame),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<String>) -> Self {
        Message::Text(Utf8Bytes::from(s.into()))
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        Message::Binary(b.into())
    }

    /// The payload bytes (the reason's bytes for a close).
    pub fn as_payload(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b,
            Message::Close(c) => c.reason.as_bytes(),
        }
    }

    /// Whether this is a text or binary message.
    pub fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }
}

impl From<Event> for Message {
    fn from(e: Event) -> Self {
        match e {
            Event::Text(t) => Message::Text(t),
            Event::Binary(b) => Message::Binary(b),
            Event::Ping(b) => Message::Ping(b),
            Event::Pong(b) => Message::Pong(b),
            Event::Close(c) => Message::Close(c),
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::text(s)
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::text(s)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b.into())
    }
}

/// Hands `msg` to the connection (shared by the async and blocking faces).
pub(crate) fn queue(
    conn: &mut dialtone_proto::Connection,
    msg: &Message,
) -> Result<(), dialtone_proto::Error> {
    match msg {
        Message::Text(t) => conn.send_message_bytes(MessageKind::Text, t.as_bytes()),
        Message::Binary(b) => conn.send_message_bytes(MessageKind::Binary, b),
        Message::Ping(b) => conn.send_ping(b),
        Message::Pong(b) => conn.send_pong(b),
        Message::Close(c) => conn.close(c.clone()),
    }
}

/// Hands `msg` to the connection, a text or binary message uncompressed.
#[cfg(feature = "tokio")]
pub(crate) fn queue_uncompressed(
    conn: &mut dialtone_proto::Connection,
    msg: &Message,
) -> Result<(), dialtone_proto::Error> {
    match msg {
        Message::Text(t) => conn.send_message_uncompressed(MessageKind::Text, t.as_bytes()),
        Message::Binary(b) => conn.send_message_uncompressed(MessageKind::Binary, b),
        other => queue(conn, other),
    }
}
