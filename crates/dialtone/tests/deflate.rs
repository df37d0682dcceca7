//! permessage-deflate between our dialer and our listener.

use dialtone::{Acceptor, Config, Deflate, Dialer, Listener, Message};

#[tokio::test]
async fn negotiates_and_round_trips_compressed_messages() {
    let config = Config::default().deflate(Deflate::default());
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_acceptor(Acceptor::new().config(config.clone()));
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut ws, _) = listener.accept().await.unwrap().handshake().await.unwrap();
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() {
                ws.send(msg).await.unwrap();
            }
        }
    });
    let (mut ws, response) = Dialer::new()
        .config(config)
        .dial(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert!(response.deflate.is_some(), "{:?}", response.head);
    for size in [0usize, 1, 31, 32, 1000, 64 << 10, 4 << 20] {
        let text: String = (0..size).map(|i| (b'a' + (i % 7) as u8) as char).collect();
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text));
        let bin: Vec<u8> = (0..size).map(|i| (i * i) as u8).collect();
        ws.send(bin.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(bin));
    }
}
