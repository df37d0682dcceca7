//! The io_uring face (feature `io-uring`, Linux): a thread-per-core
//! WebSocket server ([`Server`]) and a dialer ([`Client`]) whose
//! application is a [`Handler`], called for each connection's events, as
//! in uWebSockets.
//!
//! Each thread has one ring ([`dialtone_uring::Ring`], where the `unsafe`
//! of this face lives) and its own `SO_REUSEPORT` listening socket: a
//! multishot accept, a multishot receive per connection into the ring's
//! provided buffers, and every send of a loop turn submitted together with
//! the wait for the next completions, in one `io_uring_enter`.
//!
//! It drives the same core the same way as the tokio and blocking faces
//! and re-implements none of its rules: received bytes go to the
//! [`Connection`], its events to the handler, its output to the socket;
//! the transport is shut down when [`Connection::should_close_transport`]
//! says so and dropped once [`Connection::is_finished`]; the core is handed
//! the time after every turn that touched it and when its
//! [`Connection::poll_timeout`] is due (the ring's wait ends at the
//! earliest deadline of all its connections). The handshake is the
//! [`Acceptor`]'s (limits, subprotocols, origin policy, its timeout and its
//! cap on handshakes in progress).
//!
//! Backpressure: a connection whose unsent output passes [`HIGH_WATER`]
//! (a peer that does not read what it is sent) is not read from until the
//! output drains below [`LOW_WATER`], so a peer cannot grow the server's
//! memory by sending faster than it reads; with an idle timeout set
//! ([`Timeouts::idle`](dialtone_proto::Timeouts)), such a peer is closed,
//! and dropped at the close timeout.
//!
//! ```no_run
//! use dialtone::uring::{Handler, Server, Ws};
//! use dialtone::Message;
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, ws: &mut Ws<'_>, msg: Message) {
//!         if msg.is_data() {
//!             let _ = ws.send(&msg); // fails only once the connection closes
//!         }
//!     }
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! dialtone::uring::supported()?; // io_uring missing or disabled: say so
//! let server = Server::bind("127.0.0.1:9001".parse().unwrap(), 2)?;
//! server.run(|| Echo) // two threads, two rings, until a ring fails
//! # }
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dialtone_proto::handshake::{self as hs, ClientHandshake};
use dialtone_proto::http::Request;
use dialtone_proto::{CloseCode, CloseFrame, Config, Connection, Event};
use dialtone_uring::{is_canceled, is_out_of_buffers, Completion, Ring};
use tokio::sync::OwnedSemaphorePermit;

use crate::error::{Error, Result};
use crate::handshake::Acceptor;
use crate::message::{self, Message};

/// Submission queue slots per ring.
const RING_ENTRIES: u32 = 4096;
/// Receive buffers per ring, and their size: what can be received in one
/// turn before receives wait for buffers to come back.
/// (Enough for a message from each of 1,000 connections in one turn.)
const BUFFERS: u16 = 2048;
const BUFFER_SIZE: usize = 4 * 1024;

/// Unsent output past which a connection is no longer read from.
pub const HIGH_WATER: usize = 64 * 1024;
/// Unsent output below which a connection paused by [`HIGH_WATER`] is read
/// from again.
pub const LOW_WATER: usize = 16 * 1024;

/// The most one send takes from the core at once.
const SEND_CHUNK: usize = 256 * 1024;
/// A send buffer larger than this is released once sent, not pooled.
const KEEP_SEND_CAPACITY: usize = 64 * 1024;
/// Send buffers kept for reuse per ring: an idle connection holds none.
const POOLED_SEND_BUFFERS: usize = 1024;

/// Connection slots per ring (the tag keeps 20 bits of the index).
const MAX_CONNECTIONS: usize = (1 << 20) - 1;
/// How long after a failed accept (out of descriptors) the next is armed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// The tag of the listener's accept (an index no connection has).
const ACCEPT_TAG: u64 = (1 << 20) - 1;

