//! Echo server on fastwebsockets, upgraded through hyper as its own echo
//! example does (fastwebsockets writes every frame at once: there is nothing
//! to batch).

use std::convert::Infallible;

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;

const NAME: &str = "echo_fastwebsockets";

async fn serve(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    match upgrade::upgrade(&mut req) {
        Ok((response, fut)) => {
            tokio::spawn(tokio::task::unconstrained(async move {
                dialtone_bench::report(NAME, serve(fut).await);
            }));
            Ok(response)
        }
        Err(e) => {
            dialtone_bench::report::<WebSocketError>(NAME, Err(e));
            let mut response = Response::new(Empty::new());
            *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
            Ok(response)
        }
    }
}

fn main() {
    let addr = dialtone_bench::listen_addr(NAME);
    dialtone_bench::run(NAME, async move {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = http1::Builder::new()
                    .serve_connection(io, service_fn(upgrade))
                    .with_upgrades();
                dialtone_bench::report(NAME, conn.await);
            });
        }
    });
}
