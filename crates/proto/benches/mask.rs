//! Masking throughput against a `memcpy` of the same number of bytes.
//!
//! The target (issue: performance) is masking at ≥ 80 % of memcpy's
//! bandwidth on 1 MiB. `memcpy` reads one buffer and writes another; masking
//! reads and writes one buffer in place: both move 2 bytes per payload byte.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dialtone_proto::mask::{apply_mask, apply_mask_at};

const SIZES: [(usize, &str); 3] = [(64, "64B"), (16 << 10, "16KiB"), (1 << 20, "1MiB")];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn bench_mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for (size, label) in SIZES {
        group.throughput(Throughput::BytesDecimal(size as u64));
        let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();

        let mut buf = src.clone();
        group.bench_function(BenchmarkId::new("apply_mask", label), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY)))
        });

        // A payload that does not start on a word boundary, and a key offset
        // other than 0: what unmasking a frame inside a read buffer sees.
        let mut buf = vec![0u8; size + 1];
        buf[1..].copy_from_slice(&src);
        group.bench_function(BenchmarkId::new("apply_mask_at_unaligned", label), |b| {
            b.iter(|| apply_mask_at(black_box(&mut buf[1..]), black_box(KEY), black_box(3)))
        });

        let mut dst = vec![0u8; size];
        group.bench_function(BenchmarkId::new("memcpy", label), |b| {
            b.iter(|| black_box(&mut dst).copy_from_slice(black_box(&src)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_mask
}
criterion_main!(benches);