/// Whether io_uring can be used here: `Err` with the reason (io_uring
/// missing, disabled by `kernel.io_uring_disabled`, or too old).
pub fn supported() -> io::Result<()> {
    Ring::new(8, 1, 64).map(drop)
}

/// A connection, as its handler's callbacks name it: unique within its
/// thread while it is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

/// What the application does with each connection's events, called on the
/// connection's thread. A handler may send from any callback but
/// [`Handler::on_close`]; pings and closes are answered by the core.
pub trait Handler {
    /// The handshake succeeded (a server's `101` is queued, ahead of
    /// anything sent here). `request`: the client's request, on a server;
    /// `None` on a connection a [`Client`] dialed.
    fn on_open(&mut self, ws: &mut Ws<'_>, request: Option<&Request<()>>) {
        let _ = (ws, request);
    }

    /// A text or binary message, a ping (already answered) or a pong.
    fn on_message(&mut self, ws: &mut Ws<'_>, msg: Message);

    /// The connection is over and dropped: `close` is the peer's close frame
    /// (`Abruptly` if the transport ended without one, or was given up at a
    /// timeout); the protocol error that failed it, if any, was answered
    /// with its close code. `None`: a connection a [`Client`] dialed never
    /// opened (refused, failed or timed out handshake); a server calls this
    /// only for connections it opened.
    fn on_close(&mut self, id: ConnId, close: Option<&CloseFrame>) {
        let _ = (id, close);
    }
}

/// One open connection, lent to a [`Handler`] callback.
#[derive(Debug)]
pub struct Ws<'a> {
    id: ConnId,
    conn: &'a mut Connection,
}

impl Ws<'_> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Queues a message (sent at the end of this loop turn, with the others
    /// of the turn). A payload of [`dialtone_proto::SHARED_PAYLOAD_MIN`]
    /// bytes or more is not copied into the queue.
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        message::queue(self.conn, msg).map_err(Error::from)
    }

    /// Starts the closing handshake.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.conn
            .close(CloseFrame::new(code, reason))
            .map_err(Error::from)
    }

    /// Bytes queued and not yet handed to the socket: a handler that sends
    /// unasked (a broadcast) checks this to not outrun a slow peer.
    pub fn buffered(&self) -> usize {
        self.conn.pending_output()
    }

    /// The sans-I/O connection (state, close frames, configuration).
    pub fn connection(&self) -> &Connection {
        self.conn
    }
}

/// An io_uring WebSocket server: one listening socket per thread (bound
/// with `SO_REUSEPORT`, so the kernel spreads connections over them).
#[derive(Debug)]
pub struct Server {
    listeners: Vec<TcpListener>,
    acceptor: Acceptor,
}

impl Server {
    /// Binds `threads` (at least 1) listening sockets to `addr` (port 0:
    /// one port chosen for all).
    pub fn bind(addr: SocketAddr, threads: usize) -> io::Result<Server> {
        let first = listen(addr)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..threads.max(1) {
            listeners.push(listen(addr)?);
        }
        Ok(Server {
            listeners,
            acceptor: Acceptor::default(),
        })
    }

    /// Sets the handshake policy and the connections' limits and timeouts.
    pub fn with_acceptor(mut self, acceptor: Acceptor) -> Self {
        self.acceptor = acceptor;
        self
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listeners[0].local_addr()
    }

    /// Serves until a ring fails (not a connection: their errors close
    /// them), one thread per listening socket, the calling one included;
    /// `make` makes each thread's handler.
    pub fn run<H, F>(self, make: F) -> io::Result<()>
    where
        H: Handler,
        F: Fn() -> H + Send + Sync,
    {
        let Server {
            mut listeners,
            acceptor,
        } = self;
        let first = listeners.remove(0);
        std::thread::scope(|scope| {
            let others: Vec<_> = listeners
                .into_iter()
                .map(|listener| {
                    let (acceptor, make) = (acceptor.clone(), &make);
                    scope
                        .spawn(move || Loop::new(Some(listener), acceptor, make())?.run().map(drop))
                })
                .collect();
            let result = Loop::new(Some(first), acceptor.clone(), make()).and_then(|l| l.run());
            for other in others {
                match other.join() {
                    Ok(r) => r?,
                    Err(_) => return Err(io::Error::other("a server thread panicked")),
                }
            }
            result.map(drop)
        })
    }
}

