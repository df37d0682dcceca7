//! Dialer benchmark client on sockudo-ws 3.1 (`WebSocketClient::<Http1>`
//! over a `TcpStream`, compression off; echoes are fed, and flushed once
//! nothing more has arrived).

use std::net::SocketAddr;
use std::process::ExitCode;

use dialtone_bench::dialer::{Client, Conn, GO};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use sockudo_ws::client::WebSocketClient;
use sockudo_ws::protocol::Message;
use sockudo_ws::{Config, Http1, Stream, WebSocketStream};
use tokio::net::TcpStream;

struct Sockudo(WebSocketStream<Stream<Http1>>);

fn payload(msg: &Message) -> Result<&[u8], String> {
    match msg {
        Message::Binary(b) => Ok(b),
        other => Err(format!("expected a binary message, got {other:?}")),
    }
}

impl Sockudo {
    async fn next(&mut self) -> Result<Message, String> {
        self.0
            .next()
            .await
            .ok_or("closed")?
            .map_err(|e| e.to_string())
    }
}

fn binary(v: Vec<u8>) -> Message {
    Message::Binary(v.into())
}

impl Client for Sockudo {
    async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (ws, _) = WebSocketClient::<Http1>::new(Config::default())
            .connect(tcp, &addr.to_string(), "/", None)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Sockudo(ws))
    }

    async fn flood(mut self, n: u64, conn: &mut Conn) -> Result<(), String> {
        self.0
            .send(binary(GO.to_vec()))
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..n {
            let msg = self.next().await?;
            conn.check(payload(&msg)?)?;
        }
        Ok(())
    }

    async fn echo(mut self, conn: &mut Conn) -> Result<(), String> {
        for _ in 0..conn.inflight() {
            self.0
                .feed(binary(conn.message()))
                .await
                .map_err(|e| e.to_string())?;
        }
        self.0.flush().await.map_err(|e| e.to_string())?;
        loop {
            let msg = self.next().await?;
            conn.check(payload(&msg)?)?;
            self.0
                .feed(binary(conn.message()))
                .await
                .map_err(|e| e.to_string())?;
            while let Some(more) = self.0.next().now_or_never() {
                let more = more.ok_or("closed")?.map_err(|e| e.to_string())?;
                conn.check(payload(&more)?)?;
                self.0
                    .feed(binary(conn.message()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            self.0.flush().await.map_err(|e| e.to_string())?;
        }
    }
}

fn main() -> ExitCode {
    dialtone_bench::dialer::main::<Sockudo>("client_sockudo")
}
