#![doc = include_str!("../README.md")]
//!
//! ## Rooms
//!
//! [`dialer`] (URL → proxy → TCP → TLS → handshake, auth, redirects),
//! [`listener`] (accept a handshake on any transport, TLS optional),
//! [`socket`] (the async [`WebSocket`]: keepalive, timeouts, split),
//! [`stream_mode`] (a WebSocket as a byte stream), [`tls`], [`proxy`],
//! [`cookies`], [`transport`], [`blocking`] (the same over `std::io`),
//! [`limits`] (connection limits per server and per address),
//! [`message`], [`handshake`] and [`error`]; with the `http2` flag (on by
//! default), `http2` (WebSockets over HTTP/2, RFC 8441); with `hyper`,
//! `upgrade` (a WebSocket from a hyper 1 request, HTTP/1.1 or HTTP/2), with
//! `axum`, `axum::WebSocketUpgrade` (see `docs/AXUM.md`), and with
//! `http2-server`, a TLS `Listener` that serves WebSockets over HTTP/2
//! too. A room whose flag
//! is off in this build links to the [feature flags](#feature-flags).
//!
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[`listener`]: #feature-flags\n[`socket`]: #feature-flags\n[`WebSocket`]: #feature-flags\n[`stream_mode`]: #feature-flags\n[`transport`]: #feature-flags"
)]
#![cfg_attr(not(feature = "tls"), doc = "[`tls`]: #feature-flags")]
#![cfg_attr(not(feature = "proxy"), doc = "[`proxy`]: #feature-flags")]
#![cfg_attr(not(feature = "cookies"), doc = "[`cookies`]: #feature-flags")]
#![cfg_attr(not(feature = "blocking"), doc = "[`blocking`]: #feature-flags")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a face (neither `tokio` nor `blocking`) the crate is its types
// and builders only: the handshake steps and drivers they feed are unused.
#![cfg_attr(
    not(any(feature = "tokio", feature = "blocking")),
    allow(dead_code, unused_imports)
)]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;
#[cfg(feature = "blocking")]
mod blocking_transport;
#[cfg(feature = "cookies")]
#[cfg_attr(docsrs, doc(cfg(feature = "cookies")))]
pub mod cookies;
mod dial_plan;
pub mod dialer;
mod digest;
#[cfg(any(feature = "tokio", feature = "blocking"))]
mod driver;
pub mod error;
#[cfg(feature = "http2-server")]
mod h2_listener;
#[cfg(feature = "http2")]
mod h2_stream;
#[cfg(feature = "http2-server")]
mod h2_upgraded;
pub mod handshake;
#[cfg(feature = "http2")]
pub mod http2;
pub mod limits;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod listener;
pub mod message;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod proxy;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod socket;
#[cfg(any(feature = "tokio", feature = "blocking"))]
mod stream_core;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod stream_mode;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod transport;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod upgrade;
#[cfg(all(feature = "io-uring", target_os = "linux"))]
pub mod uring;

#[cfg(feature = "cookies")]
pub use cookies::CookieJar;
pub use dialer::{Auth, Dialer};
pub use error::{Error, Rejection, Result};
pub use handshake::{Acceptor, Response};
#[cfg(feature = "http2")]
pub use http2::{Http2, Http2Connection};
#[cfg(feature = "tokio")]
pub use listener::{accept, Accepted, HttpRequest, Incoming, Listener, Upgraded};
pub use message::Message;
#[cfg(feature = "proxy")]
pub use proxy::Proxy;
#[cfg(feature = "tokio")]
pub use socket::{WebSocket, WsReader, WsWriter};
#[cfg(feature = "tokio")]
pub use stream_mode::StreamMode;
#[cfg(feature = "tls")]
pub use tls::ServerTls;
#[cfg(feature = "tokio")]
pub use transport::Transport;

pub use dialtone_proto as proto;
pub use dialtone_proto::handshake::Reject;
pub use dialtone_proto::http;
pub use dialtone_proto::{
    CloseCode, CloseFrame, Config, Deflate, Keepalive, MessageKind, Origin, OriginPolicy, Timeouts,
    Utf8Bytes,
};