/// The dialer of the io_uring face: connections to `ws://` URLs, driven on
/// the calling thread by one ring until every one is over.
#[derive(Debug)]
pub struct Client {
    config: Config,
    handshake_timeout: Duration,
    dials: Vec<(TcpStream, ClientHandshake)>,
}

impl Client {
    /// A dialer whose connections have `config`'s limits and timeouts
    /// (permessage-deflate offers included); the server has
    /// [`Acceptor::DEFAULT_HANDSHAKE_TIMEOUT`] to answer.
    pub fn new(config: Config) -> Self {
        Client {
            config,
            handshake_timeout: Acceptor::DEFAULT_HANDSHAKE_TIMEOUT,
            dials: Vec::new(),
        }
    }

    /// Sets how long a server has to answer the handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Connects a TCP socket to `url` (`ws://` only: no TLS or proxy on
    /// this face) now, blocking; its handshake runs in [`Client::run`].
    pub fn connect(&mut self, url: &str) -> Result<()> {
        let url = url::Url::parse(url).map_err(|e| Error::Url(e.to_string()))?;
        if url.scheme() != "ws" {
            return Err(Error::Url(format!(
                "{url}: the io_uring client dials ws:// URLs only"
            )));
        }
        let (host, resource, port) = crate::handshake::target(&url)?;
        let stream = TcpStream::connect((crate::handshake::connect_host(&url)?.as_str(), port))?;
        stream.set_nodelay(true)?;
        let mut request = ClientHandshake::new(host, resource);
        for offer in &self.config.deflate {
            request.deflate(offer.clone());
        }
        self.dials.push((stream, request));
        Ok(())
    }

    /// Runs the handshakes and then the connections until all are over;
    /// hands the handler back.
    pub fn run<H: Handler>(self, handler: H) -> io::Result<H> {
        let acceptor = Acceptor::default()
            .config(self.config)
            .handshake_timeout(self.handshake_timeout);
        let mut run = Loop::new(None, acceptor, handler)?;
        let now = Instant::now();
        for (stream, request) in self.dials {
            run.dial(stream, request, now);
        }
        run.run()
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Where a connection is.
enum Phase {
    /// Reading the request head, until `deadline`.
    Handshake {
        buf: BytesMut,
        deadline: Instant,
        _permit: OwnedSemaphorePermit,
    },
    Open(Box<Connection>),
    /// Writing a refusal, then closing, by `deadline` at the latest.
    Refused {
        deadline: Instant,
    },
    /// A dialed connection waiting for the server's answer, until
    /// `deadline`.
    Dialing {
        request: Box<ClientHandshake>,
        buf: BytesMut,
        deadline: Instant,
    },
}

struct Peer {
    stream: TcpStream,
    phase: Phase,
    /// The next bytes to send (without a buffer while none wait: the buffer
    /// is the ring's while a send is in flight, the pool's after).
    out: Vec<u8>,
    /// Bytes of the send in flight, if one is.
    in_flight: usize,
    sending: bool,
    recv_armed: bool,
    /// Not read from: too much output waits (see HIGH_WATER).
    paused: bool,
    /// The peer closed, or the socket failed (before the connection opened).
    eof: bool,
    shut_down: bool,
    /// The earliest deadline this connection has in the timer heap.
    queued: Option<Instant>,
    /// In this turn's list of connections to drive.
    touched: bool,
}

struct Slot {
    gen: u32,
    peer: Option<Box<Peer>>,
}

/// What driving a connection decided.
enum Next {
    Keep,
    Drop,
}

struct Loop<H> {
    ring: Ring,
    /// None for a client's loop, which ends when its connections do.
    listener: Option<TcpListener>,
    acceptor: Acceptor,
    handler: H,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// (deadline, index, generation); stale entries are skipped.
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    touched: Vec<u32>,
    /// Sockets of dropped connections, closed once the cancellation of
    /// their operations was submitted (so that a new connection cannot get
    /// their descriptor number while an operation still names it).
    closing: Vec<TcpStream>,
    /// Send buffers between uses.
    pool: Vec<Vec<u8>>,
    /// When to arm the accept again after it failed.
    accept_again: Option<Instant>,
}

fn tag(index: u32, gen: u32) -> u64 {
    u64::from(gen & 0xF_FFFF) << 20 | u64::from(index)
}

impl<H: Handler> Loop<H> {
    fn new(listener: Option<TcpListener>, acceptor: Acceptor, handler: H) -> io::Result<Self> {
        Ok(Loop {
            ring: Ring::new(RING_ENTRIES, BUFFERS, BUFFER_SIZE)?,
            listener,
            acceptor,
            handler,
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            touched: Vec::new(),
            closing: Vec::new(),
            pool: Vec::new(),
            accept_again: None,
        })
    }

    fn run(mut self) -> io::Result<H> {
        if let Some(listener) = &self.listener {
            self.ring.accept_multi(listener, ACCEPT_TAG)?;
        }
        let mut now = Instant::now();
        loop {
            self.fire_timers(now);
            for index in std::mem::take(&mut self.touched) {
                self.drive(index as usize, now);
            }
            if self.listener.is_none() && self.slots.len() == self.free.len() {
                return Ok(self.handler);
            }
            if let (Some(at), Some(listener)) = (self.accept_again, &self.listener) {
                if at <= now {
                    self.accept_again = None;
                    self.ring.accept_multi(listener, ACCEPT_TAG)?;
                }
            }
            let next = self.timers.peek().map(|Reverse((at, ..))| *at);
            let timeout = [next, self.accept_again]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()));
            self.ring.submit_and_wait(timeout)?;
            self.closing.clear();
            now = Instant::now();
            while let Some(completion) = self.ring.next_completion() {
                self.on_completion(completion, now)?;
            }
        }
    }

