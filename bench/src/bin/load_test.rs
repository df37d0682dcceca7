//! `load_test`: an echo load generator that speaks WebSocket over raw TCP.
//!
//! Modelled on the `load_test` tool of uWebSockets and fastwebsockets, but
//! written here from scratch, with no WebSocket library: it must not share
//! code with any server it measures.
//!
//! N connections each do the opening handshake (checking `101` and
//! `Sec-WebSocket-Accept`), then keep K masked binary messages of S bytes in
//! flight, sending one more for every echo received. Frames are built once;
//! only the first (up to) 8 payload bytes change from one message to the
//! next: they carry the message's sequence number, so that an echo out of
//! order, repeated or stale is caught. Every echo is checked for opcode,
//! length and sequence number, and one in `--verify-every` in full; any
//! mismatch fails the run (exit code 1, no score printed).
//!
//! After a warm-up (1 s) the echoes are counted for `--duration` seconds and
//! the rates printed: a line for people and a `RESULT {json}` line.
//!
//! With `--idle`, the connections only do the handshake; the tool prints
//! `READY handshake N` and waits for a line on stdin, then sends one message
//! on each connection and checks its echo, prints `READY echo N` and waits
//! for a line (or the end of stdin) before exiting. A driver reads the
//! server's memory in the two pauses.
//!
//! With `--deflate`, the handshake offers permessage-deflate (by default
//! `permessage-deflate; client_no_context_takeover; client_max_window_bits`,
//! or the offer given with `--deflate-offer`) and requires the server to
//! accept it; the connections then send compressed frames (RSV1) of JSON
//! market-data messages of about S bytes, from a pool of distinct messages
//! compressed once before the run (each on its own: we never keep our
//! context), and inflate and check every echo with one inflater per
//! connection (the server may keep its context). The result adds the bytes
//! on the wire per message each way. `--idle --deflate` negotiates
//! compression and sends one compressed message each after the pause.
//!
//! With `--http2`, each connection speaks HTTP/2 with prior knowledge (h2c)
//! and carries one WebSocket opened by extended CONNECT (RFC 8441): the
//! same frames and checks, as DATA on that stream. HTTP/2 itself comes from
//! the `h2` crate (not a WebSocket library); every read's bytes go back to
//! the server's window at once, so flow control never holds the echo back.

use std::future::Future;
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

const USAGE: &str = "\
usage: load_test [options] HOST:PORT

  -c, --conns N          connections (default 1)
  -s, --size BYTES       message payload size (default 20); K/M suffixes ok
  -k, --inflight K       messages in flight per connection (default 1)
  -d, --duration SECS    measured time (default 5)
  -w, --warmup SECS      warm-up before measuring (default 1)
      --verify-every N   check the full content of one echo in N (default 8)
      --sources N        spread connections over source addresses
                         127.0.0.1 .. 127.0.0.N (default: 1 per 5000 conns)
      --label TEXT       a name to print with the result (e.g. the server)
      --watch-pid PID    also report that process's CPU use (the server's)
      --idle             open the connections, then pause (see the docs)
      --deflate          offer permessage-deflate, send compressed JSON messages
      --deflate-offer EXT  the Sec-WebSocket-Extensions offer (implies --deflate;
                         default: permessage-deflate; client_no_context_takeover;
                         client_max_window_bits)
      --deflate-pool N   distinct messages in the pool (default 64)
      --http2            each connection is HTTP/2 with prior knowledge (h2c)
                         carrying one WebSocket (extended CONNECT, RFC 8441)
  -h, --help
";

struct Args {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    inflight: usize,
    duration: f64,
    warmup: f64,
    verify_every: u64,
    sources: usize,
    label: String,
    watch_pid: Option<u32>,
    idle: bool,
    /// The permessage-deflate offer, with `--deflate`.
    deflate: Option<String>,
    deflate_pool: usize,
    /// `--http2`: each connection carries one WebSocket over h2c.
    http2: bool,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1024),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .map(|n| n * mul)
        .map_err(|e| format!("bad size {s:?}: {e}"))
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut addr = None;
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
        conns: 1,
        size: 20,
        inflight: 1,
        duration: 5.0,
        warmup: 1.0,
        verify_every: 8,
        sources: 0,
        label: String::new(),
        watch_pid: None,
        idle: false,
        deflate: None,
        deflate_pool: 64,
        http2: false,
    };
    fn val(it: &mut impl Iterator<Item = String>, name: &str) -> Result<String, String> {
        it.next().ok_or_else(|| format!("{name} needs a value"))
    }
    fn num<T: std::str::FromStr>(s: String, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        s.parse().map_err(|e| format!("{name}: {e}"))
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--conns" => a.conns = num(val(&mut it, &arg)?, &arg)?,
            "-s" | "--size" => a.size = parse_size(&val(&mut it, &arg)?)?,
            "-k" | "--inflight" => a.inflight = num(val(&mut it, &arg)?, &arg)?,
            "-d" | "--duration" => a.duration = num(val(&mut it, &arg)?, &arg)?,
            "-w" | "--warmup" => a.warmup = num(val(&mut it, &arg)?, &arg)?,
            "--verify-every" => a.verify_every = num(val(&mut it, &arg)?, &arg)?,
            "--sources" => a.sources = num(val(&mut it, &arg)?, &arg)?,
            "--label" => a.label = val(&mut it, &arg)?,
            "--watch-pid" => a.watch_pid = Some(num(val(&mut it, &arg)?, &arg)?),
            "--idle" => a.idle = true,
            "--http2" => a.http2 = true,
            "--deflate" => {
                a.deflate
                    .get_or_insert_with(|| deflate::DEFAULT_OFFER.to_owned());
            }
            "--deflate-offer" => a.deflate = Some(val(&mut it, &arg)?),
            "--deflate-pool" => a.deflate_pool = num(val(&mut it, &arg)?, &arg)?,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => {
                addr = Some(
                    s.parse::<SocketAddr>()
                        .map_err(|e| format!("bad address {s:?}: {e}"))?,
                )
            }
        }
    }
    a.addr = addr.ok_or("missing HOST:PORT")?;
    if a.conns == 0 || a.inflight == 0 || a.verify_every == 0 || a.deflate_pool == 0 {
        return Err("--conns, --inflight and --verify-every must be at least 1".into());
    }
    if a.sources == 0 {
        a.sources = a.conns.div_ceil(5000);
    }
    if a.sources > 250 {
        return Err("--sources must be at most 250".into());
    }
    Ok(a)
}

/// A small deterministic generator for keys, masks and payloads.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn seed(i: usize) -> XorShift {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    XorShift((t ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
}

// ---------------------------------------------------------------- handshake

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A TCP connection (from `source`, if given), Nagle off.
async fn tcp_connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    // Close with a reset: no TIME_WAIT left behind to use up the ports of
    // the next runs.
    stream.set_zero_linger().map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Connects (from `source`, if given) and does the opening handshake,
