//! What the dialer benchmark's clients share: the command line, the payload
//! the flood server sends (and the echo clients send), the check of every
//! message received, the timing and the `RESULT {json}` line.
//!
//! Each client binary (`client_dialtone`, `client_tungstenite`, ...) only
//! says how its library connects, receives and sends; [`main`] runs C
//! connections of it on one `current_thread` runtime (a `LocalSet`: no
//! task needs to be `Send`) and measures.
//!
//! Payloads: byte `i` of a message is `pattern(i)`, except its first (up to)
//! 8 bytes, which carry the message's sequence number on its connection
//! (little endian). Every message is checked for its length and sequence
//! number, and one in `--verify-every` byte for byte, so that a client that
//! drops, repeats, truncates or corrupts messages fails the run (exit code 1,
//! no score).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How a client of one library connects and runs; see [`main`].
#[allow(async_fn_in_trait)] // single-threaded: no `Send` bound wanted
pub trait Client: Sized + 'static {
    /// Dials `addr` and does the library's opening handshake (no
    /// extension offered), with Nagle off.
    async fn connect(addr: SocketAddr) -> Result<Self, String>;

    /// Sends one binary message (any content, e.g. [`GO`]) that tells the
    /// flood server to start, then receives `n` messages, checking each
    /// with [`Conn::check`].
    async fn flood(self, n: u64, conn: &mut Conn) -> Result<(), String>;

    /// Keeps `conn.inflight()` messages ([`Conn::message`]) in flight: one
    /// more sent for every echo received and checked with [`Conn::check`],
    /// until the process ends.
    async fn echo(self, conn: &mut Conn) -> Result<(), String>;
}

/// The message that starts a flood.
pub const GO: &[u8] = b"go";

/// Byte `i` of every payload (past the sequence number).
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8 ^ 0x5a
}

/// A payload of `size` bytes carrying sequence number 0.
pub fn payload(size: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..size).map(pattern).collect();
    stamp(&mut p, 0);
    p
}

/// Writes `seq` into the first (up to) 8 bytes of `payload`.
pub fn stamp(payload: &mut [u8], seq: u64) {
    let n = payload.len().min(8);
    payload[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Which half of the benchmark a run is.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Receive this many messages per connection from a flooding server.
    Flood(u64),
    /// Echo for this many seconds (after the warm-up).
    Echo(f64),
}

/// The command line of every client.
pub struct Args {
    /// The server.
    pub addr: SocketAddr,
    /// Connections.
    pub conns: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Echo messages in flight per connection.
    pub inflight: usize,
    /// Warm-up before an echo run is measured, in seconds.
    pub warmup: f64,
    /// One message in this many is checked byte for byte.
    pub verify_every: u64,
    /// Flood or echo.
    pub mode: Mode,
    /// Printed with the result.
    pub label: String,
}

fn usage(name: &str) -> String {
    format!(
        "usage: {name} (--flood N | --echo SECS) [-c CONNS] [-s SIZE] [-k INFLIGHT] [-w SECS] \
         [--verify-every N] [--label TEXT] HOST:PORT\n\
         \n  --flood N   receive N messages per connection from `flood_server --flood`\
         \n  --echo SECS keep INFLIGHT messages per connection echoing through `flood_server --echo`\
         \n              for SECS seconds after a warm-up of -w SECS (default 1)\n"
    )
}

/// Parses `SIZE` with an optional K or M suffix.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1024),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .map(|n| n * mul)
        .map_err(|e| format!("bad size {s:?}: {e}"))
}

