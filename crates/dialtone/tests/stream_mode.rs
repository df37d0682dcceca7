//! Stream mode: a WebSocket as `AsyncRead + AsyncWrite` (and `Read + Write`)
//! over loopback TCP.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use dialtone::{CloseCode, CloseFrame, Dialer, Message, MessageKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The big round trip's size (about 3 s in a debug build on 2 cores).
const BIG: u64 = 100 << 20;

/// A pseudo-random byte source (BLAKE3 in XOF mode), hashing what it gives.
struct Pseudo {
    xof: blake3::OutputReader,
    left: u64,
    hasher: blake3::Hasher,
}

impl Pseudo {
    fn new(seed: &[u8], len: u64) -> Self {
        Pseudo {
            xof: blake3::Hasher::new().update(seed).finalize_xof(),
            left: len,
            hasher: blake3::Hasher::new(),
        }
    }
}

impl AsyncRead for Pseudo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        let dst = buf.initialize_unfilled_to(n);
        self.xof.fill(dst);
        self.hasher.update(dst);
        buf.advance(n);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// A sink that hashes and counts what is written to it.
#[derive(Default)]
struct HashSink {
    hasher: blake3::Hasher,
    len: u64,
}

impl AsyncWrite for HashSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.hasher.update(data);
        self.len += data.len() as u64;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A listener whose one connection runs `serve` on the accepted socket.
async fn serve_one<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(dialtone::WebSocket<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (ws, _) = dialtone::accept(tcp).await.unwrap();
        serve(ws).await;
    });
    addr
}

