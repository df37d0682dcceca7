//! Dialer benchmark client on tokio-websockets (`ClientBuilder::connect_on`
//! over a `TcpStream`; echoes are fed, and flushed once nothing more has
//! arrived).

use std::net::SocketAddr;
use std::process::ExitCode;

use dialtone_bench::dialer::{Client, Conn, GO};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

struct TokioWebsockets(WebSocketStream<TcpStream>);

fn check(conn: &mut Conn, msg: &Message) -> Result<(), String> {
    if !msg.is_binary() {
        return Err(format!("expected a binary message, got {msg:?}"));
    }
    conn.check(msg.as_payload())
}

impl TokioWebsockets {
    async fn next(&mut self) -> Result<Message, String> {
        self.0
            .next()
            .await
            .ok_or("closed")?
            .map_err(|e| e.to_string())
    }
}

impl Client for TokioWebsockets {
    async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (ws, _) = ClientBuilder::new()
            .uri(&format!("ws://{addr}/"))
            .map_err(|e| e.to_string())?
            .connect_on(tcp)
            .await
            .map_err(|e| e.to_string())?;
        Ok(TokioWebsockets(ws))
    }

    async fn flood(mut self, n: u64, conn: &mut Conn) -> Result<(), String> {
        self.0
            .send(Message::binary(GO))
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..n {
            let msg = self.next().await?;
            check(conn, &msg)?;
        }
        Ok(())
    }

    async fn echo(mut self, conn: &mut Conn) -> Result<(), String> {
        for _ in 0..conn.inflight() {
            self.0
                .feed(Message::binary(conn.message()))
                .await
                .map_err(|e| e.to_string())?;
        }
        self.0.flush().await.map_err(|e| e.to_string())?;
        loop {
            let msg = self.next().await?;
            check(conn, &msg)?;
            self.0
                .feed(Message::binary(conn.message()))
                .await
                .map_err(|e| e.to_string())?;
            while let Some(more) = self.0.next().now_or_never() {
                let more = more.ok_or("closed")?.map_err(|e| e.to_string())?;
                check(conn, &more)?;
                self.0
                    .feed(Message::binary(conn.message()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            self.0.flush().await.map_err(|e| e.to_string())?;
        }
    }
}

fn main() -> ExitCode {
    dialtone_bench::dialer::main::<TokioWebsockets>("client_tokio_websockets")
}