/// offering `extensions` if given. Returns the stream, any bytes read past
/// the response head, and the server's `Sec-WebSocket-Extensions` answer.
async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    rng: &mut XorShift,
    extensions: Option<&str>,
) -> Result<(TcpStream, Vec<u8>, Option<String>), String> {
    let mut stream = tcp_connect(addr, source).await?;

    let mut raw_key = [0u8; 16];
    rng.fill(&mut raw_key);
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.encode(raw_key);
    let expected_accept = b64.encode(Sha1::digest(format!("{key}{GUID}").as_bytes()));
    let offer = match extensions {
        Some(e) => format!("Sec-WebSocket-Extensions: {e}\r\n"),
        None => String::new(),
    };
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("handshake write: {e}"))?;

    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err("handshake response head too long".into());
        }
        let mut chunk = [0u8; 2048];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("handshake read: {e}"))?;
        if n == 0 {
            return Err("server closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "non-UTF-8 response head")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.split(' ');
    if parts.next() != Some("HTTP/1.1") || parts.next() != Some("101") {
        return Err(format!("expected 101, got {status:?}"));
    }
    let mut accept_ok = false;
    let mut agreed = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            if value != expected_accept {
                return Err(format!(
                    "Sec-WebSocket-Accept {value:?}, expected {expected_accept:?}"
                ));
            }
            accept_ok = true;
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            if extensions.is_some() && agreed.is_none() {
                agreed = Some(value.to_owned());
                continue;
            }
            return Err(format!(
                "server enabled extensions none were offered: {value}"
            ));
        }
    }
    if !accept_ok {
        return Err("no Sec-WebSocket-Accept in the response".into());
    }
    Ok((stream, buf[head_end..].to_vec(), agreed))
}

/// Opens `n` connections, at most 256 handshakes at a time. Returns them
/// and the extensions the server agreed to (the same on every connection).
async fn connect_all(args: &Args) -> Result<(Vec<(Stream, Vec<u8>)>, Option<String>), String> {
    // Wait for the server to listen (it may just have been started).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(args.addr).await {
            Ok(probe) => {
                let _ = probe.set_zero_linger();
                break;
            }
            Err(e) if Instant::now() > deadline => {
                return Err(format!("server at {} not reachable: {e}", args.addr))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let sources: Vec<Option<IpAddr>> = if args.sources <= 1 {
        vec![None]
    } else {
        (1..=args.sources)
            .map(|i| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8))))
            .collect()
    };
    let mut out = Vec::with_capacity(args.conns);
    let mut agreed = None;
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    while out.len() < args.conns {
        while next < args.conns && set.len() < 256 {
            let (addr, source) = (args.addr, sources[next % sources.len()]);
            let mut rng = seed(next);
            let offer = args.deflate.clone();
            if args.http2 {
                set.spawn(async move {
                    let s = http2::connect(addr, source, offer.as_deref()).await?;
                    Ok((Stream::H2(s.0), Vec::new(), s.1))
                });
            } else {
                set.spawn(async move {
                    let s = connect(addr, source, &mut rng, offer.as_deref()).await?;
                    Ok((Stream::Tcp(s.0), s.1, s.2))
                });
            }
            next += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok((stream, rest, ext)))) => {
                if out.is_empty() {
                    agreed = ext;
                } else if ext != agreed {
                    return Err(format!(
                        "the server agreed to {ext:?} on one connection and {agreed:?} on another"
                    ));
                }
                out.push((stream, rest));
            }
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => return Err(format!("connect task: {e}")),
            None => unreachable!("tasks are left while connections are missing"),
        }
    }
    Ok((out, agreed))
}

