//! An HTTP/2 client for the tests, made of the `h2` crate: its streams as
//! byte streams ([`H2Io`]) under a client `WebSocket` (the core's own
//! frames), and extended CONNECT requests (RFC 8441).

#![allow(dead_code)]

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use dialtone::http::{Method, Request, StatusCode};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An HTTP/2 stream as a client's byte stream: DATA frames in, DATA frames
/// out under the stream's flow control, END_STREAM on shutdown.
pub struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    buf: Bytes,
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.buf.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.buf = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = self.buf.len().min(out.remaining());
        out.put_slice(&self.buf.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.send.reserve_capacity(data.len());
        let n = match ready!(self.send.poll_capacity(cx)) {
            Some(Ok(n)) => n.min(data.len()),
            Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        };
        self.send
            .send_data(Bytes::copy_from_slice(&data[..n]), false)
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}

/// An HTTP/2 client connection over `io`, its connection task spawned.
pub async fn h2_client<T>(io: T) -> h2::client::SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    // The server's SETTINGS may come after the handshake's first round trip.
    for _ in 0..100 {
        if client.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        client = client.ready().await.unwrap();
    }
    client
}

/// An extended CONNECT for a WebSocket on `path`, with `headers` (the
/// version header included only if given).
pub fn connect_request(
    port: u16,
    path: &str,
    protocol: Option<&str>,
    headers: &[(&str, &str)],
) -> Request<()> {
    let mut builder = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://localhost:{port}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(()).unwrap();
    if let Some(p) = protocol {
        request.extensions_mut().insert(h2::ext::Protocol::from(p));
    }
    request
}

/// Sends `request` on a new stream; the status, the response headers and
/// the stream as a byte stream.
pub async fn open(
    client: &mut h2::client::SendRequest<Bytes>,
    request: Request<()>,
) -> (StatusCode, dialtone::http::HeaderMap, H2Io) {
    let mut client = client.clone().ready().await.unwrap();
    let (response, send) = client.send_request(request, false).unwrap();
    let response = response.await.unwrap();
    let (parts, recv) = response.into_parts();
    let io = H2Io {
        send,
        recv,
        buf: Bytes::new(),
    };
    (parts.status, parts.headers, io)
}
