//! Decoding many small frames: a server [`Connection`] fed 10,000 masked
//! 20-byte frames at once and drained of its events, through the public API.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dialtone_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use dialtone_proto::mask::apply_mask;
use dialtone_proto::{Config, Connection, Event, Role};

const FRAMES: usize = 10_000;
const PAYLOAD: usize = 20;

/// `FRAMES` masked single-frame messages of `PAYLOAD` bytes, as a client
/// sends them.
fn wire(opcode: OpCode) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAMES * (PAYLOAD + MAX_HEADER_LEN));
    for i in 0..FRAMES {
        let key = (i as u32).wrapping_mul(0x9E37_79B9).to_ne_bytes();
        let mut header = FrameHeader::new(opcode, PAYLOAD as u64);
        header.mask = Some(key);
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        out.extend_from_slice(&head[..n]);
        let mut payload = [b'a' + (i % 26) as u8; PAYLOAD];
        apply_mask(&mut payload, key);
        out.extend_from_slice(&payload);
    }
    out
}

/// Decodes every frame in `wire`, returning the number of messages.
fn decode_all(wire: &[u8]) -> usize {
    let mut conn = Connection::new(Role::Server, Config::default());
    conn.receive(wire);
    let mut messages = 0;
    while let Ok(Some(event)) = conn.next_event() {
        if matches!(event, Event::Binary(_) | Event::Text(_)) {
            messages += 1;
        }
        black_box(event);
    }
    messages
}

fn bench_frame_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_decode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    for (name, opcode) in [("binary_20B", OpCode::Binary), ("text_20B", OpCode::Text)] {
        let wire = wire(opcode);
        assert_eq!(decode_all(&wire), FRAMES);
        group.bench_function(BenchmarkId::new("server_connection", name), |b| {
            b.iter(|| decode_all(black_box(&wire)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_frame_decode
}
criterion_main!(benches);