/// A connection's byte stream: TCP, or one HTTP/2 stream (`--http2`).
enum Stream {
    Tcp(TcpStream),
    H2(http2::H2Io),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::H2(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::H2(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::H2(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::H2(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// `--http2`: one WebSocket per h2c connection, opened by extended CONNECT.
mod http2 {
    use super::*;
    use bytes::{Buf as _, Bytes};

    /// One HTTP/2 stream as bytes: DATA frames in, DATA frames out.
    pub struct H2Io {
        send: h2::SendStream<Bytes>,
        recv: h2::RecvStream,
        pending: Bytes,
    }

    fn io_err(e: h2::Error) -> std::io::Error {
        std::io::Error::other(e)
    }

    impl AsyncRead for H2Io {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let this = self.get_mut();
            if this.pending.is_empty() {
                match this.recv.poll_data(cx) {
                    Poll::Ready(Some(Ok(data))) => {
                        // The window is given back at once: the load, not
                        // flow control, sets the pace.
                        let _ = this.recv.flow_control().release_capacity(data.len());
                        this.pending = data;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io_err(e))),
                    Poll::Ready(None) => return Poll::Ready(Ok(())), // end of stream
                    Poll::Pending => return Poll::Pending,
                }
            }
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.pending.advance(n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for H2Io {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            this.send.reserve_capacity(buf.len());
            loop {
                // poll_capacity only reports increases: what is already
                // granted is used first.
                let n = this.send.capacity().min(buf.len());
                if n > 0 {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    this.send.send_data(data, false).map_err(io_err)?;
                    return Poll::Ready(Ok(n));
                }
                match this.send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => continue,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io_err(e))),
                    Poll::Ready(None) => {
                        return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            let _ = self.get_mut().send.send_data(Bytes::new(), true);
            Poll::Ready(Ok(()))
        }
    }

    /// Opens an h2c connection and one WebSocket on it (offering
    /// `extensions`, if given). Returns it and the server's
    /// `Sec-WebSocket-Extensions` answer.
    pub async fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        extensions: Option<&str>,
    ) -> Result<(H2Io, Option<String>), String> {
        let tcp = tcp_connect(addr, source).await?;
        let (send, mut conn) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 22)
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        // The server's SETTINGS is its first frame: once a PING is answered,
        // we know whether it enabled extended CONNECT.
        let mut ping = conn.ping_pong().ok_or("no PING handle")?;
        tokio::select! {
            end = &mut conn => return Err(format!("the server ended the connection at once: {end:?}")),
            pong = ping.ping(h2::Ping::opaque()) => {
                pong.map_err(|e| format!("PING: {e}"))?;
            }
        }
        tokio::spawn(async move {
            let _ = conn.await;
        });
        if !send.is_extended_connect_protocol_enabled() {
            return Err("the server did not enable extended CONNECT (RFC 8441)".into());
        }
        let mut request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("http://{addr}/"))
            .header("sec-websocket-version", "13");
        if let Some(e) = extensions {
            request = request.header("sec-websocket-extensions", e);
        }
        let mut request = request.body(()).map_err(|e| e.to_string())?;
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        let mut send = send.ready().await.map_err(|e| format!("HTTP/2: {e}"))?;
        let (response, stream) = send
            .send_request(request, false)
            .map_err(|e| format!("extended CONNECT: {e}"))?;
        let response = response
            .await
            .map_err(|e| format!("extended CONNECT response: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("expected 200, got {}", response.status()));
        }
        let agreed = match response.headers().get("sec-websocket-extensions") {
            None => None,
            Some(_) if extensions.is_none() => {
                return Err("server enabled extensions none were offered".into())
            }
            Some(v) => Some(v.to_str().map_err(|e| e.to_string())?.to_owned()),
        };
        Ok((
            H2Io {
                send: stream,
                recv: response.into_body(),
                pending: Bytes::new(),
            },
            agreed,
        ))
    }
}

// ------------------------------------------------------------------- frames

/// What every connection sends: one masked frame, and its unmasked payload.
struct Template {
    /// The whole frame: header, mask key, masked payload.
    frame: Vec<u8>,
    /// Where the payload starts in `frame`.
    payload_at: usize,
    mask: [u8; 4],
    /// The payload as it should come back (its first 8 bytes replaced by
    /// the sequence number).
    payload: Arc<[u8]>,
}

impl Template {
    fn new(size: usize, rng: &mut XorShift) -> Template {
        let mut payload = vec![0u8; size];
        rng.fill(&mut payload);
        let mut mask = [0u8; 4];
        rng.fill(&mut mask);
        let mut frame = Vec::with_capacity(size + 14);
        frame.push(0x82); // FIN, binary
        if size < 126 {
            frame.push(0x80 | size as u8);
        } else if size <= u16::MAX as usize {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(size as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(size as u64).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        let payload_at = frame.len();
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        Template {
            frame,
            payload_at,
            mask,
            payload: payload.into(),
        }
    }

    /// Writes `seq` (masked) into the first payload bytes of `frame`, a copy
    /// of [`Template::frame`].
    fn stamp(&self, frame: &mut [u8], seq: u64) {
        let seq = seq.to_le_bytes();
        let n = self.payload.len().min(8);
        for i in 0..n {
            frame[self.payload_at + i] = seq[i] ^ self.mask[i % 4];
        }
    }
}

/// Reads the server's frames and checks each echo.
struct Checker {
    size: usize,
    verify_every: u64,
    expect: Arc<[u8]>,
    /// Sequence number of the next (or current) echo.
    seq: u64,
    in_message: bool,
    msg_len: usize,
    full_check: bool,
    in_payload: bool,
    frame_left: usize,
    frame_fin: bool,
}

impl Checker {
    fn new(size: usize, verify_every: u64, expect: Arc<[u8]>) -> Self {
        Checker {
            size,
            verify_every,
            expect,
            seq: 0,
            in_message: false,
            msg_len: 0,
            full_check: false,
            in_payload: false,
            frame_left: 0,
            frame_fin: false,
        }
    }

    /// Consumes what it can of `buf`: returns the bytes consumed (all but a
    /// partial frame header) and the echoes completed.
    fn feed(&mut self, buf: &[u8]) -> Result<(usize, u64), String> {
        let mut i = 0;
        let mut done = 0;
        loop {
            if self.in_payload {
                let n = self.frame_left.min(buf.len() - i);
                if n == 0 {
                    break;
                }
                self.check(&buf[i..i + n])?;
                self.msg_len += n;
                self.frame_left -= n;
                i += n;
                if self.frame_left == 0 {
                    self.in_payload = false;
                    done += self.end_frame()?;
                }
                continue;
            }
            let rest = &buf[i..];
            if rest.len() < 2 {
                break;
            }
            let (b0, b1) = (rest[0], rest[1]);
            if b1 & 0x80 != 0 {
                return Err("the server sent a masked frame".into());
            }
            if b0 & 0x70 != 0 {
                return Err(format!("RSV bits set in frame header {b0:#04x}"));
            }
            let (len, header) = match b1 & 0x7f {
                126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as u64, 4),
                127 if rest.len() >= 10 => (
                    u64::from_be_bytes(rest[2..10].try_into().expect("8 bytes")),
                    10,
                ),
                126 | 127 => break,
                l => (l as u64, 2),
            };
            match (self.in_message, b0 & 0x0f) {
                (false, 0x2) => {
                    self.in_message = true;
                    self.msg_len = 0;
                    self.full_check = self.seq.is_multiple_of(self.verify_every);
                }
                (true, 0x0) => {}
                (_, 0x8) => {
                    let code = match (len >= 2, rest.get(header..header + 2)) {
                        (true, Some(c)) => u16::from_be_bytes([c[0], c[1]]).to_string(),
                        _ => "none".into(),
                    };
                    return Err(format!("the server sent a close frame (code {code})"));
                }
                (m, op) => {
                    return Err(format!(
                        "unexpected opcode {op:#x} ({} a message)",
                        if m { "inside" } else { "at the start of" }
                    ))
                }
            }
            if self.msg_len as u64 + len > self.size as u64 {
                return Err(format!(
                    "echo longer than the {} bytes sent (at least {})",
                    self.size,
                    self.msg_len as u64 + len
                ));
            }
            i += header;
            self.frame_left = len as usize;
            self.frame_fin = b0 & 0x80 != 0;
            if len == 0 {
                done += self.end_frame()?;
            } else {
                self.in_payload = true;
            }
        }
        Ok((i, done))
    }

    fn end_frame(&mut self) -> Result<u64, String> {
        if !self.frame_fin {
            return Ok(0);
        }
        if self.msg_len != self.size {
            return Err(format!(
                "echo of {} bytes, {} were sent",
                self.msg_len, self.size
            ));
        }
        self.in_message = false;
        self.seq += 1;
        Ok(1)
    }

    /// Checks payload bytes at the current offset of the message.
    fn check(&self, data: &[u8]) -> Result<(), String> {
        let off = self.msg_len;
        let stamped = self.size.min(8);
        let s = stamped.saturating_sub(off).min(data.len());
        if s > 0 {
            let seq = self.seq.to_le_bytes();
            if data[..s] != seq[off..off + s] {
                return Err(format!(
                    "echo {} carries the wrong sequence number (reordered, repeated or corrupted)",
                    self.seq
                ));
            }
        }
        if self.full_check && data[s..] != self.expect[off + s..off + data.len()] {
            return Err(format!("echo {} has corrupted content", self.seq));
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ running

struct Shared {
    msgs: AtomicU64,
    per_conn: Vec<AtomicU64>,
    failed: AtomicBool,
    error: Mutex<Option<String>>,
    notify: Notify,
}

impl Shared {
    fn fail(&self, conn: usize, e: String) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(format!("connection {conn}: {e}"));
        }
        self.failed.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// One connection's echo loop, polled by hand so that reading and writing
/// go on together without a second task.
struct Conn {
    id: usize,
    stream: Stream,
    shared: Arc<Shared>,
    template: Arc<Template>,
    /// `batch` copies of the frame, to send several in one write.
    out: Vec<u8>,
    batch: usize,
    /// Messages that may be sent (echoes received, plus the initial K).
    credits: u64,
    next_seq: u64,
    /// The part of `out` being written: `out[written..writing]`.
    writing: usize,
    written: usize,
    rx: Vec<u8>,
    rx_len: usize,
    checker: Checker,
}

impl Conn {
    fn fail(&mut self, e: String) -> Poll<()> {
        self.shared.fail(self.id, e);
        Poll::Ready(())
    }
}

impl Future for Conn {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let mut progress = false;

            // Send.
            if this.writing == 0 && this.credits > 0 {
                let n = (this.credits as usize).min(this.batch);
                let flen = this.template.frame.len();
                for k in 0..n {
                    let seq = this.next_seq + k as u64;
                    this.template
                        .stamp(&mut this.out[k * flen..(k + 1) * flen], seq);
                }
                this.next_seq += n as u64;
                this.credits -= n as u64;
                this.writing = n * flen;
                this.written = 0;
            }
            while this.written < this.writing {
                let buf = &this.out[this.written..this.writing];
                match Pin::new(&mut this.stream).poll_write(cx, buf) {
                    Poll::Ready(Ok(0)) => return this.fail("write returned 0".into()),
                    Poll::Ready(Ok(n)) => {
                        this.written += n;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return this.fail(format!("write: {e}")),
                    Poll::Pending => break,
                }
            }
            if this.writing > 0 && this.written == this.writing {
                this.writing = 0;
                this.written = 0;
            }

            // Receive.
            let mut rb = ReadBuf::new(&mut this.rx[this.rx_len..]);
            match Pin::new(&mut this.stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        return this.fail("the server closed the connection".into());
                    }
                    let end = this.rx_len + n;
                    let (used, done) = match this.checker.feed(&this.rx[..end]) {
                        Ok(r) => r,
                        Err(e) => return this.fail(e),
                    };
                    this.rx.copy_within(used..end, 0);
                    this.rx_len = end - used;
                    if done > 0 {
                        this.credits += done;
                        this.shared.msgs.fetch_add(done, Ordering::Relaxed);
                        this.shared.per_conn[this.id].fetch_add(done, Ordering::Relaxed);
                    }
                    progress = true;
                }
                Poll::Ready(Err(e)) => return this.fail(format!("read: {e}")),
                Poll::Pending => {}
            }

            if !progress {
                return Poll::Pending;
            }
        }
    }
}

fn conn_loop(
    id: usize,
    stream: Stream,
    leftover: Vec<u8>,
    args: &Args,
    shared: &Arc<Shared>,
    template: &Arc<Template>,
) -> Conn {
    let flen = template.frame.len();
    let batch = args.inflight.min((64 * 1024 / flen).max(1));
    let mut out = Vec::with_capacity(batch * flen);
    for _ in 0..batch {
        out.extend_from_slice(&template.frame);
    }
    let rx_size = (args.inflight * flen).clamp(4096, 256 * 1024);
    if !leftover.is_empty() {
        // Echoes cannot come before we send: the server spoke out of turn.
        shared.fail(id, "data after the handshake before any message".into());
    }
    Conn {
        id,
        stream,
        shared: shared.clone(),
        template: template.clone(),
        out,
        batch,
        credits: args.inflight as u64,
        next_seq: 0,
        writing: 0,
        written: 0,
        rx: vec![0u8; rx_size],
        rx_len: 0,
        checker: Checker::new(args.size, args.verify_every, template.payload.clone()),
    }
}

fn snapshot(shared: &Shared) -> (u64, Vec<u64>) {
    (
        shared.msgs.load(Ordering::Relaxed),
        shared
            .per_conn
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect(),
    )
}

/// A process's CPU time in seconds (user + system), from `/proc/PID/stat`.
fn cpu_time(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// CPU seconds of the whole machine (user, nice, system) and stolen by the
/// hypervisor, from `/proc/stat`. Interrupt time is left out: processes'
/// times leave it out too.
fn machine_time() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    Some((
        (f.first()? + f.get(1)? + f.get(2)?) / 100.0,
        f.get(7).copied().unwrap_or(0.0) / 100.0,
    ))
}

/// CPU use over a window: this process, the watched one, and the rest of
/// the machine; each in cores.
struct CpuUse {
    own: Option<f64>,
    watched: Option<f64>,
    machine: Option<(f64, f64)>,
}

impl CpuUse {
    fn now(watch: Option<u32>) -> Self {
        CpuUse {
            own: cpu_time("self"),
            watched: watch.and_then(|p| cpu_time(&p.to_string())),
            machine: machine_time(),
        }
    }

    /// (own, watched, others, steal) in cores over `secs`.
    fn since(&self, end: &CpuUse, secs: f64) -> (f64, f64, f64, f64) {
        let d = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (b - a) / secs,
            _ => f64::NAN,
        };
        let own = d(self.own, end.own);
        let watched = d(self.watched, end.watched);
        let (busy, steal) = match (self.machine, end.machine) {
            (Some(a), Some(b)) => ((b.0 - a.0) / secs, (b.1 - a.1) / secs),
            _ => (f64::NAN, f64::NAN),
        };
        let others = busy - own - if watched.is_nan() { 0.0 } else { watched };
        (own, watched, others.max(0.0), steal)
    }
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

fn error_of(shared: &Shared) -> Option<String> {
    if shared.failed.load(Ordering::Acquire) {
        shared
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    } else {
        None
    }
}

async fn run(args: Args) -> Result<(), (u8, String)> {
    let t0 = Instant::now();
    let (conns, agreed) = connect_all(&args).await.map_err(|e| (2, e))?;
    let connect_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "load_test: {} connections open in {connect_secs:.2} s",
        conns.len()
    );
    if args.deflate.is_some() {
        return deflate::run(args, conns, agreed).await;
    }
    if args.idle {
        return idle(args, conns).await;
    }

    let shared = Arc::new(Shared {
        msgs: AtomicU64::new(0),
        per_conn: (0..args.conns).map(|_| AtomicU64::new(0)).collect(),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        notify: Notify::new(),
    });
    let template = Arc::new(Template::new(args.size, &mut seed(usize::MAX)));
    for (id, (stream, leftover)) in conns.into_iter().enumerate() {
        let conn = conn_loop(id, stream, leftover, &args, &shared, &template);
        tokio::spawn(conn);
    }

    let failed = shared.notify.notified();
    tokio::pin!(failed);
    let warm_end = Instant::now() + Duration::from_secs_f64(args.warmup);
    tokio::select! {
        _ = tokio::time::sleep_until(warm_end.into()) => {}
        _ = &mut failed => {}
    }
    let (m0, per0) = snapshot(&shared);
    let cpu0 = CpuUse::now(args.watch_pid);
    let t_start = Instant::now();
    if error_of(&shared).is_none() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(args.duration)) => {}
            _ = &mut failed => {}
        }
    }
    let (m1, per1) = snapshot(&shared);
    let secs = t_start.elapsed().as_secs_f64();
    let (cpu, server_cpu, other_cpu, steal) = cpu0.since(&CpuUse::now(args.watch_pid), secs);
    if let Some(e) = error_of(&shared) {
        return Err((1, format!("FAILED: {e}")));
    }
    let msgs = m1 - m0;
    let stalled = per0.iter().zip(&per1).filter(|(a, b)| a == b).count();
    let (min, max) = per0
        .iter()
        .zip(&per1)
        .map(|(a, b)| b - a)
        .fold((u64::MAX, 0), |(lo, hi), d| (lo.min(d), hi.max(d)));
    let rate = msgs as f64 / secs;
    let mib = rate * args.size as f64 / (1024.0 * 1024.0);
    let label = if args.label.is_empty() {
        String::new()
    } else {
        format!("{}: ", args.label)
    };
    println!(
        "{label}{} conns x {} B x {} in flight: {rate:.0} msgs/s, {mib:.2} MiB/s \
         ({msgs} echoes in {secs:.2} s; per connection min {min} max {max}; {stalled} stalled; \
         CPU: load_test {:.0}%, server {:.0}%, others {:.0}%)",
        args.conns,
        args.size,
        args.inflight,
        cpu * 100.0,
        server_cpu * 100.0,
        other_cpu * 100.0,
    );
    println!(
        "RESULT {{\"label\":\"{}\",\"conns\":{},\"size\":{},\"inflight\":{},\"secs\":{secs:.3},\
         \"msgs\":{msgs},\"total_msgs\":{m1},\"msgs_per_s\":{rate:.1},\"mib_per_s\":{mib:.3},\"stalled\":{stalled},\
         \"min_per_conn\":{min},\"max_per_conn\":{max},\"client_cpu\":{},\"server_cpu\":{},\"other_cpu\":{},\"steal\":{}}}",
        args.label.replace(['"', '\\'], "_"),
        args.conns,
        args.size,
        args.inflight,
        json_num(cpu),
        json_num(server_cpu),
        json_num(other_cpu),
        json_num(steal),
    );
    std::io::stdout().flush().ok();
    if stalled > 0 {
        eprintln!("load_test: warning: {stalled} connections got no echo while measured");
    }
    Ok(())
}