/// An echo server that is itself a stream: `tokio::io::copy` from its
/// reading half into its writing half, then shutdown.
async fn stream_echo_server(kind: MessageKind) -> SocketAddr {
    serve_one(move |ws| async move {
        let (mut r, mut w) = tokio::io::split(ws.into_stream(kind));
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_stream_round_trip_through_tokio_io_copy() {
    let started = Instant::now();
    let addr = stream_echo_server(MessageKind::Binary).await;
    let (ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    let (mut r, mut w) = tokio::io::split(ws.into_stream(MessageKind::Binary));

    let writer = tokio::spawn(async move {
        let mut source = Pseudo::new(b"dialtone stream mode", BIG);
        let n = tokio::io::copy(&mut source, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
        (n, source.hasher.finalize(), w)
    });
    let mut sink = HashSink::default();
    let back = tokio::io::copy(&mut r, &mut sink).await.unwrap();
    let (sent, sent_hash, w) = writer.await.unwrap();

    assert_eq!(sent, BIG);
    assert_eq!(back, BIG);
    assert_eq!(sink.len, BIG);
    assert_eq!(sink.hasher.finalize(), sent_hash);
    // The server answered our close (Normal).
    let stream = r.unsplit(w);
    assert_eq!(stream.close_received().unwrap().code, CloseCode::Normal);
    eprintln!("{} MiB round trip in {:?}", BIG >> 20, started.elapsed());
}

/// An echo server that reports every message it receives (data and close).
async fn message_echo_server() -> (SocketAddr, mpsc::UnboundedReceiver<Message>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = serve_one(move |mut ws| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            let _ = tx.send(msg.clone());
            if msg.is_data() {
                let _ = ws.send(msg).await;
            }
        }
    })
    .await;
    (addr, rx)
}

#[tokio::test]
async fn text_stream_holds_back_characters_split_across_writes() {
    let (addr, mut seen) = message_echo_server().await;
    let (ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    let mut stream = ws.into_stream(MessageKind::Text);

    // 'é' is 2 bytes, '€' 3, '🦀' 4: cut each inside.
    let text = "aé€🦀z";
    let bytes = text.as_bytes();
    let writes: [&[u8]; 5] = [
        &bytes[..2],  // "a" + first byte of 'é'
        &bytes[2..4], // rest of 'é' + first byte of '€'
        &bytes[4..5], // second byte of '€' only: no message
        &bytes[5..8], // rest of '€' + first 2 bytes of '🦀'
        &bytes[8..],  // rest of '🦀' + "z"
    ];
    for w in writes {
        assert_eq!(stream.write(w).await.unwrap(), w.len());
    }
    stream.shutdown().await.unwrap();

    let mut back = String::new();
    stream.read_to_string(&mut back).await.unwrap();
    assert_eq!(back, text);

    let mut messages = Vec::new();
    while let Some(msg) = seen.recv().await {
        messages.push(msg);
    }
    assert_eq!(
        messages,
        [
            Message::text("a"),
            Message::text("é"),
            Message::text("€"),
            Message::text("🦀z"),
            Message::Close(CloseFrame::new(CloseCode::Normal, "")),
        ]
    );
}

/// A reader that gives `data` in pieces of 1, 2, … 7 bytes.
struct Dribble {
    data: Vec<u8>,
    pos: usize,
    step: usize,
}

impl AsyncRead for Dribble {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let step = self.step % 7 + 1;
        self.step += 1;
        let end = (self.pos + step).min(self.data.len());
        let n = (end - self.pos).min(buf.remaining());
        buf.put_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn text_stream_round_trip_through_copy_in_small_pieces() {
    let addr = stream_echo_server(MessageKind::Text).await;
    let (ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    let (mut r, mut w) = tokio::io::split(ws.into_stream(MessageKind::Text));
    let text: String = (0..5000)
        .map(|i| ["a", "é", "€", "🦀", "ж", "\u{10FFFF}"][i % 6])
        .collect();
    let mut source = Dribble {
        data: text.clone().into_bytes(),
        pos: 0,
        step: 0,
    };
    let writer = tokio::spawn(async move {
        tokio::io::copy(&mut source, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = String::new();
    r.read_to_string(&mut back).await.unwrap();
    writer.await.unwrap();
    assert_eq!(back, text);
}

#[tokio::test]
async fn text_stream_refuses_invalid_utf8_and_a_cut_character_at_the_end() {
    let (addr, mut seen) = message_echo_server().await;
    let (ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    let mut stream = ws.into_stream(MessageKind::Text);

    let err = stream.write(b"ok\xff").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // A bad continuation of a held-back start fails too, taking nothing.
    assert_eq!(stream.write(b"\xe2\x82").await.unwrap(), 2);
    let err = stream.write(b"x").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // Flushing keeps the held-back start; ending inside it fails once.
    stream.flush().await.unwrap();
    let err = stream.shutdown().await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    stream.shutdown().await.unwrap();

    let mut back = Vec::new();
    assert_eq!(stream.read_to_end(&mut back).await.unwrap(), 0);
    assert_eq!(
        seen.recv().await.unwrap(),
        Message::Close(CloseFrame::new(CloseCode::Normal, ""))
    );
}

#[tokio::test]
async fn read_returns_eof_after_the_peers_close_and_writes_then_fail() {
    let addr = serve_one(|mut ws| async move {
        ws.send(Message::binary(&b"hello "[..])).await.unwrap();
        ws.ping("skipped").await.unwrap();
        ws.send(Message::binary(&b""[..])).await.unwrap();
        ws.send(Message::binary(&b"world"[..])).await.unwrap();
        ws.close(CloseCode::GoingAway, "bye").await.unwrap();
    })
    .await;
    let (ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    let mut stream = ws.into_stream(MessageKind::Binary);
    let mut small = [0u8; 4];
    assert_eq!(stream.read(&mut small).await.unwrap(), 4);
    assert_eq!(&small, b"hell");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"o world");
    assert_eq!(stream.read(&mut small).await.unwrap(), 0, "EOF again");
    assert_eq!(
        stream.close_received(),
        Some(&CloseFrame::new(CloseCode::GoingAway, "bye"))
    );
    let err = stream.write(b"late").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    // Shutting down a closed stream is fine.
    stream.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_transport_ending_without_a_close_frame_is_unexpected_eof() {
    let addr = serve_one(|mut ws| async move {
        ws.send(Message::binary(&b"partial"[..])).await.unwrap();
        drop(ws); // no close frame
    })
    .await;
    let (ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    let mut stream = ws.into_stream(MessageKind::Binary);
    let mut buf = [0u8; 64];
    assert_eq!(stream.read(&mut buf).await.unwrap(), 7);
    let err = stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
    assert_eq!(stream.close_received().unwrap().code, CloseCode::Abruptly);
}

#[tokio::test]
async fn a_message_of_the_other_kind_fails_the_read_and_closes_with_1003() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve_one(move |mut ws| async move {
        ws.send("text into a binary stream").await.unwrap();
        ws.send(Message::binary(&b"after"[..])).await.unwrap();
        while let Some(Ok(msg)) = ws.recv().await {
            let _ = tx.send(msg);
        }
    })
    .await;
    let (ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    let mut stream = ws.into_stream(MessageKind::Binary);
    let mut buf = [0u8; 64];
    let err = stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // What follows is dropped; the stream ends once the close is done.
    assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
    let close = rx.recv().await.unwrap();
    let Message::Close(frame) = close else {
        panic!("expected a close, got {close:?}");
    };
    assert_eq!(frame.code, CloseCode::UnexpectedData);
}

/// A blocking echo server for one connection: a stream that writes back
/// what it reads, then shuts down.
fn blocking_stream_echo_server(kind: MessageKind) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let (ws, _) = dialtone::Acceptor::new().accept_blocking(tcp).unwrap();
        let mut stream = ws.into_stream(kind);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n]).unwrap();
        }
        stream.shutdown().unwrap();
        assert_eq!(stream.close_received().unwrap().code, CloseCode::Normal);
    });
    (addr, server)
}

#[test]
fn blocking_binary_stream_round_trip() {
    let (addr, server) = blocking_stream_echo_server(MessageKind::Binary);
    let (ws, _) = Dialer::new()
        .dial_blocking(&format!("ws://{addr}/"))
        .unwrap();
    let mut stream = ws.into_stream(MessageKind::Binary);
    let mut xof = blake3::Hasher::new().update(b"blocking").finalize_xof();
    let (mut sent, mut received) = (blake3::Hasher::new(), blake3::Hasher::new());
    let mut chunk = vec![0u8; 64 * 1024];
    let mut back = vec![0u8; 64 * 1024];
    for _ in 0..64 {
        xof.fill(&mut chunk);
        sent.update(&chunk);
        stream.write_all(&chunk).unwrap();
        stream.read_exact(&mut back).unwrap();
        received.update(&back);
    }
    stream.shutdown().unwrap();
    assert_eq!(stream.read(&mut back).unwrap(), 0);
    assert_eq!(sent.finalize(), received.finalize());
    server.join().unwrap();
}

#[test]
fn blocking_text_stream_holds_back_a_cut_character() {
    let (addr, server) = blocking_stream_echo_server(MessageKind::Text);
    let (ws, _) = Dialer::new()
        .dial_blocking(&format!("ws://{addr}/"))
        .unwrap();
    let mut stream = ws.into_stream(MessageKind::Text);
    assert_eq!(stream.write(b"a\xc3").unwrap(), 2);
    assert_eq!(stream.write(b"\xa9b\xf0\x9f").unwrap(), 4);
    assert_eq!(
        stream.write(b"\xff").unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    assert_eq!(stream.write(b"\xa6\x80").unwrap(), 2);
    stream.shutdown().unwrap();
    let mut back = String::new();
    stream.read_to_string(&mut back).unwrap();
    assert_eq!(back, "aéb🦀");
    server.join().unwrap();
}