fn parse_args(name: &str) -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
        conns: 1,
        size: 20,
        inflight: 1,
        warmup: 1.0,
        verify_every: 16,
        mode: Mode::Flood(100_000),
        label: name.trim_start_matches("client_").to_owned(),
    };
    let mut addr = None;
    fn val(it: &mut impl Iterator<Item = String>, n: &str) -> Result<String, String> {
        it.next().ok_or_else(|| format!("{n} needs a value"))
    }
    fn num<T: std::str::FromStr>(s: String, n: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        s.parse().map_err(|e| format!("{n}: {e}"))
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--flood" => a.mode = Mode::Flood(num(val(&mut it, &arg)?, &arg)?),
            "--echo" => a.mode = Mode::Echo(num(val(&mut it, &arg)?, &arg)?),
            "-c" | "--conns" => a.conns = num(val(&mut it, &arg)?, &arg)?,
            "-s" | "--size" => a.size = parse_size(&val(&mut it, &arg)?)?,
            "-k" | "--inflight" => a.inflight = num(val(&mut it, &arg)?, &arg)?,
            "-w" | "--warmup" => a.warmup = num(val(&mut it, &arg)?, &arg)?,
            "--verify-every" => a.verify_every = num(val(&mut it, &arg)?, &arg)?,
            "--label" => a.label = val(&mut it, &arg)?,
            "-h" | "--help" => {
                print!("{}", usage(name));
                std::process::exit(0);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => addr = Some(s.parse().map_err(|e| format!("bad address {s:?}: {e}"))?),
        }
    }
    a.addr = addr.ok_or("missing HOST:PORT")?;
    if a.conns == 0 || a.inflight == 0 || a.verify_every == 0 || a.size == 0 {
        return Err("--conns, --size, --inflight and --verify-every must be at least 1".into());
    }
    Ok(a)
}

/// What the connections share: counts and the first error.
struct Shared {
    msgs: Cell<u64>,
    done: Cell<usize>,
    error: RefCell<Option<String>>,
    notify: Notify,
}

/// One connection's view: its checker, its sequence numbers, the counters.
pub struct Conn {
    shared: Rc<Shared>,
    expect: Rc<[u8]>,
    verify_every: u64,
    inflight: usize,
    /// Sequence number of the next message expected.
    recv_seq: u64,
    /// Sequence number of the next message to send.
    send_seq: u64,
}

impl Conn {
    /// Checks the next message received: length, sequence number, and
    /// (one in `--verify-every`) every byte. Counts it.
    #[inline]
    pub fn check(&mut self, data: &[u8]) -> Result<(), String> {
        let seq = self.recv_seq;
        if data.len() != self.expect.len() {
            return Err(format!(
                "message {seq} has {} bytes, {} were sent",
                data.len(),
                self.expect.len()
            ));
        }
        let n = data.len().min(8);
        if data[..n] != seq.to_le_bytes()[..n] {
            return Err(format!(
                "message {seq} carries the wrong sequence number (lost, repeated or corrupted)"
            ));
        }
        if seq.is_multiple_of(self.verify_every) && data[n..] != self.expect[n..] {
            return Err(format!("message {seq} has corrupted content"));
        }
        self.recv_seq += 1;
        // A `Cell` on one thread: cheap enough to count every message, so
        // that a window of an echo run counts exactly.
        self.shared.msgs.set(self.shared.msgs.get() + 1);
        Ok(())
    }

    /// The next message to send (echo mode): a fresh payload with the next
    /// sequence number.
    #[inline]
    pub fn message(&mut self) -> Vec<u8> {
        let mut p = self.expect.to_vec();
        stamp(&mut p, self.send_seq);
        self.send_seq += 1;
        p
    }

    /// Echo messages to keep in flight.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// The payload size.
    pub fn size(&self) -> usize {
        self.expect.len()
    }
}