/// `--idle`: hold the connections open; one echo each between two pauses.
async fn idle(args: Args, mut conns: Vec<(Stream, Vec<u8>)>) -> Result<(), (u8, String)> {
    let pause = |what: &str| {
        println!("READY {what} {}", args.conns);
        std::io::stdout().flush().ok();
        // Blocking is fine: nothing else needs to run meanwhile.
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    };
    pause("handshake");

    let template = Template::new(args.size, &mut seed(usize::MAX));
    let mut set = tokio::task::JoinSet::new();
    let mut done = 0;
    let mut held = Vec::with_capacity(conns.len());
    let total = conns.len();
    let mut id = 0;
    while done < total {
        while set.len() < 256 {
            let Some((mut stream, _)) = conns.pop() else {
                break;
            };
            let mut frame = template.frame.clone();
            template.stamp(&mut frame, 0);
            let mut checker = Checker::new(args.size, 1, template.payload.clone());
            let i = id;
            id += 1;
            set.spawn(async move {
                stream
                    .write_all(&frame)
                    .await
                    .map_err(|e| format!("connection {i}: write: {e}"))?;
                let mut buf = vec![0u8; frame.len() + 16];
                let mut len = 0;
                loop {
                    let n = stream
                        .read(&mut buf[len..])
                        .await
                        .map_err(|e| format!("connection {i}: read: {e}"))?;
                    if n == 0 {
                        return Err(format!("connection {i}: closed by the server"));
                    }
                    len += n;
                    let (used, got) = checker
                        .feed(&buf[..len])
                        .map_err(|e| format!("connection {i}: {e}"))?;
                    buf.copy_within(used..len, 0);
                    len -= used;
                    if got > 0 {
                        return Ok(stream);
                    }
                }
            });
        }
        match set.join_next().await {
            Some(Ok(Ok(stream))) => {
                held.push(stream);
                done += 1;
            }
            Some(Ok(Err(e))) => return Err((1, format!("FAILED: {e}"))),
            Some(Err(e)) => return Err((2, format!("echo task: {e}"))),
            None => break,
        }
    }
    pause("echo");
    drop(held);
    Ok(())
}

