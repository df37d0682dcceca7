//! What both faces ([`socket`](crate::socket) and
//! [`blocking`](crate::blocking)) keep beside the core, and the rules of
//! driving it that they share.

use std::io;

use dialtone_proto::{Connection, Event, State};

use crate::error::Result;
use crate::message::Message;

/// The most room a read makes at once for a frame the peer announced.
pub(crate) const MAX_READ_RESERVE: usize = 1 << 20;

/// What both faces keep beside the core, and the rules of driving it that
/// they share: a close or an error is reported only once the output queued
/// before it is written; the transport is shut down once, when the core
/// says; a failed transport is given up.
#[derive(Debug, Default)]
pub(crate) struct Driver {
    /// The peer's close or an error, held until the output is written.
    /// (Boxed: it is rare, and `Error` is large.)
    report: Option<Box<Result<Message>>>,
    /// Our side of the transport is shut down.
    shut_down: bool,
}

impl Driver {
    /// The next message to return at once; a close or an error is held.
    pub(crate) fn next_event(&mut self, conn: &mut Connection) -> Option<Message> {
        if self.report.is_none() {
            match conn.next_event() {
                Ok(Some(Event::Close(frame))) => self.hold(Ok(Message::Close(frame))),
                Ok(Some(event)) => return Some(event.into()),
                Ok(None) => {}
                Err(e) => self.hold(Err(e.into())),
            }
        }
        None
    }

    fn hold(&mut self, report: Result<Message>) {
        self.report.get_or_insert_with(|| Box::new(report));
    }

    /// The held close or error, once the output is written.
    pub(crate) fn take_report(&mut self) -> Option<Result<Message>> {
        self.report.take().map(|r| *r)
    }

    /// Whether to read: not once the transport ended, nor while a report
    /// waits for the output (bytes would only pile up).
    pub(crate) fn wants_read(&self, conn: &Connection) -> bool {
        self.report.is_none() && !conn.eof_received()
    }

    /// Whether the transport must be shut down now; call
    /// [`Driver::shut_down`] once it is.
    pub(crate) fn must_shut_down(&self, conn: &Connection) -> bool {
        !self.shut_down && conn.should_close_transport()
    }

    pub(crate) fn shut_down(&mut self) {
        self.shut_down = true;
    }

    /// The transport failed: the core gives it up. After the closing
    /// handshake that only means the peer went first: nothing is lost.
    pub(crate) fn on_io_error(&mut self, conn: &mut Connection, e: io::Error) {
        if conn.state() != State::Closed {
            self.hold(Err(e.into()));
        }
        conn.abort();
    }

    /// Hands the core the time; a keepalive timeout is reported next.
    pub(crate) fn handle_timeout(&mut self, conn: &mut Connection, now: std::time::Instant) {
        if let Err(e) = conn.handle_timeout(now) {
            self.hold(Err(e.into()));
        }
    }

    /// Why a flush failed on a connection given up: the error met (taken,
    /// so it is reported once), or `Closed`.
    #[cfg(feature = "blocking")]
    pub(crate) fn flush_error(&mut self) -> crate::Error {
        match self.report.as_deref() {
            Some(Err(_)) => match self.take_report() {
                Some(Err(e)) => e,
                _ => crate::Error::Closed,
            },
            _ => crate::Error::Closed,
        }
    }
}
