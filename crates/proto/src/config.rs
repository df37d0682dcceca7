//! Limits and options, with defaults safe to face the open internet.

/// Which end of the connection we are (RFC 6455 §5.1: clients mask, servers
/// do not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that dialed: masks every frame it sends, refuses masked frames.
    Client,
    /// The end that listened: refuses unmasked frames, never masks.
    Server,
}

/// Limits and options of a [`Connection`](crate::Connection).
///
/// Every limit bounds memory a peer can make us hold: a frame or message
/// over its limit fails the connection with 1009 (`TooBig`) as soon as its
/// header announces it, before anything is allocated for it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest frame payload accepted, in bytes. Default 16 MiB.
    pub max_frame_size: usize,
    /// The largest message accepted (all its frames together), in bytes.
    /// Default 64 MiB.
    pub max_message_size: usize,
    /// Outgoing messages larger than this are sent as several frames of at
    /// most this many bytes, so that control frames can go out between them.
    /// Default 1 MiB.
    pub max_send_frame_size: usize,
    /// The largest opening handshake head (request line or status line and
    /// headers), in bytes. Default 16 KiB.
    pub max_handshake_size: usize,
    /// permessage-deflate (RFC 7692): a client offers each of these in
    /// order; a server accepts the first client offer that one of these
    /// policies (in order) accepts. Empty (the default): no compression.
    pub deflate: Vec<crate::deflate::Deflate>,
}

impl Config {
    /// The default largest frame: 16 MiB.
    pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;
    /// The default largest message: 64 MiB.
    pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
    /// The default outgoing frame size: 1 MiB.
    pub const DEFAULT_MAX_SEND_FRAME_SIZE: usize = 1 << 20;

    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Config::max_send_frame_size`] (at least 1).
    pub fn max_send_frame_size(mut self, bytes: usize) -> Self {
        self.max_send_frame_size = bytes.max(1);
        self
    }

    /// Adds a permessage-deflate offer (client) or policy (server); see
    /// [`Config::deflate`].
    pub fn deflate(mut self, deflate: crate::deflate::Deflate) -> Self {
        self.deflate.push(deflate);
        self
    }

    /// Sets [`Config::max_handshake_size`].
    pub fn max_handshake_size(mut self, bytes: usize) -> Self {
        self.max_handshake_size = bytes;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: Self::DEFAULT_MAX_FRAME_SIZE,
            max_message_size: Self::DEFAULT_MAX_MESSAGE_SIZE,
            max_send_frame_size: Self::DEFAULT_MAX_SEND_FRAME_SIZE,
            max_handshake_size: crate::handshake::DEFAULT_MAX_HANDSHAKE_SIZE,
            deflate: Vec::new(),
        }
    }
}