// ---------------------------------------------------------- permessage-deflate

/// `--deflate`: compressed echoes of JSON messages, and `--idle --deflate`.
mod deflate {
    use super::*;
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

    /// The offer made by `--deflate` without `--deflate-offer`: we promise
    /// not to keep our context (so every pre-built message stands alone)
    /// and let the server choose our window.
    pub const DEFAULT_OFFER: &str =
        "permessage-deflate; client_no_context_takeover; client_max_window_bits";

    const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

    /// Our window, from the server's answer: `client_max_window_bits`, else 15.
    pub fn client_window_bits(answer: &str) -> Result<u8, String> {
        if answer.contains(',') {
            return Err(format!(
                "the server agreed to more than one extension: {answer}"
            ));
        }
        let mut parts = answer.split(';').map(str::trim);
        if !parts
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"))
        {
            return Err(format!(
                "the server agreed to {answer:?}, not permessage-deflate"
            ));
        }
        let mut bits = 15;
        for p in parts {
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (p, None),
            };
            let window = |v: Option<&str>| -> Result<u8, String> {
                match v.and_then(|v| v.parse::<u8>().ok()) {
                    Some(b @ 8..=15) => Ok(b),
                    _ => Err(format!("bad {k} in the server's answer {answer:?}")),
                }
            };
            match k {
                "server_no_context_takeover" | "client_no_context_takeover" if v.is_none() => {}
                "server_max_window_bits" => {
                    window(v)?;
                }
                "client_max_window_bits" => bits = window(v)?,
                _ => return Err(format!("unexpected parameter {p:?} in the server's answer")),
            }
        }
        if bits == 8 {
            // zlib makes 9-bit windows for 8: we could not keep the promise.
            return Err("client_max_window_bits=8 is not supported by zlib".into());
        }
        Ok(bits)
    }

    /// A market-data-like JSON message of exactly `size` bytes (padded
    /// with trailing spaces, which JSON allows): ticks with varying prices,
    /// quantities, sides and times.
    pub fn json_message(size: usize, idx: usize, rng: &mut XorShift) -> Vec<u8> {
        const SYMBOLS: [&str; 8] = [
            "BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD", "DOGE-USD", "AVAX-USD",
            "LINK-USD",
        ];
        let mut s = format!("{{\"type\":\"ticks\",\"seq\":{idx},\"ticks\":[");
        let mut t = 1_764_684_000_000u64 + idx as u64 * 997;
        let mut first = true;
        loop {
            let r = rng.next();
            let price = 1_000 + (r >> 8) % 9_000_000; // cents
            t += (r >> 40) % 50;
            let tick = format!(
                "{}{{\"s\":\"{}\",\"p\":{}.{:02},\"q\":0.{:06},\"side\":\"{}\",\"t\":{t}}}",
                if first { "" } else { "," },
                SYMBOLS[(r % 8) as usize],
                price / 100,
                price % 100,
                (r >> 32) % 1_000_000,
                if r & (1 << 20) != 0 { "buy" } else { "sell" },
            );
            if s.len() + tick.len() + 2 > size {
                break;
            }
            s.push_str(&tick);
            first = false;
        }
        s.push_str("]}");
        if s.len() > size {
            // Too small for a tick: one price.
            let price = 1_000 + rng.next() % 9_000_000;
            s = format!("{{\"p\":{}.{:02}}}", price / 100, price % 100);
        }
        let mut v = s.into_bytes();
        v.truncate(size);
        v.resize(size, b' ');
        v
    }

    /// `msg` compressed on its own (RFC 7692 §7.2.1: sync flush, the
    /// trailing `00 00 ff ff` removed).
    pub fn compress(msg: &[u8], bits: u8) -> Result<Vec<u8>, String> {
        let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits);
        let mut out = Vec::with_capacity(msg.len() + 64);
        loop {
            let done = c.total_in() as usize;
            c.compress_vec(&msg[done..], &mut out, FlushCompress::Sync)
                .map_err(|e| format!("deflate: {e}"))?;
            if c.total_in() as usize == msg.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if !out.ends_with(&TRAILER) {
            return Err("deflate output does not end with a sync flush".into());
        }
        out.truncate(out.len() - 4);
        Ok(out)
    }

    /// One message of the pool: its frame (masked, RSV1) and its text.
    pub struct Entry {
        pub frame: Vec<u8>,
        pub plain: Vec<u8>,
    }

    pub fn pool(args: &Args, bits: u8) -> Result<Vec<Entry>, String> {
        let mut rng = seed(usize::MAX);
        (0..args.deflate_pool)
            .map(|i| {
                let plain = json_message(args.size, i, &mut rng);
                let z = compress(&plain, bits)?;
                let mut mask = [0u8; 4];
                rng.fill(&mut mask);
                let mut frame = Vec::with_capacity(z.len() + 14);
                frame.push(0xc2); // FIN, RSV1, binary
                if z.len() < 126 {
                    frame.push(0x80 | z.len() as u8);
                } else if z.len() <= u16::MAX as usize {
                    frame.push(0x80 | 126);
                    frame.extend_from_slice(&(z.len() as u16).to_be_bytes());
                } else {
                    frame.push(0x80 | 127);
                    frame.extend_from_slice(&(z.len() as u64).to_be_bytes());
                }
                frame.extend_from_slice(&mask);
                frame.extend(z.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                Ok(Entry { frame, plain })
            })
            .collect()
    }

    /// Reads the server's frames, inflates each message (one inflater for
    /// the connection: the server may keep its context) and checks it
    /// against the message sent.
    pub struct Inflating {
        pool: Arc<[Entry]>,
        inflater: Decompress,
        seq: u64,
        in_message: bool,
        compressed: bool,
        in_payload: bool,
        frame_left: usize,
        frame_fin: bool,
        /// The current message's payload as received.
        wire: Vec<u8>,
        out: Vec<u8>,
        limit: usize,
    }

    impl Inflating {
        pub fn new(pool: Arc<[Entry]>) -> Self {
            let limit = pool.iter().map(|e| e.plain.len()).max().unwrap_or(0);
            Inflating {
                pool,
                inflater: Decompress::new(false),
                seq: 0,
                in_message: false,
                compressed: false,
                in_payload: false,
                frame_left: 0,
                frame_fin: false,
                wire: Vec::with_capacity(limit + 64),
                out: Vec::with_capacity(limit + 64),
                limit,
            }
        }

        /// As [`Checker::feed`]: bytes consumed, messages completed.
        pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, u64), String> {
            let mut i = 0;
            let mut done = 0;
            loop {
                if self.in_payload {
                    let n = self.frame_left.min(buf.len() - i);
                    if n == 0 {
                        break;
                    }
                    if self.wire.len() + n > self.limit + 1024 {
                        return Err("echo larger than any message sent".into());
                    }
                    self.wire.extend_from_slice(&buf[i..i + n]);
                    self.frame_left -= n;
                    i += n;
                    if self.frame_left == 0 {
                        self.in_payload = false;
                        done += self.end_frame()?;
                    }
                    continue;
                }
                let rest = &buf[i..];
                if rest.len() < 2 {
                    break;
                }
                let (b0, b1) = (rest[0], rest[1]);
                if b1 & 0x80 != 0 {
                    return Err("the server sent a masked frame".into());
                }
                let (len, header) = match b1 & 0x7f {
                    126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as u64, 4),
                    127 if rest.len() >= 10 => (
                        u64::from_be_bytes(rest[2..10].try_into().expect("8 bytes")),
                        10,
                    ),
                    126 | 127 => break,
                    l => (l as u64, 2),
                };
                if matches!(b0 & 0x0f, 0x9 | 0xa) {
                    // A ping (servers such as Python websockets' send them
                    // every 20 s) or pong: skipped whole; a run is too short
                    // for an unanswered ping to time out.
                    if rest.len() < header + len as usize {
                        break;
                    }
                    i += header + len as usize;
                    continue;
                }
                match (self.in_message, b0 & 0x0f, b0 & 0x70) {
                    (false, 0x2, 0x40 | 0x00) => {
                        self.in_message = true;
                        self.compressed = b0 & 0x40 != 0;
                        self.wire.clear();
                    }
                    (true, 0x0, 0x00) => {}
                    (_, 0x8, _) => return Err("the server sent a close frame".into()),
                    (m, op, rsv) => {
                        return Err(format!(
                            "unexpected frame: opcode {op:#x}, RSV bits {rsv:#x} ({} a message)",
                            if m { "inside" } else { "at the start of" }
                        ))
                    }
                }
                if len > (self.limit + 1024) as u64 {
                    return Err(format!("echo frame of {len} bytes"));
                }
                i += header;
                self.frame_left = len as usize;
                self.frame_fin = b0 & 0x80 != 0;
                if len == 0 {
                    done += self.end_frame()?;
                } else {
                    self.in_payload = true;
                }
            }
            Ok((i, done))
        }

        fn end_frame(&mut self) -> Result<u64, String> {
            if !self.frame_fin {
                return Ok(0);
            }
            self.in_message = false;
            if self.compressed {
                self.inflate()?;
            }
            let want = &self.pool[(self.seq % self.pool.len() as u64) as usize].plain;
            let got = if self.compressed {
                &self.out
            } else {
                &self.wire
            };
            if got != want {
                return Err(format!(
                    "echo {} differs from the message sent ({} bytes after inflating, {} sent)",
                    self.seq,
                    got.len(),
                    want.len()
                ));
            }
            self.seq += 1;
            Ok(1)
        }

        fn inflate(&mut self) -> Result<(), String> {
            self.out.clear();
            let wire = std::mem::take(&mut self.wire);
            let r = (|| {
                for part in [&wire[..], &TRAILER[..]] {
                    let mut used = 0;
                    loop {
                        if self.out.len() > self.limit {
                            return Err("an echo inflates to more than was sent".to_owned());
                        }
                        if self.out.len() == self.out.capacity() {
                            self.out.reserve(4096);
                        }
                        let (in0, out0) = (self.inflater.total_in(), self.out.len());
                        let st = self
                            .inflater
                            .decompress_vec(&part[used..], &mut self.out, FlushDecompress::Sync)
                            .map_err(|e| format!("inflate: {e}"))?;
                        used += (self.inflater.total_in() - in0) as usize;
                        if st == Status::StreamEnd {
                            // A final block: the next message starts a new stream.
                            self.inflater.reset(false);
                            break;
                        }
                        if used == part.len() && self.out.len() < self.out.capacity() {
                            break;
                        }
                        if used == part.len() && self.out.len() == out0 && st == Status::BufError {
                            break;
                        }
                    }
                }
                Ok(())
            })();
            self.wire = wire;
            r
        }
    }

    struct DShared {
        msgs: AtomicU64,
        sent: AtomicU64,
        up: AtomicU64,
        down: AtomicU64,
        failed: AtomicBool,
        error: Mutex<Option<String>>,
        notify: Notify,
    }

    impl DShared {
        fn fail(&self, conn: usize, e: String) {
            let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(format!("connection {conn}: {e}"));
            }
            self.failed.store(true, Ordering::Release);
            self.notify.notify_one();
        }

        fn error(&self) -> Option<String> {
            if self.failed.load(Ordering::Acquire) {
                self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
            } else {
                None
            }
        }
    }

    /// One connection's compressed echo loop; as [`Conn`], polled by hand.
    struct DConn {
        id: usize,
        stream: Stream,
        shared: Arc<DShared>,
        pool: Arc<[Entry]>,
        out: Vec<u8>,
        batch: usize,
        credits: u64,
        next_seq: u64,
        writing: usize,
        written: usize,
        rx: Vec<u8>,
        rx_len: usize,
        checker: Inflating,
    }

    impl Future for DConn {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            loop {
                let mut progress = false;
                if this.writing == 0 && this.credits > 0 {
                    let n = (this.credits as usize).min(this.batch);
                    this.out.clear();
                    for k in 0..n as u64 {
                        let e = &this.pool[((this.next_seq + k) % this.pool.len() as u64) as usize];
                        this.out.extend_from_slice(&e.frame);
                    }
                    this.next_seq += n as u64;
                    this.credits -= n as u64;
                    this.writing = this.out.len();
                    this.written = 0;
                    this.shared.sent.fetch_add(n as u64, Ordering::Relaxed);
                    this.shared
                        .up
                        .fetch_add(this.writing as u64, Ordering::Relaxed);
                }
                while this.written < this.writing {
                    match Pin::new(&mut this.stream)
                        .poll_write(cx, &this.out[this.written..this.writing])
                    {
                        Poll::Ready(Ok(0)) => {
                            this.shared.fail(this.id, "write returned 0".into());
                            return Poll::Ready(());
                        }
                        Poll::Ready(Ok(n)) => {
                            this.written += n;
                            progress = true;
                        }
                        Poll::Ready(Err(e)) => {
                            this.shared.fail(this.id, format!("write: {e}"));
                            return Poll::Ready(());
                        }
                        Poll::Pending => break,
                    }
                }
                if this.writing > 0 && this.written == this.writing {
                    this.writing = 0;
                    this.written = 0;
                }
                let mut rb = ReadBuf::new(&mut this.rx[this.rx_len..]);
                match Pin::new(&mut this.stream).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            this.shared
                                .fail(this.id, "the server closed the connection".into());
                            return Poll::Ready(());
                        }
                        this.shared.down.fetch_add(n as u64, Ordering::Relaxed);
                        let end = this.rx_len + n;
                        let (used, done) = match this.checker.feed(&this.rx[..end]) {
                            Ok(r) => r,
                            Err(e) => {
                                this.shared.fail(this.id, e);
                                return Poll::Ready(());
                            }
                        };
                        this.rx.copy_within(used..end, 0);
                        this.rx_len = end - used;
                        if done > 0 {
                            this.credits += done;
                            this.shared.msgs.fetch_add(done, Ordering::Relaxed);
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        this.shared.fail(this.id, format!("read: {e}"));
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
                if !progress {
                    return Poll::Pending;
                }
            }
        }
    }

    pub async fn run(
        args: Args,
        conns: Vec<(Stream, Vec<u8>)>,
        agreed: Option<String>,
    ) -> Result<(), (u8, String)> {
        let agreed = agreed.ok_or_else(|| {
            (
                1,
                "FAILED: the server did not agree to permessage-deflate".to_owned(),
            )
        })?;
        let bits = client_window_bits(&agreed).map_err(|e| (1, format!("FAILED: {e}")))?;
        let pool: Arc<[Entry]> = pool(&args, bits).map_err(|e| (2, e))?.into();
        let plain: usize = pool.iter().map(|e| e.plain.len()).sum();
        let framed: usize = pool.iter().map(|e| e.frame.len()).sum();
        eprintln!(
            "load_test: permessage-deflate agreed: {agreed}; {} messages of {} B, {:.1} B on the wire each on average",
            pool.len(),
            plain / pool.len(),
            framed as f64 / pool.len() as f64
        );
        if args.idle {
            return idle(args, conns, pool).await;
        }
        let shared = Arc::new(DShared {
            msgs: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            notify: Notify::new(),
        });
        let max_frame = pool.iter().map(|e| e.frame.len()).max().unwrap_or(1);
        let batch = args.inflight.min((64 * 1024 / max_frame).max(1));
        for (id, (stream, leftover)) in conns.into_iter().enumerate() {
            if !leftover.is_empty() {
                shared.fail(id, "data after the handshake before any message".into());
            }
            tokio::spawn(DConn {
                id,
                stream,
                shared: shared.clone(),
                pool: pool.clone(),
                out: Vec::with_capacity(batch * max_frame),
                batch,
                credits: args.inflight as u64,
                next_seq: 0,
                writing: 0,
                written: 0,
                rx: vec![0u8; 64 * 1024],
                rx_len: 0,
                checker: Inflating::new(pool.clone()),
            });
        }
        let snap =
            |s: &DShared| [&s.msgs, &s.sent, &s.up, &s.down].map(|c| c.load(Ordering::Relaxed));
        let failed = shared.notify.notified();
        tokio::pin!(failed);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(args.warmup)) => {}
            _ = &mut failed => {}
        }
        let s0 = snap(&shared);
        let cpu0 = CpuUse::now(args.watch_pid);
        let t = Instant::now();
        if shared.error().is_none() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(args.duration)) => {}
                _ = &mut failed => {}
            }
        }
        let s1 = snap(&shared);
        let secs = t.elapsed().as_secs_f64();
        let (cpu, server_cpu, other_cpu, steal) = cpu0.since(&CpuUse::now(args.watch_pid), secs);
        if let Some(e) = shared.error() {
            return Err((1, format!("FAILED: {e}")));
        }
        let [msgs, sent, up, down] = [0, 1, 2, 3].map(|i| s1[i] - s0[i]);
        let rate = msgs as f64 / secs;
        let up_per = up as f64 / sent.max(1) as f64;
        let down_per = down as f64 / msgs.max(1) as f64;
        let label = if args.label.is_empty() {
            String::new()
        } else {
            format!("{}: ", args.label)
        };
        println!(
            "{label}deflate, {} conns x {} B JSON x {} in flight: {rate:.0} msgs/s; on the wire per message \
             {up_per:.1} B up, {down_per:.1} B down ({msgs} echoes in {secs:.2} s; CPU: load_test {:.0}%, \
             server {:.0}%, others {:.0}%)",
            args.conns,
            args.size,
            args.inflight,
            cpu * 100.0,
            server_cpu * 100.0,
            other_cpu * 100.0,
        );
        println!(
            "RESULT {{\"label\":\"{}\",\"deflate\":\"{}\",\"conns\":{},\"size\":{},\"inflight\":{},\"secs\":{secs:.3},\
             \"msgs\":{msgs},\"msgs_per_s\":{rate:.1},\"wire_up_per_msg\":{up_per:.1},\"wire_down_per_msg\":{down_per:.1},\
             \"client_cpu\":{},\"server_cpu\":{},\"other_cpu\":{},\"steal\":{}}}",
            args.label.replace(['"', '\\'], "_"),
            agreed.replace(['"', '\\'], "_"),
            args.conns,
            args.size,
            args.inflight,
            json_num(cpu),
            json_num(server_cpu),
            json_num(other_cpu),
            json_num(steal),
        );
        std::io::stdout().flush().ok();
        Ok(())
    }

    /// `--idle --deflate`: the connections hold a negotiated extension;
    /// after the pause, one compressed message each.
    async fn idle(
        args: Args,
        mut conns: Vec<(Stream, Vec<u8>)>,
        pool: Arc<[Entry]>,
    ) -> Result<(), (u8, String)> {
        let pause = |what: &str| {
            println!("READY {what} {}", args.conns);
            std::io::stdout().flush().ok();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        };
        pause("handshake");
        let mut set = tokio::task::JoinSet::new();
        let total = conns.len();
        let mut held = Vec::with_capacity(total);
        let mut id = 0;
        while held.len() < total {
            while set.len() < 256 {
                let Some((mut stream, _)) = conns.pop() else {
                    break;
                };
                let pool = pool.clone();
                let i = id;
                id += 1;
                set.spawn(async move {
                    stream
                        .write_all(&pool[0].frame)
                        .await
                        .map_err(|e| format!("connection {i}: write: {e}"))?;
                    let mut checker = Inflating::new(pool);
                    let mut buf = vec![0u8; 4096];
                    let mut len = 0;
                    loop {
                        let n = stream
                            .read(&mut buf[len..])
                            .await
                            .map_err(|e| format!("connection {i}: read: {e}"))?;
                        if n == 0 {
                            return Err(format!("connection {i}: closed by the server"));
                        }
                        len += n;
                        let (used, got) = checker
                            .feed(&buf[..len])
                            .map_err(|e| format!("connection {i}: {e}"))?;
                        buf.copy_within(used..len, 0);
                        len -= used;
                        if got > 0 {
                            return Ok(stream);
                        }
                    }
                });
            }
            match set.join_next().await {
                Some(Ok(Ok(stream))) => held.push(stream),
                Some(Ok(Err(e))) => return Err((1, format!("FAILED: {e}"))),
                Some(Err(e)) => return Err((2, format!("echo task: {e}"))),
                None => break,
            }
        }
        pause("echo");
        drop(held);
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
            let mut f = vec![first];
            if payload.len() < 126 {
                f.push(payload.len() as u8);
            } else {
                f.push(126);
                f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            f.extend_from_slice(payload);
            f
        }

        fn test_pool(size: usize) -> Arc<[Entry]> {
            let mut a = parse_args_for_test();
            a.size = size;
            a.deflate_pool = 4;
            pool(&a, 12).unwrap().into()
        }

        fn parse_args_for_test() -> Args {
            Args {
                addr: SocketAddr::from(([127, 0, 0, 1], 1)),
                conns: 1,
                size: 20,
                inflight: 1,
                duration: 1.0,
                warmup: 0.0,
                verify_every: 1,
                sources: 1,
                label: String::new(),
                watch_pid: None,
                idle: false,
                deflate: Some(DEFAULT_OFFER.into()),
                deflate_pool: 4,
                http2: false,
            }
        }

        #[test]
        fn json_messages_have_the_size_asked_and_differ() {
            let mut rng = XorShift(3);
            for size in [10, 20, 128, 1024, 16384] {
                let a = json_message(size, 0, &mut rng);
                let b = json_message(size, 1, &mut rng);
                assert_eq!(a.len(), size);
                assert_ne!(a, b);
            }
            let m = json_message(1024, 0, &mut rng);
            assert!(m.starts_with(b"{\"type\":\"ticks\""));
            assert!(String::from_utf8(m).unwrap().trim_end().ends_with("}]}"));
        }

        #[test]
        fn reads_the_window_the_server_allows() {
            assert_eq!(client_window_bits("permessage-deflate").unwrap(), 15);
            assert_eq!(
                client_window_bits(
                    "permessage-deflate; client_max_window_bits=12; server_max_window_bits=12"
                )
                .unwrap(),
                12
            );
            assert!(client_window_bits("x-webkit-deflate-frame").is_err());
            assert!(client_window_bits("permessage-deflate; client_max_window_bits").is_err());
            assert!(client_window_bits("permessage-deflate; foo").is_err());
        }

        /// A server that keeps its context: the second echo refers back
        /// to the first.
        #[test]
        fn inflates_echoes_compressed_with_context_or_not() {
            let pool = test_pool(1024);
            let mut z = Compress::new_with_window_bits(Compression::new(6), false, 15);
            let mut wire = Vec::new();
            for e in pool.iter().take(3) {
                let mut out = Vec::with_capacity(4096);
                z.compress_vec(&e.plain, &mut out, FlushCompress::Sync)
                    .unwrap();
                out.truncate(out.len() - 4);
                wire.extend(server_frame(0xc2, &out));
            }
            wire.extend(server_frame(0x89, b"ping")); // skipped
            wire.extend(server_frame(0x82, &pool[3].plain)); // uncompressed
            for step in [1, 7, 100, wire.len()] {
                let mut c = Inflating::new(pool.clone());
                let (mut buf, mut done) = (Vec::new(), 0);
                for chunk in wire.chunks(step) {
                    buf.extend_from_slice(chunk);
                    let (used, n) = c.feed(&buf).unwrap();
                    buf.drain(..used);
                    done += n;
                }
                assert_eq!(done, 4, "step {step}");
            }
        }

        #[test]
        fn rejects_a_wrong_or_reordered_echo() {
            let pool = test_pool(256);
            let mut c = Inflating::new(pool.clone());
            let z = compress(&pool[1].plain, 15).unwrap();
            assert!(
                c.feed(&server_frame(0xc2, &z)).is_err(),
                "message 1 echoed first"
            );
            let mut c = Inflating::new(pool.clone());
            let mut bad = pool[0].plain.clone();
            bad[10] ^= 1;
            assert!(c.feed(&server_frame(0x82, &bad)).is_err(), "corrupted");
            let mut c = Inflating::new(pool.clone());
            assert!(c.feed(&server_frame(0xa2, &pool[0].plain)).is_err(), "RSV2");
        }

        #[test]
        fn pool_frames_inflate_to_their_messages() {
            let pool = test_pool(16384);
            for e in pool.iter() {
                let frame = &e.frame;
                assert_eq!(frame[0], 0xc2);
                let at = 4 + 4; // 126-length header + mask
                let mask = [frame[4], frame[5], frame[6], frame[7]];
                let z: Vec<u8> = frame[at..]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[i % 4])
                    .collect();
                assert!(z.len() < e.plain.len() / 2, "JSON compresses");
                let mut d = Decompress::new_with_window_bits(false, 12);
                let mut out = Vec::with_capacity(e.plain.len() + 16);
                d.decompress_vec(
                    &[z, TRAILER.to_vec()].concat(),
                    &mut out,
                    FlushDecompress::Sync,
                )
                .unwrap();
                assert_eq!(out, e.plain);
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprint!("load_test: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("load_test: {e}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's frame: unmasked, binary unless `op` says otherwise.
    fn server_frame(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | op];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else if payload.len() <= 0xffff {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            f.push(127);
            f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    /// The payload the server should echo for message `seq`.
    fn echo_of(t: &Template, seq: u64) -> Vec<u8> {
        let mut frame = t.frame.clone();
        t.stamp(&mut frame, seq);
        frame[t.payload_at..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ t.mask[i % 4])
            .collect()
    }

    fn setup(size: usize) -> (Template, Checker) {
        let t = Template::new(size, &mut XorShift(42));
        let c = Checker::new(size, 1, t.payload.clone());
        (t, c)
    }

    #[test]
    fn frame_header_and_mask() {
        for (size, header) in [(20, 2), (125, 2), (126, 4), (70_000, 10)] {
            let t = Template::new(size, &mut XorShift(7));
            assert_eq!(t.frame[0], 0x82);
            assert_eq!(t.frame[1] & 0x80, 0x80, "client frames are masked");
            assert_eq!(t.payload_at, header + 4);
            assert_eq!(t.frame.len(), header + 4 + size);
            let unmasked = echo_of(&t, 0);
            assert_eq!(&unmasked[..8], &0u64.to_le_bytes());
            assert_eq!(&unmasked[8..], &t.payload[8..]);
        }
    }

    #[test]
    fn good_echoes_count_in_any_split() {
        for size in [1, 20, 300, 70_000] {
            let (t, mut c) = setup(size);
            let mut stream = Vec::new();
            for seq in 0..3 {
                stream.extend(server_frame(2, true, &echo_of(&t, seq)));
            }
            // Fed in pieces of every size, keeping what was not consumed.
            for step in [1, 3, 7, 1000, stream.len()] {
                let (t2, mut c2) = setup(size);
                assert_eq!(t2.payload, t.payload);
                let (mut buf, mut done) = (Vec::new(), 0);
                for chunk in stream.chunks(step) {
                    buf.extend_from_slice(chunk);
                    let (used, n) = c2.feed(&buf).unwrap();
                    buf.drain(..used);
                    done += n;
                }
                assert_eq!(done, 3, "size {size}, step {step}");
                assert!(buf.is_empty());
            }
            assert_eq!(c.feed(&stream).unwrap(), (stream.len(), 3));
        }
    }

    #[test]
    fn fragmented_echo_counts_once() {
        let (t, mut c) = setup(300);
        let p = echo_of(&t, 0);
        let mut s = server_frame(2, false, &p[..100]);
        s.extend(server_frame(0, false, &p[100..250]));
        s.extend(server_frame(0, true, &p[250..]));
        assert_eq!(c.feed(&s).unwrap(), (s.len(), 1));
    }

    #[test]
    fn broken_echoes_fail() {
        let (t, _) = setup(64);
        let good = echo_of(&t, 0);
        let mut corrupt = good.clone();
        corrupt[40] ^= 1;
        let mut truncated = good.clone();
        truncated.pop();
        let mut masked = server_frame(2, true, &good);
        masked[1] |= 0x80;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("corrupted content", server_frame(2, true, &corrupt)),
            ("stale sequence", server_frame(2, true, &echo_of(&t, 5))),
            ("short", server_frame(2, true, &truncated)),
            (
                "long",
                server_frame(2, true, &[good.clone(), vec![0]].concat()),
            ),
            ("text", server_frame(1, true, &good)),
            ("close", server_frame(8, true, &[3, 232])),
            ("ping", server_frame(9, true, b"")),
            ("masked", masked),
            ("continuation first", server_frame(0, true, &good)),
        ];
        for (what, bytes) in cases {
            let (_, mut c) = setup(64);
            assert!(c.feed(&bytes).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn sampling_skips_content_but_not_sequence() {
        let t = Template::new(64, &mut XorShift(42));
        let mut c = Checker::new(64, 2, t.payload.clone());
        // Message 0 is checked in full, message 1 only for its sequence.
        c.feed(&server_frame(2, true, &echo_of(&t, 0))).unwrap();
        let mut p1 = echo_of(&t, 1);
        p1[40] ^= 1;
        c.feed(&server_frame(2, true, &p1)).unwrap();
        let mut p2 = echo_of(&t, 2);
        p2[40] ^= 1;
        assert!(c.feed(&server_frame(2, true, &p2)).is_err());
        let (_, mut c) = setup(64);
        assert!(c.feed(&server_frame(2, true, &echo_of(&t, 1))).is_err());
    }
}