    /// The slot index of a tag, if its connection is still there.
    fn lookup(&self, tag: u64) -> Option<usize> {
        let index = (tag & 0xF_FFFF) as usize;
        let gen = (tag >> 20) as u32;
        let slot = self.slots.get(index)?;
        (slot.peer.is_some() && slot.gen & 0xF_FFFF == gen).then_some(index)
    }

    fn touch(&mut self, index: usize) {
        if let Some(peer) = self.slots[index].peer.as_deref_mut() {
            if !peer.touched {
                peer.touched = true;
                self.touched.push(index as u32);
            }
        }
    }

    fn on_completion(&mut self, completion: Completion, now: Instant) -> io::Result<()> {
        match completion {
            Completion::Accepted { result, more, .. } => {
                // A failed accept (out of descriptors, a reset before it was
                // taken) loses that one connection only.
                let failed = result.is_err();
                if let Ok(stream) = result {
                    self.open(stream, now);
                }
                if !more {
                    if failed {
                        // Out of descriptors, say: armed again a little
                        // later rather than failing in a busy loop.
                        self.accept_again = Some(now + ACCEPT_RETRY);
                    } else if let Some(listener) = &self.listener {
                        self.ring.accept_multi(listener, ACCEPT_TAG)?;
                    }
                }
            }
            Completion::Received { tag, result, more } => {
                let Some(index) = self.lookup(tag) else {
                    return Ok(());
                };
                let Some(peer) = self.slots[index].peer.as_deref_mut() else {
                    return Ok(());
                };
                if !more {
                    peer.recv_armed = false;
                }
                match result {
                    Ok(0) => peer.eof = true,
                    Ok(_) => {
                        let data = self.ring.received();
                        match &mut peer.phase {
                            Phase::Handshake { buf, .. } | Phase::Dialing { buf, .. } => {
                                buf.extend_from_slice(data)
                            }
                            Phase::Open(conn) => {
                                let hint = conn.read_hint().min(crate::driver::MAX_READ_RESERVE);
                                let buf = conn.read_buffer();
                                if buf.capacity() - buf.len() < hint {
                                    buf.reserve(hint);
                                }
                                conn.receive(data);
                            }
                            Phase::Refused { .. } => {} // the request is answered
                        }
                    }
                    // Nothing lost: armed again when driven.
                    Err(e) if is_out_of_buffers(&e) => {}
                    Err(e) if is_canceled(&e) => {} // paused (backpressure)
                    Err(_) => peer.eof = true,
                }
                self.touch(index);
            }
            Completion::Sent {
                tag,
                result,
                mut buf,
                offset,
            } => {
                let Some(index) = self.lookup(tag) else {
                    return Ok(());
                };
                let Some(peer) = self.slots[index].peer.as_deref_mut() else {
                    return Ok(());
                };
                let end = match result {
                    Ok(n) if n > 0 => offset + n,
                    // A failed socket: the core gives it up.
                    _ => {
                        peer.sending = false;
                        peer.in_flight = 0;
                        peer.eof = true;
                        if let Phase::Open(conn) = &mut peer.phase {
                            conn.abort();
                        }
                        self.touch(index);
                        return Ok(());
                    }
                };
                if end < buf.len() {
                    peer.in_flight = buf.len() - end;
                    let fd = peer.stream.as_raw_fd();
                    if self.ring.send(fd, tag, buf, end).is_err() {
                        self.abort(index);
                    }
                    return Ok(());
                }
                peer.sending = false;
                peer.in_flight = 0;
                if buf.capacity() <= KEEP_SEND_CAPACITY && self.pool.len() < POOLED_SEND_BUFFERS {
                    buf.clear();
                    self.pool.push(buf);
                }
                self.touch(index);
            }
        }
        Ok(())
    }

