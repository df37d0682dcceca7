#![doc = include_str!("../README.md")]
//! # dialtone-proto
//!
//! The sans-I/O core of dialtone: every rule of RFC 6455 in one place, with
//! no sockets, clocks or async. Feed a [`Connection`] the bytes you read,
//! take [`Event`]s out; hand it messages, take the bytes to write.
//!
//! ```
//! use dialtone_proto::{Config, Connection, Event, Role};
//!
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//! client.send_text("hello").unwrap();
//! let wire = client.transmit_chunk().unwrap().to_vec();
//! client.advance_transmit(wire.len());
//! server.receive(&wire);
//! assert!(matches!(server.next_event(), Ok(Some(Event::Text(t))) if t == "hello"));
//! ```
//!
//! Modules, one concept each: [`close`] (close codes and frames), [`frame`]
//! (headers), [`mask`], [`utf8`], [`handshake`], [`extensions`] (the
//! `Sec-WebSocket-Extensions` grammar), [`deflate`], [`config`], [`connection`]
//! (the state machine), `outbox` (encoded frames waiting to be written)
//! and [`error`].

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod close;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod origin;
mod outbox;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, Keepalive, Role, Timeouts};
pub use connection::{Connection, Event, MessageKind, State, SHARED_PAYLOAD_MIN};
pub use deflate::{Agreed, Deflate};
pub use error::{Error, KeepaliveTimeout, ProtocolError};
pub use handshake::{ClientHandshake, HandshakeError, Reject, ResponseHead};
pub use origin::{Origin, OriginPolicy};
pub use utf8::Utf8Bytes;

pub use bytes::Bytes;
pub use http;
