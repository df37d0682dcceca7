//! Dialer benchmark client on fastwebsockets. Its own client handshake goes
//! through a hyper client; here the upgrade request is written by hand
//! (`dialtone_bench::dialer::raw_handshake`) and the socket handed to
//! `WebSocket::after_handshake(Role::Client)`, which is all that hyper
//! would do. Messages go through its `FragmentCollector`, as a user's
//! would; it writes each frame at once (it has no queue-without-write).

use std::net::SocketAddr;
use std::process::ExitCode;

use dialtone_bench::dialer::{Client, Conn, GO};
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, Role, WebSocket};
use tokio::net::TcpStream;

struct Fast(FragmentCollector<TcpStream>);

impl Fast {
    async fn next(&mut self, conn: &mut Conn) -> Result<(), String> {
        let frame = self.0.read_frame().await.map_err(|e| e.to_string())?;
        if frame.opcode != OpCode::Binary {
            return Err(format!("expected a binary message, got {:?}", frame.opcode));
        }
        conn.check(&frame.payload)
    }

    async fn send(&mut self, data: Vec<u8>) -> Result<(), String> {
        self.0
            .write_frame(Frame::binary(Payload::Owned(data)))
            .await
            .map_err(|e| e.to_string())
    }
}

impl Client for Fast {
    async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        dialtone_bench::dialer::raw_handshake(&mut tcp, addr).await?;
        Ok(Fast(FragmentCollector::new(WebSocket::after_handshake(
            tcp,
            Role::Client,
        ))))
    }

    async fn flood(mut self, n: u64, conn: &mut Conn) -> Result<(), String> {
        self.send(GO.to_vec()).await?;
        for _ in 0..n {
            self.next(conn).await?;
        }
        Ok(())
    }

    async fn echo(mut self, conn: &mut Conn) -> Result<(), String> {
        for _ in 0..conn.inflight() {
            let m = conn.message();
            self.send(m).await?;
        }
        loop {
            self.next(conn).await?;
            let m = conn.message();
            self.send(m).await?;
        }
    }
}

fn main() -> ExitCode {
    dialtone_bench::dialer::main::<Fast>("client_fastwebsockets")
}