    /// A socket failed beyond use: the core gives it up.
    fn abort(&mut self, index: usize) {
        if let Some(peer) = self.slots[index].peer.as_deref_mut() {
            peer.sending = false;
            peer.eof = true;
            if let Phase::Open(conn) = &mut peer.phase {
                conn.abort();
            }
        }
        self.touch(index);
    }

    fn open(&mut self, stream: TcpStream, now: Instant) {
        let _ = stream.set_nodelay(true);
        let phase = match self.acceptor.handshakes.clone().try_acquire_owned() {
            Ok(permit) => Phase::Handshake {
                buf: BytesMut::new(),
                deadline: now + self.acceptor.handshake_timeout,
                _permit: permit,
            },
            Err(_) => Phase::Refused {
                deadline: now + self.acceptor.write_timeout,
            },
        };
        let mut out = Vec::new();
        if matches!(phase, Phase::Refused { .. }) {
            out = dialtone_proto::handshake::Reject::new(
                dialtone_proto::http::StatusCode::SERVICE_UNAVAILABLE,
                "too many handshakes in progress; try again later",
            )
            .to_bytes();
        }
        self.insert(stream, phase, out);
    }

    /// Starts a dialed connection: its request goes out first.
    fn dial(&mut self, stream: TcpStream, request: ClientHandshake, now: Instant) {
        let out = request.to_bytes();
        let phase = Phase::Dialing {
            request: Box::new(request),
            buf: BytesMut::new(),
            deadline: now + self.acceptor.handshake_timeout,
        };
        self.insert(stream, phase, out);
    }