/// The opening handshake by hand over `tcp`, for a library whose own
/// client handshake needs more machinery (fastwebsockets' goes through a
/// hyper client). Checks `101` and `Sec-WebSocket-Accept`. The benchmark's
/// server sends nothing before the client's first message, so nothing
/// read past the response head is lost.
pub async fn raw_handshake(
    tcp: &mut tokio::net::TcpStream,
    addr: SocketAddr,
) -> Result<(), String> {
    use base64::Engine as _;
    use sha1::Digest as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ (addr.port() as u8));
    let key = b64.encode(raw);
    let accept = b64.encode(sha1::Sha1::digest(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Err("response head too long".into());
        }
        let mut chunk = [0u8; 1024];
        let n = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("expected 101, got {:?}", head.lines().next()));
    }
    let ok = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .any(|(n, v)| n.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == accept);
    if !ok {
        return Err("missing or wrong Sec-WebSocket-Accept".into());
    }
    Ok(())
}

/// This process's CPU time (user + system), in seconds, from `getrusage`.
pub fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct; RUSAGE_SELF is valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn fail(shared: &Shared, id: usize, e: String) {
    let mut slot = shared.error.borrow_mut();
    if slot.is_none() {
        *slot = Some(format!("connection {id}: {e}"));
    }
    shared.notify.notify_one();
}

