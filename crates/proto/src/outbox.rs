//! Outgoing frames, encoded, waiting to be written.
//!
//! Two queues: control frames (pings, pongs) and data frames (messages, and
//! close frames, which must follow the data handed over before them).
//! Control frames are written ahead of queued data frames, but only at a
//! frame boundary: RFC 6455 §5.4 lets them go between the frames of a
//! message, never inside a frame.
//!
//! Data frames are encoded back to back into one buffer, so that a burst of
//! small messages costs no allocation per frame and goes out in one write.
//! The exception is a payload shared with the application (a server's large
//! message, see [`crate::connection::SHARED_PAYLOAD_MIN`]): only its header
//! is in the buffer, and the payload is written from the application's own
//! `Bytes`, right behind it.
//!
//! Invariants:
//! - `data[..written]` is written; what follows, with the shared payloads
//!   spliced in, is the data still due, in order.
//! - A shared payload at `at` is written after `data[..at]` and before
//!   `data[at..]`. It is the whole payload of the frame whose header ends at
//!   `at`, so no other shared payload has the same `at`, and none is empty.
//! - `ends` holds, in order, where each queued data frame ends in `data`
//!   (for a frame with a shared payload: where its header ends, the payload
//!   being due right there). A frame is written once `written` reached its
//!   end and no shared payload is due at `written`.
//! - A control frame or a data frame may be partly written, never both.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// How many automatic pongs may wait unwritten before a new one replaces
/// the latest: enough that a burst of pings is answered one by one
/// (Autobahn 2.10), few enough to bound the queue (32 × 131 bytes).
pub const MAX_QUEUED_PONGS: usize = 32;

/// A data buffer larger than this is released once written, rather than
/// kept for the next message.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Outgoing frames in two queues; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Control frames, each marked if it is an automatic pong.
    control: VecDeque<(Bytes, bool)>,
    /// The front control frame is partly written (it was advanced in place).
    control_started: bool,
    /// Data frames, encoded back to back (shared payloads excepted).
    data: Vec<u8>,
    /// How much of `data` is written.
    written: usize,
    /// Payloads shared with the application: `(at, payload)`, due after
    /// `data[..at]`. The front one may be partly written (advanced in place).
    shared: VecDeque<(usize, Bytes)>,
    /// Where each queued data frame ends in `data`.
    ends: VecDeque<usize>,
    /// The front data frame is partly written: all of it goes before
    /// control frames.
    data_started: bool,
    /// Bytes waiting in both queues.
    len: usize,
}

impl Outbox {
    /// How many bytes wait to be written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Queues a data frame: its encoded header, then its payload, which
    /// `mask` (if any) masks in the queue.
    pub(crate) fn push_data(
        &mut self,
        header: &[u8],
        payload: &[u8],
        mask: impl FnOnce(&mut [u8]),
    ) {
        self.compact();
        self.data.reserve(header.len() + payload.len());
        self.data.extend_from_slice(header);
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        mask(&mut self.data[start..]);
        self.ends.push_back(self.data.len());
        self.len += header.len() + payload.len();
    }

    /// Queues a data frame whose payload is written from `payload` itself.
    pub(crate) fn push_shared(&mut self, header: &[u8], payload: Bytes) {
        if payload.is_empty() {
            return self.push_data(header, &[], |_| {});
        }
        self.compact();
        self.data.extend_from_slice(header);
        self.len += header.len() + payload.len();
        self.shared.push_back((self.data.len(), payload));
        self.ends.push_back(self.data.len());
    }

    /// Queues a control frame.
    pub(crate) fn push_control(&mut self, frame: Bytes) {
        self.len += frame.len();
        self.control.push_back((frame, false));
    }