    /// Gives a connection a slot and arms its receive.
    fn insert(&mut self, stream: TcpStream, phase: Phase, out: Vec<u8>) {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None if self.slots.len() < MAX_CONNECTIONS => {
                self.slots.push(Slot { gen: 0, peer: None });
                self.slots.len() - 1
            }
            None => return, // dropped: the stream closes
        };
        let fd = stream.as_raw_fd();
        let slot = &mut self.slots[index];
        slot.peer = Some(Box::new(Peer {
            stream,
            phase,
            out,
            in_flight: 0,
            sending: false,
            recv_armed: false,
            paused: false,
            eof: false,
            shut_down: false,
            queued: None,
            touched: false,
        }));
        let tag = tag(index as u32, slot.gen);
        if self.ring.recv_multi(fd, tag).is_ok() {
            if let Some(peer) = self.slots[index].peer.as_deref_mut() {
                peer.recv_armed = true;
            }
        }
        self.touch(index);
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, index, gen))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(index as usize) else {
                continue;
            };
            if slot.gen != gen {
                continue;
            }
            if let Some(peer) = slot.peer.as_deref_mut() {
                if peer.queued == Some(at) {
                    peer.queued = None;
                    self.touch(index as usize);
                }
            }
        }
    }

    fn drive(&mut self, index: usize, now: Instant) {
        let gen = self.slots[index].gen;
        let id = ConnId(tag(index as u32, gen));
        let Some(peer) = self.slots[index].peer.as_deref_mut() else {
            return;
        };
        peer.touched = false;
        let next = drive(
            peer,
            id,
            &mut self.ring,
            &self.acceptor,
            &mut self.handler,
            &mut self.pool,
            now,
        );
        match next {
            Next::Keep => {
                let deadline = match &peer.phase {
                    Phase::Handshake { deadline, .. }
                    | Phase::Refused { deadline }
                    | Phase::Dialing { deadline, .. } => Some(*deadline),
                    Phase::Open(conn) => conn.poll_timeout(),
                };
                if let Some(at) = deadline {
                    if peer.queued.is_none_or(|q| at < q) {
                        peer.queued = Some(at);
                        self.timers.push(Reverse((at, index as u32, gen)));
                    }
                }
            }
            Next::Drop => {
                let slot = &mut self.slots[index];
                let Some(peer) = slot.peer.take() else {
                    return;
                };
                slot.gen = slot.gen.wrapping_add(1);
                self.free.push(index as u32);
                if peer.recv_armed || peer.sending {
                    // Best effort: a ring that refuses leaves the socket to
                    // the peer's own end.
                    let _ = self.ring.cancel_fd(peer.stream.as_raw_fd());
                }
                let peer = *peer;
                self.closing.push(peer.stream);
                match &peer.phase {
                    Phase::Open(conn) => self.handler.on_close(id, conn.close_received()),
                    Phase::Dialing { .. } => self.handler.on_close(id, None),
                    _ => {}
                }
            }
        }
    }
}

