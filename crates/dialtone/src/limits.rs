//! How many connections a server holds open at once, in all and per client
//! address: [`ConnectionLimits`].
//!
//! A server that accepts every connection can be made to hold as many
//! sockets, tasks and buffers as a client cares to open. The limits are
//! counted by permits: the accept loop takes one per connection before the
//! handshake and keeps it for the connection's life; past a limit the
//! connection is refused at once (with [`Incoming::refuse`]), so the
//! connections already open do not slow down.
//!
//! ```no_run
//! # async fn run() -> dialtone::Result<()> {
//! use dialtone::{limits::ConnectionLimits, Listener};
//!
//! let listener = Listener::bind("127.0.0.1:9001").await?;
//! let limits = ConnectionLimits::new(Some(10_000), Some(100));
//! loop {
//!     let incoming = listener.accept().await?;
//!     match limits.try_acquire(incoming.peer_addr().ip()) {
//!         Ok(permit) => {
//!             tokio::spawn(async move {
//!                 let _permit = permit; // held while the connection lives
//!                 let (mut ws, _request) = incoming.handshake().await?;
//!                 while let Some(msg) = ws.recv().await {
//!                     let msg = msg?;
//!                     if msg.is_data() {
//!                         ws.send(msg).await?;
//!                     }
//!                 }
//!                 Ok::<(), dialtone::Error>(())
//!             });
//!         }
//!         Err(reject) => {
//!             tokio::spawn(incoming.refuse(reject));
//!         }
//!     }
//! }
//! # }
//! ```
//!
#![cfg_attr(
    feature = "tokio",
    doc = "[`Incoming::refuse`]: crate::Incoming::refuse"
)]
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[`Incoming::refuse`]: crate#feature-flags"
)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use dialtone_proto::handshake::Reject;
use dialtone_proto::http::{header, HeaderValue, StatusCode};

/// Limits on the connections open at once: in all, and per client address
/// (IPv4 addresses one by one, IPv6 by /64 network, since one client
/// usually holds a whole /64). Cloning shares the counts.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
///
/// use dialtone::limits::ConnectionLimits;
///
/// // At most 1000 connections, one per client address.
/// let limits = ConnectionLimits::new(Some(1000), Some(1));
/// let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// let permit = limits.try_acquire(client).expect("the first is let in");
/// assert!(limits.try_acquire(client).is_err(), "the second is refused");
/// drop(permit); // the connection ended
/// assert!(limits.try_acquire(client).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    max_total: Option<usize>,
    max_per_ip: Option<usize>,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One connection counted against [`ConnectionLimits`]; dropping it gives
/// the place back.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
///
/// use dialtone::limits::ConnectionLimits;
///
/// let limits = ConnectionLimits::new(Some(10), None);
/// let permit = limits.try_acquire(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
/// assert_eq!(limits.open(), 1);
/// drop(permit);
/// assert_eq!(limits.open(), 0);
/// ```
#[derive(Debug)]
pub struct ConnectionPermit {
    counts: Arc<Mutex<Counts>>,
    key: IpAddr,
}

impl ConnectionLimits {
    /// At most `max_total` connections at once, and at most `max_per_ip`
    /// from one address; `None` is no limit.
    pub fn new(max_total: Option<usize>, max_per_ip: Option<usize>) -> Self {
        ConnectionLimits {
            max_total,
            max_per_ip,
            counts: Arc::default(),
        }
    }

    /// Counts a connection from `ip`, or refuses it: `503 Service
    /// Unavailable` past the total, `429 Too Many Requests` past the
    /// per-address limit, each with `Retry-After` and a one-line reason.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionPermit, Reject> {
        let key = address_key(ip);
        let mut counts = lock(&self.counts);
        if let Some(max) = self.max_total {
            if counts.total >= max {
                return Err(retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the server holds its limit of {max} connections; try again later"),
                ));
            }
        }
        let from_ip = counts.per_ip.get(&key).copied().unwrap_or(0);
        if let Some(max) = self.max_per_ip {
            if from_ip >= max {
                return Err(retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("{max} connections from {ip} are open already; try again later"),
                ));
            }
        }
        counts.total += 1;
        counts.per_ip.insert(key, from_ip + 1);
        Ok(ConnectionPermit {
            counts: self.counts.clone(),
            key,
        })
    }

    /// Connections counted now.
    pub fn open(&self) -> usize {
        lock(&self.counts).total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total -= 1;
        if let Some(n) = counts.per_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.key);
            }
        }
    }
}

fn retry_later(status: StatusCode, reason: String) -> Reject {
    Reject::new(status, reason).with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}

/// The address connections are counted under: an IPv4 address (also when
/// mapped into IPv6), or an IPv6 address's /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn lock(m: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    // The counts are updated in one step each; a poisoned lock holds
    // consistent counts.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_total_limit_refuses_with_503_until_a_permit_is_dropped() {
        let limits = ConnectionLimits::new(Some(2), None);
        let a = limits.try_acquire(ip("127.0.0.1")).unwrap();
        let _b = limits.try_acquire(ip("127.0.0.2")).unwrap();
        let refused = limits.try_acquire(ip("127.0.0.3")).unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused
            .headers
            .iter()
            .any(|(n, _)| n == header::RETRY_AFTER));
        drop(a);
        assert_eq!(limits.open(), 1);
        limits.try_acquire(ip("127.0.0.3")).unwrap();
    }

    #[test]
    fn the_per_address_limit_counts_each_address_alone() {
        let limits = ConnectionLimits::new(None, Some(1));
        let _a = limits.try_acquire(ip("127.0.0.1")).unwrap();
        let refused = limits.try_acquire(ip("127.0.0.1")).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        let _b = limits.try_acquire(ip("127.0.0.2")).unwrap();
    }

    #[test]
    fn ipv6_addresses_are_counted_by_their_64_network() {
        let limits = ConnectionLimits::new(None, Some(1));
        let _a = limits.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(limits.try_acquire(ip("2001:db8:1:2::ffff")).is_err());
        let _b = limits.try_acquire(ip("2001:db8:1:3::1")).unwrap();
        // A mapped IPv4 address is that IPv4 address.
        let _c = limits.try_acquire(ip("10.0.0.1")).unwrap();
        assert!(limits.try_acquire(ip("::ffff:10.0.0.1")).is_err());
    }

    #[test]
    fn clones_share_the_counts() {
        let limits = ConnectionLimits::new(Some(1), None);
        let other = limits.clone();
        let _a = limits.try_acquire(ip("127.0.0.1")).unwrap();
        assert!(other.try_acquire(ip("127.0.0.1")).is_err());
    }
}
