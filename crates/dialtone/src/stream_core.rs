//! The byte-stream adapters' state, shared by the async
//! [`StreamMode`](crate::StreamMode) and the blocking
//! `blocking::StreamMode`: what a received item means to a reader, the
//! UTF-8 carried between text writes, and socket errors as `io::Error`s.

use std::borrow::Cow;
use std::io;

use bytes::Bytes;
use dialtone_proto::{CloseCode, MessageKind};

use crate::error::Error;
use crate::message::Message;

/// The reading side of a stream adapter (shared by the async and blocking
/// ones).
#[derive(Debug, Default)]
pub(crate) struct ReadState {
    /// What is left of the message being read.
    pub(crate) current: Bytes,
    /// The peer's close arrived, or the stream failed: drop everything until
    /// the socket's end.
    draining: bool,
    /// The close was `Abruptly`: report it at the end.
    abrupt: bool,
    /// An error was reported.
    errored: bool,
    /// The socket ended: reads return 0.
    pub(crate) eof: bool,
}

/// What a received item means to a reader.
pub(crate) enum Step {
    /// The payload of a message to return.
    Data(Bytes),
    /// Nothing to return: receive again.
    Continue,
    /// Return this (end of stream, or an error).
    Done(io::Result<()>),
    /// A message of the other kind: close with 1003 and return this.
    WrongKind(io::Error),
}

impl ReadState {
    pub(crate) fn on_item(
        &mut self,
        kind: MessageKind,
        item: Option<crate::Result<Message>>,
    ) -> Step {
        let Some(item) = item else {
            self.eof = true;
            if self.abrupt && !self.errored {
                self.errored = true;
                return Step::Done(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended without a close frame",
                )));
            }
            return Step::Done(Ok(()));
        };
        if self.draining {
            if let Err(e) = item {
                tracing::debug!("stream mode, after the end: {e}");
            }
            return Step::Continue;
        }
        match (item, kind) {
            (Ok(Message::Binary(b)), MessageKind::Binary) => Step::Data(b),
            (Ok(Message::Text(t)), MessageKind::Text) => Step::Data(t.into_bytes()),
            (Ok(Message::Ping(_) | Message::Pong(_)), _) => Step::Continue,
            (Ok(Message::Close(frame)), _) => {
                // Go on receiving: the closing handshake completes first.
                self.draining = true;
                self.abrupt = frame.code == CloseCode::Abruptly;
                Step::Continue
            }
            (Ok(other), _) => {
                self.draining = true;
                self.errored = true;
                let got = if matches!(other, Message::Text(_)) {
                    "text"
                } else {
                    "binary"
                };
                Step::WrongKind(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{got} message in a {} stream", kind_name(kind)),
                ))
            }
            (Err(e), _) => {
                self.draining = true;
                self.errored = true;
                Step::Done(Err(to_io(e)))
            }
        }
    }
}

fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Text => "text",
        MessageKind::Binary => "binary",
    }
}

/// The start of a UTF-8 character cut by the end of a text write, held back
/// until the next write.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Utf8Carry {
    buf: [u8; 4],
    len: usize,
}

impl Utf8Carry {
    /// Sends `data` as one message of `kind` through `send`; for text, the
    /// held-back bytes go first and an incomplete character at the end is
    /// held back. On an error nothing of `data` is taken.
    pub(crate) fn write(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        send: impl FnOnce(&[u8]) -> crate::Result<()>,
    ) -> io::Result<()> {
        if kind == MessageKind::Binary {
            return send(data).map_err(to_io);
        }
        let joined: Cow<'_, [u8]> = if self.len == 0 {
            Cow::Borrowed(data)
        } else {
            let mut v = Vec::with_capacity(self.len + data.len());
            v.extend_from_slice(&self.buf[..self.len]);
            v.extend_from_slice(data);
            Cow::Owned(v)
        };
        let complete = match std::str::from_utf8(&joined) {
            Ok(_) => joined.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("text stream: invalid UTF-8 ({e})"),
                ))
            }
        };
        if complete > 0 {
            send(&joined[..complete]).map_err(to_io)?;
        }
        let rest = &joined[complete..]; // at most 3 bytes
        self.buf[..rest.len()].copy_from_slice(rest);
        self.len = rest.len();
        Ok(())
    }

    /// Fails (and forgets the held-back bytes) if the stream would end
    /// inside a character.
    pub(crate) fn check_end(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.len = 0;
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "text stream: ends inside a UTF-8 character",
        ))
    }
}

/// A socket error as an `io::Error` (see the module docs).
pub(crate) fn to_io(e: Error) -> io::Error {
    match e {
        Error::Io(io) => io,
        e => {
            let kind = match &e {
                Error::Timeout(_) => io::ErrorKind::TimedOut,
                Error::Closed => io::ErrorKind::BrokenPipe,
                Error::Protocol(_) => io::ErrorKind::InvalidData,
                _ => io::ErrorKind::Other,
            };
            io::Error::new(kind, e)
        }
    }
}
