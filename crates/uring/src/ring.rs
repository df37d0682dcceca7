//! The ring, its buffer ring and the sends in flight.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

/// How many low bits of a tag come back with its completions.
pub const TAG_BITS: u32 = 40;

// user_data: the operation (4 bits), a send's slot (20 bits), the tag.
const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_CANCEL: u64 = 4;
const SLOT_SHIFT: u32 = 4;
const SLOT_BITS: u32 = 20;
const TAG_SHIFT: u32 = SLOT_SHIFT + SLOT_BITS;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

/// The buffer group of the one buffer ring.
const BGID: u16 = 0;

fn user_data(op: u64, slot: u32, tag: u64) -> u64 {
    op | u64::from(slot) << SLOT_SHIFT | (tag & TAG_MASK) << TAG_SHIFT
}

/// Whether a receive ended because the buffer ring was empty (`ENOBUFS`):
/// nothing was lost, arm it again once buffers are back.
pub fn is_out_of_buffers(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Whether an operation ended because it was cancelled
/// ([`Ring::cancel_recv`], [`Ring::cancel_fd`]).
pub fn is_canceled(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECANCELED)
}

/// One completed operation.
#[derive(Debug)]
pub enum Completion {
    /// A connection accepted by [`Ring::accept_multi`]; `more`: the accept
    /// stays armed (else arm it again).
    Accepted {
        /// The listener's tag.
        tag: u64,
        /// The new connection.
        result: io::Result<TcpStream>,
        /// The multishot accept is still armed.
        more: bool,
    },
    /// Bytes received by [`Ring::recv_multi`] (`Ok(0)`: the peer closed),
    /// readable in [`Ring::received`] until the next
    /// [`Ring::next_completion`].
    Received {
        /// The connection's tag.
        tag: u64,
        /// How many bytes, or why the receive ended.
        result: io::Result<usize>,
        /// The multishot receive is still armed.
        more: bool,
    },
    /// A send of [`Ring::send`] is done; its buffer comes back.
    Sent {
        /// The connection's tag.
        tag: u64,
        /// How many bytes of `buf[offset..]` were sent.
        result: io::Result<usize>,
        /// The buffer that was sent from.
        buf: Vec<u8>,
        /// Where in `buf` the send started.
        offset: usize,
    },
}

/// Provided buffers: `count` buffers of `size` bytes and the ring of
/// entries that hands them to the kernel. Both are raw allocations, not
/// Rust-owned slices: the kernel writes into the buffers it holds.
struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    bufs: *mut u8,
    bufs_layout: Layout,
    count: u16,
    size: usize,
    tail: u16,
    /// An operation might still use the memory: never free it.
    leak: bool,
}

