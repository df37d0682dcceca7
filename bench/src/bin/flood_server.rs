//! `flood_server`: the server of the dialer benchmark, over raw TCP with no
//! WebSocket library (like `load_test`, it must share no code with the
//! clients it measures).
//!
//! It answers the opening handshake (no extension, whatever is offered),
//! then, per run:
//!
//! - `--flood`: waits for the client's first message (so that a run's clock
//!   starts before anything is sent), then writes pre-built unmasked binary
//!   frames of `--size` bytes as fast as the client reads them, until the
//!   client goes away. Frames are built once, 256 KiB of them per write;
//!   only each frame's first (up to) 8 payload bytes change: the message's
//!   sequence number on the connection. The rest of the payload is
//!   `dialtone_bench::dialer::pattern`, which the clients check.
//! - `--echo`: unmasks each client frame and sends it back unmasked, with
//!   the same opcode and FIN bit (a fragmented message comes back
//!   fragmented alike); answers a ping with a pong and a close with a close.
//!
//! One `current_thread` runtime, a task per connection, Nagle off.

use std::net::SocketAddr;
use std::process::ExitCode;

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage: flood_server (--flood | --echo) [-s SIZE] [HOST:PORT]   (default 127.0.0.1:9001, 20 B)\n";
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Bytes of frames per write in flood mode.
const CHUNK: usize = 256 * 1024;
/// The largest client frame echoed (bigger ones end the connection).
const MAX_FRAME: usize = 64 << 20;

#[derive(Clone, Copy)]
enum Mode {
    Flood(usize),
    Echo,
}

fn parse_args() -> Result<(Mode, SocketAddr), String> {
    let mut mode = None;
    let mut size = 20;
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 9001));
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--flood" => mode = Some(false),
            "--echo" => mode = Some(true),
            "-s" | "--size" => {
                size = dialtone_bench::dialer::parse_size(&it.next().ok_or("-s needs a value")?)?
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => addr = s.parse().map_err(|e| format!("bad address {s:?}: {e}"))?,
        }
    }
    match mode {
        Some(true) => Ok((Mode::Echo, addr)),
        Some(false) if size > 0 => Ok((Mode::Flood(size), addr)),
        Some(false) => Err("--size must be at least 1".into()),
        None => Err("say --flood or --echo".into()),
    }
}

fn header(op_fin: u8, len: usize, out: &mut Vec<u8>) {
    out.push(op_fin);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Reads the request head, answers 101. Returns bytes read past the head.
async fn handshake(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err("request head too long".into());
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "non-UTF-8 head")?;
    let key = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim())
        .ok_or("no Sec-WebSocket-Key")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let accept = b64.encode(Sha1::digest(format!("{key}{GUID}").as_bytes()));
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream
        .write_all(response.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    Ok(buf[end..].to_vec())
}

/// A client frame's header: (header length, payload length, first byte,
/// mask).
type Header = (usize, usize, u8, [u8; 4]);

/// The client frame header at the front of `buf`, or `None` if it is
/// incomplete.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 == 0 {
        return Err("unmasked client frame".into());
    }
    let (len, at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap_or([0; 8])),
            10,
        ),
        126 | 127 => return Ok(None),
        l => (l as u64, 2),
    };
    if len > MAX_FRAME as u64 {
        return Err(format!("client frame of {len} bytes"));
    }
    if buf.len() < at + 4 {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    Ok(Some((at + 4, len as usize, buf[0], mask)))
}

