//! `serve --broadcast`: a room where every text and binary message goes to
//! every client, the sender included.
//!
//! Slow clients: the room never waits for a client. Each client has its own
//! queue, counted in bytes (payload plus [`PER_MESSAGE_COST`]); a message
//! that would take a non-empty queue past the limit closes that client
//! instead, with 1008 (policy violation) "too slow", and the others go on.
//! Messages are shared (`Bytes`), and every queue holds the latest messages
//! of one sequence, so all the queues together hold at most one queue's
//! limit plus one message, however many clients there are.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Result;
use dialtone::{CloseCode, Message, Transport, WebSocket};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info};

use super::{log_closed, summary, Opened};

/// Default limit of one client's queue.
pub(crate) const DEFAULT_QUEUE_BYTES: usize = 16 << 20;

/// What a queued message is counted as beyond its payload, so that a flood
/// of empty messages is bounded too.
const PER_MESSAGE_COST: usize = 64;

/// The reason a slow client is closed with.
const TOO_SLOW: &str = "too slow: broadcast queue full";

/// The clients of one room.
pub(crate) struct Hub {
    clients: Mutex<HashMap<u64, Member>>,
    next_id: AtomicU64,
    queue_limit: usize,
}

/// The room's side of one client.
struct Member {
    peer: SocketAddr,
    queue: mpsc::UnboundedSender<Message>,
    /// Bytes queued and not yet written to the client (see the module docs).
    queued: Arc<AtomicUsize>,
    /// Told when the room drops the client for being too slow.
    evicted: Arc<Notify>,
}

fn cost(msg: &Message) -> usize {
    msg.as_payload().len() + PER_MESSAGE_COST
}

impl Hub {
    pub(crate) fn new(queue_limit: usize) -> Self {
        Hub {
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            queue_limit,
        }
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<u64, Member>> {
        // A panic elsewhere while holding the lock leaves the map whole.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg` for every client; evicts those it would take past the
    /// limit, and forgets those that are gone.
    fn broadcast(&self, msg: &Message) {
        let cost = cost(msg);
        self.clients().retain(|_, member| {
            let queued = member.queued.load(Ordering::Acquire);
            if queued > 0 && queued.saturating_add(cost) > self.queue_limit {
                info!(peer = %member.peer, queued, "evicting: {TOO_SLOW}");
                member.evicted.notify_one();
                return false;
            }
            member.queued.fetch_add(cost, Ordering::AcqRel);
            member.queue.send(msg.clone()).is_ok()
        });
    }

    /// Runs one client: in the room from now until it closes or is evicted.
    pub(crate) async fn serve(&self, mut ws: WebSocket<Transport>, opened: Opened) -> Result<()> {
        let peer = opened.peer;
        let (queue, mut outgoing) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let evicted = Arc::new(Notify::new());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.clients().insert(
            id,
            Member {
                peer,
                queue,
                queued: queued.clone(),
                evicted: evicted.clone(),
            },
        );
        // Logged once in the room, so that a client told "open" gets every
        // message sent after it.
        opened.log();
        let result = async {
            loop {
                tokio::select! {
                    () = evicted.notified() => {
                        ws.close(CloseCode::PolicyViolation, TOO_SLOW).await?;
                        break;
                    }
                    msg = outgoing.recv() => {
                        // `None` cannot happen while we are in the map,
                        // and we leave it only below.
                        let Some(msg) = msg else { break };
                        let cost = cost(&msg);
                        // A client that does not read must not keep us
                        // from hearing that it is evicted.
                        tokio::select! {
                            sent = ws.send(msg) => sent?,
                            () = evicted.notified() => {
                                ws.close(CloseCode::PolicyViolation, TOO_SLOW).await?;
                                break;
                            }
                        }
                        queued.fetch_sub(cost, Ordering::AcqRel);
                    }
                    msg = ws.recv() => {
                        let Some(msg) = msg else { break };
                        let msg = msg?;
                        debug!(%peer, "received {}", summary(&msg));
                        if msg.is_data() {
                            self.broadcast(&msg);
                        }
                    }
                }
            }
            anyhow::Ok(())
        }
        .await;
        self.clients().remove(&id);
        log_closed(peer, ws.close_received());
        result
    }
}
