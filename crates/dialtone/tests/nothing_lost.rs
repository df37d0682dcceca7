//! Nothing the application hands over is silently lost: many messages of
//! random sizes and random fragmentation arrive once, in order, intact; and
//! when the server closes with `GoingAway` in the middle of a stream, every
//! message the client's `send` accepted is delivered, and every one after is
//! refused with an error.

use std::time::Duration;

use dialtone::{
    Acceptor, CloseCode, CloseFrame, Config, Deflate, Dialer, Error, Listener, Message, MessageKind,
};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Message `i`: its size and kind are random; its bytes encode `i`, so
/// that a lost, duplicated or reordered message is detected.
fn message(rng: &mut Rng, i: u64) -> (MessageKind, Vec<u8>) {
    let size = match rng.below(100) {
        0 => rng.below(70_000),
        1..=10 => rng.below(4096),
        _ => rng.below(300),
    } as usize;
    let tag = format!("#{i}:");
    let mut body = tag.into_bytes();
    while body.len() < size {
        body.push(b'a' + (body.len() % 26) as u8);
    }
    let kind = if rng.below(2) == 0 {
        MessageKind::Text
    } else {
        MessageKind::Binary
    };
    (kind, body)
}

async fn echo_server(config: Config) -> String {
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(Acceptor::new().config(config));
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() {
                ws.feed(msg).unwrap();
                ws.flush().await.unwrap();
            }
        }
    });
    format!("ws://{addr}/")
}

async fn round_trip(config: Config, count: u64, seed: u64) {
    let url = echo_server(config.clone()).await;
    let (ws, _) = Dialer::new().config(config).dial(&url).await.unwrap();
    let (mut reader, mut writer) = ws.split();
    let sender = tokio::spawn(async move {
        let mut rng = Rng(seed);
        for i in 0..count {
            let (kind, body) = message(&mut rng, i);
            // Random fragmentation: 1 to 4 pieces at random cut points.
            let pieces = 1 + rng.below(4) as usize;
            let mut cuts: Vec<usize> = (1..pieces)
                .map(|_| rng.below(body.len() as u64 + 1) as usize)
                .collect();
            cuts.sort_unstable();
            if pieces == 1 {
                let msg = match kind {
                    MessageKind::Text => Message::text(String::from_utf8(body).unwrap()),
                    MessageKind::Binary => Message::binary(body),
                };
                writer.send(msg).await.unwrap();
            } else {
                let mut start = 0;
                for (n, end) in cuts.into_iter().chain([body.len()]).enumerate() {
                    writer
                        .send_fragment(kind, &body[start..end], n + 1 == pieces)
                        .await
                        .unwrap();
                    start = end;
                }
            }
        }
        writer
            .send(Message::Close(CloseFrame::new(CloseCode::Normal, "done")))
            .await
            .unwrap();
    });
    let mut rng = Rng(seed);
    for i in 0..count {
        let (kind, body) = message(&mut rng, i);
        let pieces = 1 + rng.below(4);
        for _ in 1..pieces {
            rng.below(body.len() as u64 + 1);
        }
        let got = reader.recv().await.expect("stream ended early").unwrap();
        match (kind, got) {
            (MessageKind::Text, Message::Text(t)) => assert_eq!(t.as_bytes()[..], body[..], "#{i}"),
            (MessageKind::Binary, Message::Binary(b)) => assert_eq!(b[..], body[..], "#{i}"),
            (_, other) => panic!("#{i}: wrong message {:?}", other.as_payload().get(..20)),
        }
    }
    match reader.recv().await {
        Some(Ok(Message::Close(c))) => assert_eq!(c.code, CloseCode::Normal),
        other => panic!("expected the close, got {other:?}"),
    }
    sender.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_messages_arrive_once_in_order_intact() {
    round_trip(Config::default().max_send_frame_size(1000), 100_000, 0x5eed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_messages_arrive_once_in_order_intact() {
    let config = Config::default()
        .max_send_frame_size(1000)
        .deflate(Deflate::default());
    round_trip(config, 20_000, 0xdeaf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_going_away_close_loses_nothing_that_send_accepted() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The server reads 500 messages, then closes with GoingAway while the
    // client keeps sending, and keeps reading until the close completes.
    let server = tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        let mut got = Vec::new();
        while let Some(msg) = ws.recv().await {
            match msg.unwrap() {
                Message::Binary(b) => {
                    got.push(u64::from_be_bytes(b[..8].try_into().unwrap()));
                    if got.len() == 500 {
                        ws.feed(Message::Close(CloseFrame::new(
                            CloseCode::GoingAway,
                            "shutting down",
                        )))
                        .unwrap();
                        ws.flush().await.unwrap();
                    }
                }
                Message::Close(c) => assert_eq!(c.code, CloseCode::GoingAway),
                _ => {}
            }
        }
        got
    });
    let (ws, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    let (mut reader, mut writer) = ws.split();
    let sender = tokio::spawn(async move {
        let mut accepted = 0u64;
        loop {
            let mut body = accepted.to_be_bytes().to_vec();
            body.resize(64, 0);
            match writer.send(body).await {
                Ok(()) => accepted += 1,
                Err(Error::Closed) => return accepted,
                Err(e) => panic!("unexpected error after {accepted}: {e}"),
            }
            if accepted.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
    });
    let close = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(msg) = reader.recv().await {
            if let Ok(Message::Close(c)) = msg {
                return Some(c);
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(close.unwrap().code, CloseCode::GoingAway);
    while reader.recv().await.is_some() {}
    let accepted = sender.await.unwrap();
    let got = server.await.unwrap();
    assert!(accepted >= 500);
    assert_eq!(
        got,
        (0..accepted).collect::<Vec<_>>(),
        "every accepted message delivered once, in order"
    );
}