    /// Queues an automatic pong. Past [`MAX_QUEUED_PONGS`] unwritten ones,
    /// the latest is replaced rather than joined (RFC 6455 §5.5.3 allows
    /// answering only the most recent ping), so a ping flood from a peer that
    /// does not read cannot grow the queue.
    pub(crate) fn push_auto_pong(&mut self, frame: Bytes) {
        let first_free = usize::from(self.control_started);
        let waiting = self
            .control
            .iter()
            .skip(first_free)
            .filter(|(_, auto)| *auto)
            .count();
        if waiting >= MAX_QUEUED_PONGS {
            let last = self
                .control
                .iter()
                .enumerate()
                .skip(first_free)
                .rev()
                .find(|(_, (_, auto))| *auto)
                .map(|(i, _)| i);
            if let Some(i) = last {
                self.len -= self.control[i].0.len();
                self.control.remove(i);
            }
        }
        self.len += frame.len();
        self.control.push_back((frame, true));
    }

    /// Drops the written front of `data` once it is most of the buffer, so
    /// that a connection that always has output pending does not grow it.
    fn compact(&mut self) {
        if self.written < 4096 || self.written < self.data.len() / 2 {
            return;
        }
        let cut = self.written;
        self.data.drain(..cut);
        self.written = 0;
        for (at, _) in &mut self.shared {
            *at -= cut;
        }
        for end in &mut self.ends {
            *end -= cut;
        }
    }

    /// Calls `visit` with each piece of the output, in write order, until it
    /// returns `false`.
    fn pieces<'a>(&'a self, mut visit: impl FnMut(&'a [u8]) -> bool) {
        if self.control.is_empty() && self.shared.is_empty() {
            // The common case: data frames only, in one piece.
            if self.written < self.data.len() {
                visit(&self.data[self.written..]);
            }
            return;
        }
        let mut cursor = (self.written, 0);
        if self.data_started {
            // The rest of the frame being written goes first.
            let end = self.ends.front().copied();
            if !self.data_pieces(&mut cursor, end, &mut visit) {
                return;
            }
        }
        for (frame, _) in &self.control {
            if !visit(frame) {
                return;
            }
        }
        self.data_pieces(&mut cursor, None, &mut visit);
    }

    /// Visits the data from `cursor` (an index in `data`, and one in
    /// `shared`) up to frame end `until` (or the end), including a shared
    /// payload due there. Returns `false` if `visit` did.
    fn data_pieces<'a>(
        &'a self,
        cursor: &mut (usize, usize),
        until: Option<usize>,
        visit: &mut impl FnMut(&'a [u8]) -> bool,
    ) -> bool {
        let limit = until.unwrap_or(self.data.len());
        loop {
            let (at, next) = *cursor;
            let shared = self.shared.get(next);
            if let Some((_, payload)) = shared.filter(|(due, _)| *due == at) {
                cursor.1 += 1;
                if !visit(payload) {
                    return false;
                }
                continue;
            }
            if at == limit {
                return true;
            }
            let stop = shared.map_or(limit, |(due, _)| (*due).min(limit));
            cursor.0 = stop;
            if !visit(&self.data[at..stop]) {
                return false;
            }
        }
    }

