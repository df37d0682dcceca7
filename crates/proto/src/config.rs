//! Limits and options, with defaults safe to face the open internet.

use std::time::Duration;

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
    /// The connection's deadlines: the close timeout, keepalive and the idle
    /// timeout ([`Connection::poll_timeout`](crate::Connection::poll_timeout)).
    pub timeouts: Timeouts,
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

    /// Sets [`Config::timeouts`].
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
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
            timeouts: Timeouts::default(),
        }
    }
}

/// The deadlines of a connection, one set for every face and role.
///
/// The [`Connection`](crate::Connection) keeps them and says when the next
/// one is due ([`poll_timeout`](crate::Connection::poll_timeout)); the I/O
/// layer only sleeps until then and hands the time back
/// ([`handle_timeout`](crate::Connection::handle_timeout)). Every timer is
/// measured from times handed in, and only while the connection is used:
///
/// - **close**: once a close frame went out or came in (or the connection
///   failed), how long the peer has to finish the closing handshake (take
///   our close frame, send its own, close the transport) before the
///   connection is dropped. Default 2 s, as in EFL.
/// - **keepalive** (off by default): a ping every `interval` while the
///   connection is open; the first unanswered one starts `pong_deadline`,
///   which any received bytes stop (a pong, or anything else: the pong may
///   be queued behind a long message). When it passes, the connection is
///   dropped without a closing handshake (the peer is presumed gone).
/// - **idle** (off by default): when nothing at all arrived for that long
///   while open, the closing handshake starts with
///   [`CloseCode::GoingAway`](crate::CloseCode::GoingAway) (1001, reason
///   `"idle timeout"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// How long the peer has for its part of the closing handshake.
    pub close: Duration,
    /// Keepalive pings, if any.
    pub keepalive: Option<Keepalive>,
    /// The idle timeout, if any.
    pub idle: Option<Duration>,
}

/// Keepalive pings: see [`Timeouts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Keepalive {
    /// How often a ping (empty payload) is sent.
    pub interval: Duration,
    /// How long an unanswered ping may wait for any bytes from the peer.
    pub pong_deadline: Duration,
}

impl Timeouts {
    /// The default close timeout: 2 s, as in EFL.
    pub const DEFAULT_CLOSE: Duration = Duration::from_secs(2);

    /// Sets [`Timeouts::close`].
    pub fn close(mut self, timeout: Duration) -> Self {
        self.close = timeout;
        self
    }

    /// Pings every `interval` and drops the connection when no bytes come
    /// back within `pong_deadline` of the first unanswered ping. A zero
    /// interval turns keepalive off.
    pub fn keepalive(mut self, interval: Duration, pong_deadline: Duration) -> Self {
        self.keepalive = (!interval.is_zero()).then_some(Keepalive {
            interval,
            pong_deadline,
        });
        self
    }

    /// Starts closing with `GoingAway` when nothing arrives for `timeout`;
    /// zero turns it off.
    pub fn idle(mut self, timeout: Duration) -> Self {
        self.idle = (!timeout.is_zero()).then_some(timeout);
        self
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            close: Self::DEFAULT_CLOSE,
            keepalive: None,
            idle: None,
        }
    }
}
