//! The listener side: accept the opening handshake on any transport
//! ([`accept`], [`Acceptor::accept`]), or bind a TCP [`Listener`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use dialtone_proto::handshake::Reject;
use dialtone_proto::http::{Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::error::{Error, Result};
use crate::handshake::{Acceptor, HANDSHAKE_READ};
use crate::socket::WebSocket;
use crate::tls::ServerTls;
use crate::transport::Transport;

/// Accepts a WebSocket handshake on `io` with the default [`Acceptor`].
pub async fn accept<S>(io: S) -> Result<(WebSocket<S>, Request<()>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Acceptor::default().accept(io).await
}

impl Acceptor {
    /// Reads the client's handshake from `io` and answers it: `101` and an
    /// open [`WebSocket`], or the refusal's status (400, 426, 431, or the
    /// callback's) and [`Error::Refused`]. The client has the handshake
    /// timeout to send its request.
    pub async fn accept<S>(&self, io: S) -> Result<(WebSocket<S>, Request<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // The handshake's state (the timer, the request, the connection
        // being built) is a few KiB: boxed, it is freed when the handshake
        // ends, and the task that goes on to serve the connection keeps only
        // the WebSocket.
        Box::pin(self.accept_unboxed(io)).await
    }

    async fn accept_unboxed<S>(&self, mut io: S) -> Result<(WebSocket<S>, Request<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Ok(_permit) = self.handshakes.clone().try_acquire_owned() else {
            let reject = Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many handshakes in progress; try again later",
            );
            let _ = io.write_all(&reject.to_bytes()).await;
            let _ = io.shutdown().await;
            return Err(Error::Refused(Box::new(reject)));
        };
        let mut buf = BytesMut::with_capacity(HANDSHAKE_READ);
        let read = async {
            loop {
                buf.reserve(HANDSHAKE_READ);
                if io.read_buf(&mut buf).await? == 0 {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection during the handshake",
                    )));
                }
                match self.step(&mut buf) {
                    Ok(None) => continue,
                    Ok(Some(outcome)) => return Ok(Ok(outcome)),
                    Err(reject) => return Ok(Err(reject)),
                }
            }
        };
        let outcome = tokio::time::timeout(self.handshake_timeout, read)
            .await
            .map_err(|_| Error::Timeout(self.handshake_timeout))??;
        match outcome {
            Ok(outcome) => {
                io.write_all(&outcome.answer).await?;
                io.flush().await?;
                let mut ws = WebSocket::from_connection(io, outcome.conn, outcome.protocol);
                ws.set_close_timeout(self.close_timeout);
                if let Some((interval, deadline)) = self.keepalive {
                    ws.set_keepalive(Some(interval), deadline);
                }
                ws.set_idle_timeout(self.idle_timeout);
                Ok((ws, outcome.request))
            }
            Err(reject) => {
                // Best effort: the client may already be gone.
                let _ = io.write_all(&reject.to_bytes()).await;
                let _ = io.shutdown().await;
                Err(Error::Refused(Box::new(reject)))
            }
        }
    }
}

/// A TCP listener that hands out WebSocket connections.
///
/// ```no_run
/// # async fn run() -> dialtone::Result<()> {
/// let listener = dialtone::Listener::bind("127.0.0.1:9001").await?;
/// loop {
///     let incoming = listener.accept().await?;
///     tokio::spawn(async move {
///         let (mut ws, _request) = incoming.handshake().await?;
///         while let Some(msg) = ws.recv().await {
///             let msg = msg?;
///             if msg.is_data() {
///                 ws.send(msg).await?;
///             }
///         }
///         Ok::<(), dialtone::Error>(())
///     });
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    acceptor: Arc<Acceptor>,
    tls: Option<ServerTls>,
}

impl Listener {
    /// Binds a TCP listener with the default [`Acceptor`].
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Listener {
            tcp: TcpListener::bind(addr).await?,
            acceptor: Arc::new(Acceptor::default()),
            tls: None,
        })
    }

    /// Serves TLS (`wss://`) with this identity: each accepted connection
    /// runs the TLS handshake in [`Incoming::handshake`], under the
    /// acceptor's handshake timeout, before the WebSocket handshake.
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Uses `acceptor`'s policy for the connections accepted from now on.
    pub fn with_acceptor(mut self, acceptor: Acceptor) -> Self {
        self.acceptor = Arc::new(acceptor);
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Waits for the next TCP connection. The handshake is done by
    /// [`Incoming::handshake`], so that a slow client does not hold up the
    /// accept loop: spawn a task per connection.
    pub async fn accept(&self) -> io::Result<Incoming> {
        let (stream, peer) = self.tcp.accept().await?;
        stream.set_nodelay(true)?;
        Ok(Incoming {
            stream,
            peer,
            acceptor: self.acceptor.clone(),
            tls: self.tls.clone(),
        })
    }
}

/// A TCP connection whose WebSocket handshake is still to be done.
#[derive(Debug)]
pub struct Incoming {
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Arc<Acceptor>,
    tls: Option<ServerTls>,
}

impl Incoming {
    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Runs the handshake with the listener's [`Acceptor`] (after the TLS
    /// handshake, if the listener has TLS: a failure there is
    /// [`Error::Tls`]).
    pub async fn handshake(self) -> Result<(WebSocket<Transport>, Request<()>)> {
        // Boxed for the reason `Acceptor::accept` is.
        Box::pin(self.handshake_unboxed()).await
    }

    async fn handshake_unboxed(self) -> Result<(WebSocket<Transport>, Request<()>)> {
        let transport = match &self.tls {
            Some(tls) => {
                let limit = self.acceptor.handshake_timeout;
                let stream = tokio::time::timeout(limit, tls.accept(self.stream, self.peer))
                    .await
                    .map_err(|_| Error::Timeout(limit))??;
                Transport::TlsServer(Box::new(stream))
            }
            None => Transport::Tcp(self.stream),
        };
        self.acceptor.accept(transport).await
    }
}