/// Appends `data` unmasked to `out`.
fn unmask_into(data: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(data);
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let dst = &mut out[start..];
    let mut chunks = dst.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

async fn flood(mut stream: TcpStream, mut rx: Vec<u8>, size: usize) -> Result<(), String> {
    // Wait for the client's first whole frame.
    loop {
        if let Some((h, len, _, _)) = parse_header(&rx)? {
            if rx.len() >= h + len {
                break;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        rx.extend_from_slice(&chunk[..n]);
    }
    let mut frame = Vec::with_capacity(size + 10);
    header(0x82, size, &mut frame);
    let at = frame.len();
    frame.extend((0..size).map(dialtone_bench::dialer::pattern));
    let flen = frame.len();
    let per_chunk = (CHUNK / flen).max(1);
    let mut out = Vec::with_capacity(per_chunk * flen);
    for _ in 0..per_chunk {
        out.extend_from_slice(&frame);
    }
    let stamped = size.min(8);
    let mut seq: u64 = 0;
    loop {
        for k in 0..per_chunk {
            let p = k * flen + at;
            out[p..p + stamped].copy_from_slice(&seq.to_le_bytes()[..stamped]);
            seq += 1;
        }
        if stream.write_all(&out).await.is_err() {
            return Ok(()); // the client has all it wanted and went away
        }
    }
}

async fn echo(mut stream: TcpStream, mut rx: Vec<u8>) -> Result<(), String> {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut used = 0;
    loop {
        let mut closing = false;
        while let Some((h, len, b0, mask)) = parse_header(&rx[used..])? {
            if rx.len() - used < h + len {
                break;
            }
            let op = b0 & 0x0f;
            let data = &rx[used + h..used + h + len];
            match op {
                0x9 => {
                    header(0x8a, len, &mut out);
                    unmask_into(data, mask, &mut out);
                }
                0xa => {}
                0x8 => {
                    header(0x88, len, &mut out);
                    unmask_into(data, mask, &mut out);
                    closing = true;
                }
                _ => {
                    header(b0 & 0x8f, len, &mut out);
                    unmask_into(data, mask, &mut out);
                }
            }
            used += h + len;
            if closing {
                break;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
        }
        if closing {
            return Ok(());
        }
        rx.drain(..used);
        used = 0;
        // Room for the frame being received, at least 64 KiB.
        let want = match parse_header(&rx)? {
            Some((h, len, _, _)) => (h + len).max(64 * 1024),
            None => 64 * 1024,
        };
        let len = rx.len();
        if rx.capacity() < want {
            rx.reserve(want - len);
        }
        let n = stream.read_buf(&mut rx).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
    }
}

async fn serve(mut stream: TcpStream, mode: Mode) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let rest = handshake(&mut stream).await?;
    match mode {
        Mode::Flood(size) => flood(stream, rest, size).await,
        Mode::Echo => echo(stream, rest).await,
    }
}

fn main() -> ExitCode {
    let (mode, addr) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprint!("flood_server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    dialtone_bench::run("flood_server", async move {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                if let Err(e) = serve(stream, mode).await {
                    if std::env::var_os("ECHO_VERBOSE").is_some() {
                        eprintln!("flood_server: connection: {e}");
                    }
                }
            });
        }
    });
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = Vec::new();
        header(b0, payload.len(), &mut f);
        f[1] |= 0x80;
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn unmasks_every_length_and_alignment() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in [0, 1, 7, 8, 9, 125, 126, 1000, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let frame = client_frame(0x82, &payload, mask);
            let (h, l, b0, m) = parse_header(&frame).unwrap().unwrap();
            assert_eq!((l, b0, m), (len, 0x82, mask));
            let mut out = vec![0xaa]; // appended after what is there
            unmask_into(&frame[h..], m, &mut out);
            assert_eq!(&out[1..], &payload[..], "len {len}");
        }
    }

    #[test]
    fn waits_for_a_whole_header_and_refuses_unmasked_or_huge_frames() {
        let frame = client_frame(0x82, &[0u8; 300], [1, 2, 3, 4]);
        for cut in 0..8 {
            assert!(parse_header(&frame[..cut]).unwrap().is_none(), "cut {cut}");
        }
        assert!(parse_header(&[0x82, 0x05]).is_err(), "unmasked");
        let mut huge = vec![0x82, 0xff];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(parse_header(&huge).is_err(), "huge");
    }
}
