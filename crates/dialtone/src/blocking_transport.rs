//! The blocking face's transport ([`Transport`], re-exported as
//! `dialtone::blocking::Transport`): plain TCP or rustls over TCP, the twin
//! of the async [`crate::Transport`]; and the blocking connect with a
//! deadline over DNS and every address tried.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
#[cfg(feature = "tls")]
use crate::tls::rustls::pki_types::CertificateDer;
#[cfg(feature = "tls")]
use crate::tls::rustls::{ClientConnection, StreamOwned};

/// A blocking connection's transport.
///
/// ```no_run
/// let (ws, _response) = dialtone::Dialer::new().dial_blocking("wss://127.0.0.1:9443/")?;
/// let transport: &dialtone::blocking::Transport = ws.get_ref();
/// println!("TLS {} with {}", transport.is_tls(), transport.peer_addr()?);
/// # Ok::<(), dialtone::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Transport {
    /// Plain TCP (`ws://`).
    Tcp(TcpStream),
    /// TLS over TCP, dialed (`wss://`).
    #[cfg(feature = "tls")]
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Transport {
    /// The TCP stream under any layers.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Tcp(s) => s,
            #[cfg(feature = "tls")]
            Transport::TlsClient(s) => &s.sock,
        }
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Transport::Tcp(_))
    }

    /// The certificates the server presented (leaf first).
    #[cfg(feature = "tls")]
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            Transport::Tcp(_) => None,
            Transport::TlsClient(s) => s.conn.peer_certificates(),
        }
    }

    /// The ALPN protocol agreed in the TLS handshake, if any.
    #[cfg(feature = "tls")]
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Transport::Tcp(_) => None,
            Transport::TlsClient(s) => s.conn.alpn_protocol(),
        }
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// The peer's address (for a proxied connection, the proxy's).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// Bounds each read (`None`: wait for ever), as
    /// [`TcpStream::set_read_timeout`]; a read that times out fails with
    /// `WouldBlock` or `TimedOut`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    /// Bounds each write, as [`TcpStream::set_write_timeout`].
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }

    /// Ends our direction of the connection: for TLS, a `close_notify`
    /// first, then the TCP write side.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Transport::TlsClient(s) = self {
            s.conn.send_close_notify();
            // Best effort: the peer may be gone; the TCP shutdown says so.
            let _ = s.flush();
        }
        self.tcp().shutdown(Shutdown::Write)
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Transport::TlsClient(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Transport::TlsClient(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Transport::TlsClient(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.flush(),
            #[cfg(feature = "tls")]
            Transport::TlsClient(s) => s.flush(),
        }
    }
}

/// A dial's deadline: what is left of it bounds each blocking step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    at: Instant,
    total: Duration,
}

impl Deadline {
    pub(crate) fn after(total: Duration) -> Self {
        Deadline {
            at: Instant::now() + total,
            total,
        }
    }

    /// The time left, or the timeout error once there is none.
    pub(crate) fn left(&self) -> Result<Duration> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.error())
        } else {
            Ok(left)
        }
    }

    /// The error a step that ran out of time reports.
    pub(crate) fn error(&self) -> Error {
        Error::Timeout(self.total)
    }

    /// `e` as the dial's timeout if it is a socket timeout.
    pub(crate) fn io(&self, e: io::Error) -> Error {
        if is_timeout(&e) {
            self.error()
        } else {
            Error::Io(e)
        }
    }
}

/// Whether a blocking read or write failed because its timeout passed.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Resolves `host` with the system resolver, giving up at the deadline
/// (the lookup itself cannot be interrupted: it finishes on its own thread).
pub(crate) fn resolve(host: &str, port: u16, deadline: Deadline) -> Result<Vec<SocketAddr>> {
    let dns = |source| Error::Dns {
        host: host.to_owned(),
        source,
    };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("dialtone-dns".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })
        .map_err(dns)?;
    match rx.recv_timeout(deadline.left()?) {
        Ok(result) => result.map_err(dns),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(deadline.error()),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(dns(io::Error::other(
            "the resolver thread ended without an answer",
        ))),
    }
}

/// Connects to the first address of `host` that accepts, in resolver
/// order, before the deadline; the blocking twin of
/// `crate::transport::connect`.
pub(crate) fn connect(host: &str, port: u16, deadline: Deadline) -> Result<TcpStream> {
    let mut last = None;
    for addr in resolve(host, port, deadline)? {
        match TcpStream::connect_timeout(&addr, deadline.left()?) {
            Ok(stream) => {
                // Frames are written whole; do not let Nagle hold them back.
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) if is_timeout(&e) => return Err(deadline.error()),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, source)) => Error::Connect {
            addr: addr.to_string(),
            source,
        },
        None => Error::Dns {
            host: host.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        },
    })
}
