//! Dialer benchmark client on dialtone's public API (`Dialer::dial`,
//! `recv`, `feed`: `recv` writes what `feed` queued before it waits).

use std::net::SocketAddr;
use std::process::ExitCode;

use dialtone::{Message, Transport, WebSocket};
use dialtone_bench::dialer::{Client, Conn, GO};

struct Dialtone(WebSocket<Transport>);

fn payload(msg: &Message) -> Result<&[u8], String> {
    match msg {
        Message::Binary(b) => Ok(b),
        other => Err(format!("expected a binary message, got {other:?}")),
    }
}

impl Client for Dialtone {
    async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let (ws, _) = dialtone::Dialer::new()
            .dial(&format!("ws://{addr}/"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Dialtone(ws))
    }

    async fn flood(mut self, n: u64, conn: &mut Conn) -> Result<(), String> {
        self.0
            .send(Message::binary(GO))
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..n {
            let msg = self
                .0
                .recv()
                .await
                .ok_or("closed")?
                .map_err(|e| e.to_string())?;
            conn.check(payload(&msg)?)?;
        }
        Ok(())
    }

    async fn echo(mut self, conn: &mut Conn) -> Result<(), String> {
        for _ in 0..conn.inflight() {
            self.0
                .feed(Message::binary(conn.message()))
                .map_err(|e| e.to_string())?;
        }
        loop {
            let msg = self
                .0
                .recv()
                .await
                .ok_or("closed")?
                .map_err(|e| e.to_string())?;
            conn.check(payload(&msg)?)?;
            self.0
                .feed(Message::binary(conn.message()))
                .map_err(|e| e.to_string())?;
        }
    }
}

fn main() -> ExitCode {
    dialtone_bench::dialer::main::<Dialtone>("client_dialtone")
}
