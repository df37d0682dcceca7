//! Parsing (and checking) the opening handshake: a typical browser upgrade
//! request on the server side, and the server's 101 on the client side.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use dialtone_proto::handshake::{
    accept_key, accept_response, check_request, parse_request, parse_response,
    DEFAULT_MAX_HANDSHAKE_SIZE,
};
use dialtone_proto::http::HeaderMap;
use dialtone_proto::ClientHandshake;

/// What a current browser sends, headers and all.
const REQUEST: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\n\
Host: example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
\r\n";

const LIMIT: usize = DEFAULT_MAX_HANDSHAKE_SIZE;

fn bench_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");

    group.bench_function("parse_request", |b| {
        b.iter(|| parse_request(black_box(REQUEST), LIMIT))
    });
    group.bench_function("parse_and_check_request", |b| {
        b.iter(|| {
            let (req, _) = parse_request(black_box(REQUEST), LIMIT).ok()??;
            check_request(&req).ok()
        })
    });

    let client = ClientHandshake::new("example.com:8080", "/chat?room=1");
    let accept = accept_key(client.key().as_bytes());
    let response = accept_response(&accept, None, None, &HeaderMap::new());
    group.bench_function("parse_response", |b| {
        b.iter(|| parse_response(black_box(&response), LIMIT))
    });
    group.bench_function("parse_and_check_response", |b| {
        b.iter(|| {
            let (head, _) = parse_response(black_box(&response), LIMIT).ok()??;
            client.check_response(&head).ok()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_handshake
}
criterion_main!(benches);