impl BufRing {
    fn new(count: u16, size: usize) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two up to 32768, and size in 1..4 GiB",
            ));
        }
        let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large");
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096, // the kernel wants the ring page-aligned
        )
        .map_err(|_| too_big())?;
        // Alignment 16 (what malloc gives anyway): the allocator then gets
        // the zeroed memory from calloc, whose pages are mapped only when
        // first used, rather than writing zeros over all of it.
        let bufs_layout = Layout::from_size_align(
            usize::from(count).checked_mul(size).ok_or_else(too_big)?,
            16,
        )
        .map_err(|_| too_big())?;
        // SAFETY: both layouts have a non-zero size (count ≥ 1, size ≥ 1).
        let entries = unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>();
        // SAFETY: as above.
        let bufs = unsafe { alloc_zeroed(bufs_layout) };
        if entries.is_null() || bufs.is_null() {
            // SAFETY: each non-null pointer came from alloc_zeroed with its layout.
            unsafe {
                if !entries.is_null() {
                    dealloc(entries.cast(), entries_layout);
                }
                if !bufs.is_null() {
                    dealloc(bufs, bufs_layout);
                }
            }
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut ring = BufRing {
            entries,
            entries_layout,
            bufs,
            bufs_layout,
            count,
            size,
            tail: 0,
            leak: false,
        };
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Puts buffer `bid` at the tail (seen by the kernel at the next
    /// [`BufRing::publish`]).
    fn push(&mut self, bid: u16) {
        let bid = bid & (self.count - 1);
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: index < count, so the entry is inside the allocation; the
        // kernel reads only entries between its head and the published tail,
        // and this one is past the tail. The address is that of buffer `bid`,
        // inside `bufs` (bid < count).
        unsafe {
            let entry = &mut *self.entries.add(index);
            entry.set_addr(self.bufs.add(usize::from(bid) * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Hands the buffers pushed so far to the kernel.
    fn publish(&self) {
        // SAFETY: `entries` is the ring's base, initialised; the tail field
        // is a u16 inside the first entry, aligned for it, and the kernel
        // reads it with acquire ordering.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`.
    ///
    /// # Safety
    /// The kernel handed buffer `bid` over in a completion and it was not
    /// pushed back since (so the kernel does not write it).
    unsafe fn slice(&self, bid: u16, len: usize) -> &[u8] {
        let bid = bid & (self.count - 1);
        // SAFETY: bid < count and len ≤ size (checked by the caller), so the
        // range is inside `bufs`; the caller says the kernel does not write it.
        unsafe {
            std::slice::from_raw_parts(
                self.bufs.add(usize::from(bid) * self.size),
                len.min(self.size),
            )
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: both came from alloc_zeroed with these layouts, and the
        // ring's Drop made sure no operation uses them any more.
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            dealloc(self.bufs, self.bufs_layout);
        }
    }
}

/// An io_uring instance for one thread: sockets are handed to it by file
/// descriptor, and it owns what the kernel uses until the operations end.
pub struct Ring {
    // Dropped before `bufs`: the kernel lets go of the buffer ring first.
    ring: IoUring,
    bufs: BufRing,
    /// The buffers of the sends in flight, by slot.
    sends: Vec<Option<(Vec<u8>, usize)>>,
    free_sends: Vec<u32>,
    /// Completions reaped and not yet handed out.
    cqes: Vec<(u64, i32, u32)>,
    next: usize,
    /// The buffer lent by the last `Received`.
    held: Option<(u16, usize)>,
    /// Operations whose last completion has not come.
    in_flight: usize,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("buffers", &self.bufs.count)
            .field("buffer_size", &self.bufs.size)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Ring {
    /// A ring of `entries` submission slots, with `buffers` receive buffers
    /// (a power of two) of `buffer_size` bytes. Fails with the kernel's
    /// error where io_uring is missing or disabled (`ENOSYS`, `EPERM`), or
    /// `Unsupported` where it lacks what is needed.
    pub fn new(entries: u32, buffers: u16, buffer_size: usize) -> io::Result<Ring> {
        // The whole ring is driven from one thread that waits for its
        // completions: task work then runs only when it waits (fewer
        // interruptions). Older kernels refuse the flags: plain then.
        let ring = IoUring::builder()
            .setup_cqsize(entries.saturating_mul(4))
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(entries.saturating_mul(4))
                    .build(entries)
            })?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks the wait timeout or no-drop completions (Linux 5.19 or later needed)",
            ));
        }
        let bufs = BufRing::new(buffers, buffer_size)?;
        // SAFETY: the entries are page-aligned and `buffers` long, and they
        // stay allocated until the ring is dropped (`ring` is dropped
        // before `bufs`, and Drop unregisters first).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.entries as u64, buffers, BGID, 0)?;
        }
        Ok(Ring {
            ring,
            bufs,
            sends: Vec::new(),
            free_sends: Vec::new(),
            cqes: Vec::with_capacity(256),
            next: 0,
            held: None,
            in_flight: 0,
        })
    }

    /// The size of one receive buffer: the most one `Received` brings.
    pub fn buffer_size(&self) -> usize {
        self.bufs.size
    }

    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry built in this module points only at memory
        // this ring owns until the operation's last completion (send
        // buffers in `sends`, the buffer ring) or at nothing.
        unsafe {
            if self.ring.submission().push(entry).is_err() {
                self.ring.submit()?;
                self.ring
                    .submission()
                    .push(entry)
                    .map_err(|_| io::Error::other("io_uring submission queue full"))?;
            }
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Arms a multishot accept on `listener` (non-blocking or not: the
    /// ring waits).
    pub fn accept_multi(&mut self, listener: &TcpListener, tag: u64) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(OP_ACCEPT, 0, tag));
        self.push(&entry)
    }

    /// Arms a multishot receive on `fd` into the buffer ring.
    pub fn recv_multi(&mut self, fd: RawFd, tag: u64) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(Fd(fd), BGID)
            .build()
            .user_data(user_data(OP_RECV, 0, tag));
        self.push(&entry)
    }

    /// Sends `buf[offset..]` on `fd`; the buffer comes back in `Sent`.
    pub fn send(&mut self, fd: RawFd, tag: u64, buf: Vec<u8>, offset: usize) -> io::Result<()> {
        let offset = offset.min(buf.len());
        let len = u32::try_from(buf.len() - offset).unwrap_or(u32::MAX);
        let slot = match self.free_sends.pop() {
            Some(slot) => slot,
            None if self.sends.len() < 1 << SLOT_BITS => {
                self.sends.push(None);
                (self.sends.len() - 1) as u32
            }
            None => return Err(io::Error::other("too many sends in flight")),
        };
        // The heap block does not move when the Vec is moved into its slot.
        let ptr = buf[offset..].as_ptr();
        self.sends[slot as usize] = Some((buf, offset));
        let entry = opcode::Send::new(Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(OP_SEND, slot, tag));
        if let Err(e) = self.push(&entry) {
            self.sends[slot as usize] = None;
            self.free_sends.push(slot);
            return Err(e);
        }
        Ok(())
    }

    /// Cancels the multishot receive armed with `tag`: its last `Received`
    /// (`more` false) follows.
    pub fn cancel_recv(&mut self, tag: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(user_data(OP_RECV, 0, tag))
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        self.push(&entry)
    }

    /// Cancels every operation on `fd` (before it is closed: an operation
    /// in flight keeps the socket open).
    pub fn cancel_fd(&mut self, fd: RawFd) -> io::Result<()> {
        let entry = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all())
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        self.push(&entry)
    }

    /// Submits what was queued, in one `io_uring_enter`, and unless
    /// completions are already waiting, waits for one (at most `timeout`).
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.cqes.drain(..self.next);
        self.next = 0;
        let want = if self.cqes.is_empty() { 1 } else { 0 };
        let result = match timeout {
            Some(t) if want == 1 => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            _ => self.ring.submitter().submit_and_wait(want),
        };
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) => {}
            Err(e) => return Err(e),
        }
        self.cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        Ok(())
    }

    /// The next completion reaped by [`Ring::submit_and_wait`]; the buffer
    /// of the previous `Received` goes back to the kernel.
    pub fn next_completion(&mut self) -> Option<Completion> {
        self.release_held();
        loop {
            let &(ud, res, flags) = self.cqes.get(self.next)?;
            self.next += 1;
            let more = cqueue::more(flags);
            if !more {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            let tag = ud >> TAG_SHIFT;
            let result = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(res as usize)
            };
            match ud & ((1 << SLOT_SHIFT) - 1) {
                OP_ACCEPT => {
                    let result = result.map(|fd| {
                        // SAFETY: a successful accept returns a new
                        // descriptor that nothing else owns.
                        unsafe { TcpStream::from_raw_fd(fd as RawFd) }
                    });
                    return Some(Completion::Accepted { tag, result, more });
                }
                OP_RECV => {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        let len = match result {
                            Ok(n) => n.min(self.bufs.size),
                            Err(_) => 0,
                        };
                        self.held = Some((bid, len));
                    }
                    let result = match (result, self.held) {
                        (Ok(n), None) if n > 0 => {
                            Err(io::Error::other("io_uring receive without a buffer"))
                        }
                        (r, _) => r,
                    };
                    return Some(Completion::Received { tag, result, more });
                }
                OP_SEND => {
                    let slot = ((ud >> SLOT_SHIFT) & ((1 << SLOT_BITS) - 1)) as usize;
                    let Some((buf, offset)) = self.sends.get_mut(slot).and_then(Option::take)
                    else {
                        continue;
                    };
                    self.free_sends.push(slot as u32);
                    return Some(Completion::Sent {
                        tag,
                        result,
                        buf,
                        offset,
                    });
                }
                _ => continue, // a cancel's own completion
            }
        }
    }

    /// The bytes of the last `Received` completion (empty if it brought
    /// none).
    pub fn received(&self) -> &[u8] {
        match self.held {
            // SAFETY: the kernel handed this buffer over in that completion
            // and it goes back only at the next `next_completion`.
            Some((bid, len)) => unsafe { self.bufs.slice(bid, len) },
            None => &[],
        }
    }

    fn release_held(&mut self) {
        if let Some((bid, _)) = self.held.take() {
            self.bufs.push(bid);
            self.bufs.publish();
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.release_held();
        // Every operation must be over before the memory it uses goes.
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        if self.in_flight > 0 && self.push(&cancel).is_ok() {
            for _ in 0..100 {
                if self.in_flight == 0 {
                    break;
                }
                if self
                    .submit_and_wait(Some(Duration::from_millis(10)))
                    .is_err()
                {
                    break;
                }
                while self.next_completion().is_some() {}
            }
        }
        if self.in_flight > 0 || self.ring.submitter().unregister_buf_ring(BGID).is_err() {
            // The kernel may still write or read them: leak, never free.
            self.bufs.leak = true;
            std::mem::forget(std::mem::take(&mut self.sends));
        }
    }
}