    /// Fills `dst` with the pieces to write next and returns how many.
    pub(crate) fn transmit_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        self.pieces(|piece| {
            if n == dst.len() {
                return false;
            }
            dst[n] = IoSlice::new(piece);
            n += 1;
            true
        });
        n
    }

    /// The next piece to write, if any.
    pub(crate) fn transmit_chunk(&self) -> Option<&[u8]> {
        let mut first = None;
        self.pieces(|piece| {
            first = Some(piece);
            false
        });
        first
    }

    /// Marks `n` bytes as written.
    ///
    /// # Panics
    /// If `n` exceeds [`Outbox::len`].
    pub(crate) fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advanced past the queued output");
        if n == self.len && self.control.is_empty() && self.shared.is_empty() {
            // The common case: every data frame was written at once.
            self.len = 0;
            self.ends.clear();
            self.data_started = false;
            return self.reset_data();
        }
        self.len -= n;
        while n > 0 {
            if self.data_started || self.control.is_empty() {
                n -= self.advance_data(n);
                continue;
            }
            let front = &mut self.control[0].0;
            if n >= front.len() {
                n -= front.len();
                self.control.pop_front();
                self.control_started = false;
            } else {
                front.advance(n);
                n = 0;
                self.control_started = true;
            }
        }
        if self.written == self.data.len() && self.shared.is_empty() {
            debug_assert!(self.ends.is_empty());
            self.reset_data();
        }
    }

    /// Empties `data`, all of it written.
    fn reset_data(&mut self) {
        self.written = 0;
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        } else {
            self.data.clear();
        }
    }

    /// Marks up to `n` bytes of the front data frame as written, stopping
    /// at its end; returns how many.
    fn advance_data(&mut self, n: usize) -> usize {
        let end = *self.ends.front().expect("data is due");
        let taken = match self.shared.front_mut() {
            Some((at, payload)) if *at == self.written => {
                let taken = n.min(payload.len());
                if taken == payload.len() {
                    self.shared.pop_front();
                } else {
                    payload.advance(taken);
                }
                taken
            }
            next => {
                let stop = next.map_or(end, |(at, _)| (*at).min(end));
                let taken = n.min(stop - self.written);
                self.written += taken;
                taken
            }
        };
        let payload_due = self
            .shared
            .front()
            .is_some_and(|(at, _)| *at == self.written);
        self.data_started = self.written != end || payload_due;
        if !self.data_started {
            self.ends.pop_front();
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(out: &mut Outbox, step: usize) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = out.transmit_chunk() {
            let take = chunk.len().min(step);
            all.extend_from_slice(&chunk[..take]);
            out.advance(take);
        }
        assert_eq!(out.len(), 0);
        all
    }

    #[test]
    fn small_data_frames_are_one_piece() {
        let mut out = Outbox::default();
        out.push_data(b"h1", b"one", |_| {});
        out.push_data(b"h2", b"two", |_| {});
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(out.transmit_slices(&mut slices), 1);
        assert_eq!(&*slices[0], b"h1oneh2two");
    }

    #[test]
    fn shared_payloads_are_spliced_in_order() {
        let mut out = Outbox::default();
        out.push_data(b"a", b"b", |_| {});
        out.push_shared(b"H", Bytes::from_static(b"shared"));
        out.push_shared(b"I", Bytes::from_static(b"again"));
        out.push_data(b"c", b"d", |p| p[0] = b'D');
        for step in [1, 2, 3, 100] {
            let mut copy = Outbox::default();
            copy.push_data(b"a", b"b", |_| {});
            copy.push_shared(b"H", Bytes::from_static(b"shared"));
            copy.push_shared(b"I", Bytes::from_static(b"again"));
            copy.push_data(b"c", b"d", |p| p[0] = b'D');
            assert_eq!(
                written(&mut copy, step),
                b"abHsharedIagaincD",
                "step {step}"
            );
        }
        assert_eq!(out.len(), 17);
    }

    #[test]
    fn control_goes_at_the_next_frame_boundary() {
        let mut out = Outbox::default();
        out.push_data(b"<", b"first>", |_| {});
        out.push_shared(b"<", Bytes::from_static(b"second>"));
        out.advance(2);
        out.push_control(Bytes::from_static(b"[ping]"));
        assert_eq!(written(&mut out, 3), b"irst>[ping]<second>");

        // Inside the shared payload of a started frame.
        let mut out = Outbox::default();
        out.push_shared(b"<", Bytes::from_static(b"second>"));
        out.push_data(b"<", b"third>", |_| {});
        out.advance(3);
        out.push_control(Bytes::from_static(b"[ping]"));
        assert_eq!(written(&mut out, 1), b"cond>[ping]<third>");

        // Before anything is written, control goes first.
        let mut out = Outbox::default();
        out.push_data(b"<", b"first>", |_| {});
        out.push_control(Bytes::from_static(b"[ping]"));
        assert_eq!(written(&mut out, 100), b"[ping]<first>");
    }

    #[test]
    fn written_front_is_dropped_while_output_stays_pending() {
        let mut out = Outbox::default();
        for _ in 0..1000 {
            out.push_data(b"h", &[7; 99], |_| {});
            out.advance(out.len() - 1);
        }
        assert!(out.data.len() < 8192, "buffer grew to {}", out.data.len());
        assert_eq!(written(&mut out, 100), [7]);
    }
}
