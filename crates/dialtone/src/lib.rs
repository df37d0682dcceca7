#![doc = include_str!("../README.md")]
//! # dialtone
//!
//! A WebSocket dialer (client) and listener (server) for tokio and for plain
//! `std::net`, driving the sans-I/O RFC 6455 core of [`dialtone_proto`].
//!
//! ```no_run
//! # async fn run() -> dialtone::Result<()> {
//! use dialtone::{CloseCode, Dialer, Message};
//!
//! let (mut ws, _response) = Dialer::new().dial("ws://127.0.0.1:9001/").await?;
//! ws.send("hello").await?;
//! if let Some(Ok(Message::Text(reply))) = ws.recv().await {
//!     println!("{reply}");
//! }
//! ws.close(CloseCode::Normal, "done").await?;
//! # Ok(()) }
//! ```
//!
//! Rooms: [`dialer`] (URL → proxy → TCP → TLS → handshake, auth, redirects),
//! [`listener`] (accept a handshake on any transport, TLS optional),
//! [`socket`] (the async [`WebSocket`]: keepalive, timeouts, split),
//! [`stream_mode`] (a WebSocket as a byte stream), [`tls`], [`proxy`],
//! [`cookies`], [`transport`], [`blocking`] (the same over `std::io`),
//! [`message`], [`handshake`] and [`error`]; with the feature `hyper`,
//! `upgrade` (a WebSocket from a hyper 1 request, HTTP/1.1 or HTTP/2), with
//! `axum`, `axum::WebSocketUpgrade` (see `docs/AXUM.md`), and with
//! `http2`, a TLS [`Listener`] that serves WebSockets over HTTP/2 too.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "axum")]
pub mod axum;
pub mod blocking;
mod blocking_transport;
pub mod cookies;
mod dial_plan;
pub mod dialer;
mod digest;
pub mod error;
#[cfg(feature = "http2")]
mod h2_listener;
#[cfg(feature = "http2")]
mod h2_stream;
pub mod handshake;
pub mod limits;
pub mod listener;
pub mod message;
pub mod proxy;
pub mod socket;
pub mod stream_mode;
pub mod tls;
pub mod transport;
#[cfg(feature = "hyper")]
pub mod upgrade;

pub use cookies::CookieJar;
pub use dialer::{Auth, Dialer};
pub use error::{Error, Rejection, Result};
pub use handshake::{Acceptor, Response};
pub use listener::{accept, Accepted, HttpRequest, Incoming, Listener, Upgraded};
pub use message::Message;
pub use proxy::Proxy;
pub use socket::{WebSocket, WsReader, WsWriter};
pub use stream_mode::StreamMode;
pub use tls::ServerTls;
pub use transport::Transport;

pub use dialtone_proto as proto;
pub use dialtone_proto::handshake::Reject;
pub use dialtone_proto::http;
pub use dialtone_proto::{
    CloseCode, CloseFrame, Config, Deflate, Keepalive, MessageKind, Origin, OriginPolicy, Timeouts,
    Utf8Bytes,
};
