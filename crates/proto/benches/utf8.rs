//! UTF-8 validation: [`validate`] and the incremental [`Utf8Validator`]
//! against `simdutf8::basic::from_utf8` called directly, on 1 MiB of ASCII
//! and of mixed 1–4 byte text.
//!
//! The target (issue: performance) is the incremental validator within 10 %
//! of simdutf8. The 16 KiB chunks cut code points in the mixed text, so the
//! carrying of a split code point is part of what is measured.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dialtone_proto::utf8::{validate, Utf8Validator};

const SIZE: usize = 1 << 20;
const CHUNK: usize = 16 << 10;

/// `SIZE` bytes of `pattern` repeated, cut back to a character boundary.
fn text(pattern: &str) -> Vec<u8> {
    let mut s = pattern.repeat(SIZE / pattern.len() + 1);
    let mut end = SIZE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.into_bytes()
}

fn bench_utf8(c: &mut Criterion) {
    let inputs = [
        (
            "ascii",
            text("The quick brown fox jumps over the lazy dog. 0123456789\n"),
        ),
        (
            "mixed",
            // 1-, 2-, 3- and 4-byte sequences, 74 % of the bytes non-ASCII.
            // The 47-byte period is prime, so the 16 KiB chunk edges fall
            // at every position within it: 30 of the 63 cut a code point.
            text("Hello κόσμε ünïcödé 日本語 𝄞🎉"),
        ),
    ];
    let mut group = c.benchmark_group("utf8");
    for (name, data) in &inputs {
        assert!(std::str::from_utf8(data).is_ok());
        group.throughput(Throughput::BytesDecimal(data.len() as u64));
        group.bench_function(BenchmarkId::new("simdutf8", name), |b| {
            b.iter(|| simdutf8::basic::from_utf8(black_box(data)).is_ok())
        });
        group.bench_function(BenchmarkId::new("validate", name), |b| {
            b.iter(|| validate(black_box(data)).is_ok())
        });
        group.bench_function(BenchmarkId::new("validator_16KiB_chunks", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for chunk in black_box(data).chunks(CHUNK) {
                    if v.feed(chunk).is_err() {
                        return false;
                    }
                }
                v.finish().is_ok()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_utf8
}
criterion_main!(benches);
