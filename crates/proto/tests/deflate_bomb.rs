//! A compression bomb: about 1 MiB on the wire that inflates to 1 GiB. The
//! connection must fail with 1009 as soon as the inflated size passes the
//! message limit, and never hold much more than the limit: the peak of live
//! heap memory is measured by a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use dialtone_proto::deflate::{Agreed, Codec};
use dialtone_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use dialtone_proto::mask::apply_mask;
use dialtone_proto::{Config, Connection, ProtocolError, Role};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    // Counted as a resize, not alloc + copy + free: the system allocator
    // grows large blocks in place (glibc remaps them), so a growing buffer
    // does not briefly cost twice its size.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = LIVE.fetch_add(grow, Ordering::SeqCst) + grow;
                PEAK.fetch_max(now, Ordering::SeqCst);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;

fn agreed() -> Agreed {
    Agreed {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        threshold: 0,
        level: 9,
    }
}

/// The payload of one compressed message that inflates to `mib` MiB of
/// zeros: the first MiB compressed, then the compressed form of a further
/// MiB repeated (with the window full of zeros it is the same every time).
fn bomb(mib: usize) -> Vec<u8> {
    let mut codec = Codec::new(&agreed(), false);
    let zeros = vec![0u8; MIB];
    let (mut first, mut second, mut third) = (Vec::new(), Vec::new(), Vec::new());
    codec.compress(&zeros, false, &mut first);
    codec.compress(&zeros, false, &mut second);
    codec.compress(&zeros, false, &mut third);
    assert_eq!(second, third, "the repeated block is stable");
    let mut payload = first;
    for _ in 1..mib {
        payload.extend_from_slice(&second);
    }
    payload
}

fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mut h = FrameHeader::new(OpCode::Binary, payload.len() as u64);
    h.rsv1 = true;
    h.mask = Some([1, 2, 3, 4]);
    let mut head = [0; MAX_HEADER_LEN];
    let n = h.encode(&mut head);
    let mut out = head[..n].to_vec();
    let mut body = payload.to_vec();
    apply_mask(&mut body, [1, 2, 3, 4]);
    out.extend(body);
    out
}

#[test]
fn a_gigabyte_bomb_closes_with_1009_without_holding_more_than_the_limit() {
    let payload = bomb(1024);
    assert!(
        payload.len() < 2 * MIB,
        "{} bytes on the wire",
        payload.len()
    );
    let frame = client_frame(&payload);
    drop(payload);

    let limit = 16 * MIB;
    let config = Config::default().max_message_size(limit);
    let mut server = Connection::with_deflate(Role::Server, config, Some(agreed()));

    let baseline = LIVE.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    // Fed in 64 KiB reads, as a socket would deliver it.
    let mut result = Ok(None);
    for chunk in frame.chunks(64 * 1024) {
        server.receive(chunk);
        result = server.next_event();
        if result.is_err() {
            break;
        }
    }
    let peak = PEAK.load(Ordering::SeqCst) - baseline;
    eprintln!("bomb: peak heap growth {peak} bytes for a {limit}-byte limit");

    match result {
        Err(ProtocolError::MessageTooBig { limit: l, .. }) => assert_eq!(l, limit),
        other => panic!("expected MessageTooBig, got {other:?}"),
    }
    assert_eq!(
        server.close_sent().map(|c| c.code.as_u16()),
        Some(1009),
        "closed with 1009"
    );
    // The inflated buffer never exceeds the limit by more than a byte; the
    // rest is the read buffer (under the 2 MiB of wire) and zlib's state.
    assert!(
        peak < limit + 4 * MIB,
        "peak heap growth {} MiB for a {} MiB limit",
        peak / MIB,
        limit / MIB
    );
}

#[test]
fn a_bomb_under_the_limit_inflates_in_full() {
    let frame = client_frame(&bomb(4));
    let config = Config::default().max_message_size(8 * MIB);
    let mut server = Connection::with_deflate(Role::Server, config, Some(agreed()));
    server.receive(&frame);
    match server.next_event() {
        Ok(Some(dialtone_proto::Event::Binary(b))) => {
            assert_eq!(b.len(), 4 * MIB);
            assert!(b.iter().all(|&x| x == 0));
        }
        other => panic!("{other:?}"),
    }
}