/// Runs a client binary: parses the command line, opens the connections
/// (at most 64 handshakes at a time), runs the flood or the echo, prints
/// the result.
pub fn main<C: Client>(name: &str) -> ExitCode {
    let args = match parse_args(name) {
        Ok(a) => a,
        Err(e) => {
            eprint!("{name}: {e}\n{}", usage(name));
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    match local.block_on(&rt, run::<C>(name, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("{name}: {e}");
            ExitCode::from(code)
        }
    }
}

async fn connect_all<C: Client>(args: &Args) -> Result<Vec<C>, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    // The server may just have been started.
    while tokio::net::TcpStream::connect(args.addr).await.is_err() {
        if Instant::now() > deadline {
            return Err(format!("server at {} not reachable", args.addr));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = Vec::with_capacity(args.conns);
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    while out.len() < args.conns {
        while next < args.conns && set.len() < 64 {
            let addr = args.addr;
            set.spawn_local(async move { C::connect(addr).await });
            next += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(c))) => out.push(c),
            Some(Ok(Err(e))) => return Err(format!("connect: {e}")),
            Some(Err(e)) => return Err(format!("connect task: {e}")),
            None => return Err("connections missing".into()),
        }
    }
    Ok(out)
}

async fn run<C: Client>(name: &str, args: Args) -> Result<(), (u8, String)> {
    let conns = connect_all::<C>(&args).await.map_err(|e| (2, e))?;
    let shared = Rc::new(Shared {
        msgs: Cell::new(0),
        done: Cell::new(0),
        error: RefCell::new(None),
        notify: Notify::new(),
    });
    let expect: Rc<[u8]> = payload(args.size).into();
    let failed = || shared.error.borrow().clone();

    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let mode = args.mode;
    for (id, c) in conns.into_iter().enumerate() {
        let mut conn = Conn {
            shared: shared.clone(),
            expect: expect.clone(),
            verify_every: args.verify_every,
            inflight: args.inflight,
            recv_seq: 0,
            send_seq: 0,
        };
        tokio::task::spawn_local(async move {
            let r = match mode {
                Mode::Flood(n) => c.flood(n, &mut conn).await,
                Mode::Echo(_) => c.echo(&mut conn).await,
            };
            let shared = conn.shared.clone();
            match r {
                Ok(()) if matches!(mode, Mode::Flood(n) if conn.recv_seq == n) => {
                    shared.done.set(shared.done.get() + 1);
                    if shared.done.get() == args.conns {
                        shared.notify.notify_one();
                    }
                }
                Ok(()) => fail(&shared, id, "the connection ended early".into()),
                Err(e) => fail(&shared, id, e),
            }
        });
    }

    let (msgs, secs, cpu) = match mode {
        Mode::Flood(_) => {
            shared.notify.notified().await;
            (
                shared.msgs.get(),
                t0.elapsed().as_secs_f64(),
                cpu_secs() - cpu0,
            )
        }
        Mode::Echo(d) => {
            let stop = tokio::time::sleep(Duration::from_secs_f64(args.warmup));
            tokio::select! { _ = stop => {}, _ = shared.notify.notified() => {} }
            let (m0, c0, t1) = (shared.msgs.get(), cpu_secs(), Instant::now());
            if failed().is_none() {
                let stop = tokio::time::sleep(Duration::from_secs_f64(d));
                tokio::select! { _ = stop => {}, _ = shared.notify.notified() => {} }
            }
            (
                shared.msgs.get() - m0,
                t1.elapsed().as_secs_f64(),
                cpu_secs() - c0,
            )
        }
    };
    if let Some(e) = failed() {
        return Err((1, format!("FAILED: {e}")));
    }
    let rate = msgs as f64 / secs;
    let mib = rate * args.size as f64 / (1024.0 * 1024.0);
    let (mode_name, inflight) = match mode {
        Mode::Flood(_) => ("flood", 0),
        Mode::Echo(_) => ("echo", args.inflight),
    };
    println!(
        "{}: {mode_name}, {} conns x {} B{}: {rate:.0} msgs/s, {mib:.1} MiB/s ({msgs} messages in {secs:.2} s; \
         client CPU {:.0}%, {:.0} ns per message)",
        args.label,
        args.conns,
        args.size,
        if inflight > 0 { format!(" x {inflight} in flight") } else { String::new() },
        cpu / secs * 100.0,
        cpu / msgs.max(1) as f64 * 1e9,
    );
    println!(
        "RESULT {{\"label\":\"{}\",\"client\":\"{name}\",\"mode\":\"{mode_name}\",\"conns\":{},\"size\":{},\
         \"inflight\":{inflight},\"msgs\":{msgs},\"secs\":{secs:.3},\"msgs_per_s\":{rate:.1},\
         \"mib_per_s\":{mib:.3},\"client_cpu\":{:.3},\"cpu_secs\":{cpu:.3},\"cpu_ns_per_msg\":{:.1}}}",
        args.label.replace(['"', '\\'], "_"),
        args.conns,
        args.size,
        cpu / secs,
        cpu / msgs.max(1) as f64 * 1e9,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(size: usize, verify_every: u64) -> Conn {
        Conn {
            shared: Rc::new(Shared {
                msgs: Cell::new(0),
                done: Cell::new(0),
                error: RefCell::new(None),
                notify: Notify::new(),
            }),
            expect: payload(size).into(),
            verify_every,
            inflight: 1,
            recv_seq: 0,
            send_seq: 0,
        }
    }

    #[test]
    fn accepts_messages_in_sequence() {
        let mut c = conn(20, 1);
        for _ in 0..3 {
            let m = c.message();
            c.check(&m).unwrap();
        }
        assert_eq!(c.shared.msgs.get(), 3);
    }

    #[test]
    fn rejects_wrong_length_sequence_or_content() {
        let mut c = conn(64, 1);
        let good = c.message();
        assert!(c.check(&good[..63]).is_err(), "short");
        assert!(c.check(&[good.clone(), vec![0]].concat()).is_err(), "long");
        let mut bad = good.clone();
        bad[40] ^= 1;
        assert!(c.check(&bad).is_err(), "corrupt");
        let skipped = c.message();
        let next = c.message();
        assert!(c.check(&next).is_err(), "a lost message");
        c.check(&good).unwrap();
        assert!(c.check(&good).is_err(), "a repeated message");
        c.check(&skipped).unwrap();
    }

    #[test]
    fn content_is_sampled_but_sequence_always_checked() {
        let mut c = conn(64, 2);
        let m0 = c.message();
        c.check(&m0).unwrap();
        let mut m1 = c.message();
        m1[40] ^= 1;
        c.check(&m1).unwrap(); // message 1 is not checked byte for byte
        let mut m2 = c.message();
        m2[40] ^= 1;
        assert!(c.check(&m2).is_err());
    }
}