/// One turn of a connection: its input to the core and the handler, the
/// time, its output to the ring; whether it is over.
fn drive<H: Handler>(
    peer: &mut Peer,
    id: ConnId,
    ring: &mut Ring,
    acceptor: &Acceptor,
    handler: &mut H,
    pool: &mut Vec<Vec<u8>>,
    now: Instant,
) -> Next {
    if let Phase::Handshake { buf, deadline, .. } = &mut peer.phase {
        if now >= *deadline {
            return Next::Drop; // too slow (slowloris)
        }
        // A whole request that came with the client's end is still answered.
        match acceptor.step(buf) {
            Ok(None) if peer.eof => return Next::Drop, // the client left
            Ok(None) => return Next::Keep,
            Ok(Some(outcome)) => {
                if peer.out.is_empty() {
                    peer.out = outcome.answer;
                } else {
                    peer.out.extend_from_slice(&outcome.answer);
                }
                let mut conn = Box::new(outcome.conn);
                handler.on_open(
                    &mut Ws {
                        id,
                        conn: &mut conn,
                    },
                    Some(&outcome.request),
                );
                peer.phase = Phase::Open(conn);
            }
            Err(reject) => {
                peer.out = reject.to_bytes();
                peer.phase = Phase::Refused {
                    deadline: now + acceptor.write_timeout,
                };
            }
        }
    }
    if let Phase::Dialing {
        request,
        buf,
        deadline,
    } = &mut peer.phase
    {
        if now >= *deadline {
            return Next::Drop;
        }
        let limit = acceptor.config.max_handshake_size;
        match hs::parse_response(buf, limit) {
            Ok(None) if peer.eof => return Next::Drop,
            Ok(None) => {}
            Ok(Some((head, len))) => match request.check_response(&head) {
                Ok(agreed) => {
                    let role = dialtone_proto::Role::Client;
                    let config = acceptor.config.clone();
                    let mut conn = Box::new(Connection::with_deflate(role, config, agreed.deflate));
                    conn.read_buffer().extend_from_slice(&buf[len..]);
                    handler.on_open(
                        &mut Ws {
                            id,
                            conn: &mut conn,
                        },
                        None,
                    );
                    peer.phase = Phase::Open(conn);
                }
                // Refused, or a server that breaks the handshake.
                Err(_) => return Next::Drop,
            },
            Err(_) => return Next::Drop,
        }
    }
    let fd = peer.stream.as_raw_fd();
    let tag = id.0;
    let conn = match &mut peer.phase {
        Phase::Handshake { .. } => return Next::Keep,
        Phase::Dialing { .. } => {
            if !peer.out.is_empty() && !peer.sending {
                let out = std::mem::take(&mut peer.out);
                peer.in_flight = out.len();
                peer.sending = ring.send(fd, tag, out, 0).is_ok();
            }
            return Next::Keep;
        }
        Phase::Refused { deadline } => {
            if !peer.out.is_empty() && !peer.sending {
                let out = std::mem::take(&mut peer.out);
                peer.in_flight = out.len();
                peer.sending = ring.send(fd, tag, out, 0).is_ok();
            }
            if now >= *deadline || peer.eof || !peer.sending {
                // Sent (or never will be): the client reads it, then the end.
                let _ = peer.stream.shutdown(Shutdown::Write);
                return Next::Drop;
            }
            return Next::Keep;
        }
        Phase::Open(conn) => conn,
    };
    if peer.eof && !conn.eof_received() {
        conn.receive_eof();
    }
    deliver(conn, id, handler);
    // The time, now that what arrived is decoded; then what it did (an
    // abort is reported as the end).
    let _ = conn.handle_timeout(now);
    if conn.is_aborted() {
        deliver(conn, id, handler); // to the end the abort reports
    }
    if !peer.sending {
        if conn.pending_output() > 0 && peer.out.capacity() == 0 {
            peer.out = pool.pop().unwrap_or_default();
        }
        while peer.out.len() < SEND_CHUNK {
            let Some(chunk) = conn.transmit_chunk() else {
                break;
            };
            peer.out.extend_from_slice(chunk);
            let n = chunk.len();
            conn.advance_transmit(n);
        }
        if !peer.out.is_empty() {
            let out = std::mem::take(&mut peer.out);
            peer.in_flight = out.len();
            match ring.send(fd, tag, out, 0) {
                Ok(()) => peer.sending = true,
                Err(_) => conn.abort(),
            }
        }
    }
    if !peer.sending && !peer.shut_down && conn.should_close_transport() {
        // An error only means the peer already went.
        let _ = peer.stream.shutdown(Shutdown::Write);
        peer.shut_down = true;
    }
    if conn.is_finished() && (!peer.sending || conn.is_aborted()) {
        return Next::Drop;
    }
    // Backpressure: a peer that does not read is not read from.
    // (What is in flight is bounded by SEND_CHUNK; the core's pongs by the
    // core: only the messages queued behind them can grow.)
    let backlog = conn.pending_output();
    if backlog > HIGH_WATER && peer.recv_armed && !peer.paused {
        peer.paused = ring.cancel_recv(tag).is_ok();
    } else if peer.paused && backlog <= LOW_WATER {
        peer.paused = false;
    }
    if !peer.recv_armed && !peer.paused && !peer.eof && !conn.eof_received() {
        peer.recv_armed = ring.recv_multi(fd, tag).is_ok();
    }
    Next::Keep
}

/// Hands the core's events to the handler (the close is the handler's
/// `on_close`, once the connection is dropped).
fn deliver<H: Handler>(conn: &mut Connection, id: ConnId, handler: &mut H) {
    loop {
        match conn.next_event() {
            Ok(Some(Event::Close(_))) => {}
            Ok(Some(event)) => handler.on_message(&mut Ws { id, conn }, event.into()),
            Ok(None) => return,
            // The core answered it with its close code and is closed.
            Err(_) => {}
        }
    }
}
