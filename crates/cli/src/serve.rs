//! `dialtone serve`: a listener on the command line. What it does with each
//! connection is its mode: print (the default), `--echo`, `--broadcast`
//! ([`broadcast`]) or `--exec` ([`exec`]); `--static` and `--web` answer
//! plain HTTP requests on the same port ([`http`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dialtone::http::Request;
use dialtone::{
    Accepted, Acceptor, CloseFrame, Incoming, Listener, Message, ServerTls, Transport, WebSocket,
};
use tracing::{debug, info, warn};

use crate::{describe, server_config, DeflateArgs};

mod broadcast;
mod broadcast_lines;
mod exec;
mod http;
mod self_signed;

/// `dialtone serve --help`, above the options.
pub(crate) const LONG_ABOUT: &str = "\
Listen for WebSocket connections on ADDR (e.g. 127.0.0.1:9001). What each
connection gets is the mode:
  (none)       what clients send is printed on stdout (\"PEER text \\\"…\\\"\"),
               and each line of stdin is sent to every client connected
  --echo       every message is sent back
  --broadcast  every message goes to every client (a chat room)
  --exec CMD   CMD runs for each connection, its stdin and stdout on it
--static DIR and --web answer plain HTTP on the same port; --tls-cert and
--tls-key, or --tls-self-signed, make it wss://, offering HTTP/2 (ALPN h2)
beside HTTP/1.1: browsers then open WebSockets as HTTP/2 streams (RFC 8441).
-v logs connections (with the HTTP version) and closes on stderr.";

const AFTER_LONG_HELP: &str = "\
Examples:
  dialtone serve 127.0.0.1:9001                        # type lines to the clients
  dialtone serve 127.0.0.1:9001 --echo --no-deflate
  dialtone serve 127.0.0.1:9001 --deflate-threshold 1024
  dialtone serve 0.0.0.0:9001 --broadcast --broadcast-queue 1048576
  dialtone -v serve 127.0.0.1:9001 --exec cat          # an echo through a command
  dialtone serve 127.0.0.1:9001 --exec 'python3 bot.py' --exec-grace 5
  dialtone serve 127.0.0.1:9001 --web --static ./public   # open http://127.0.0.1:9001/
  dialtone serve 127.0.0.1:9443 --echo --tls-cert chain.pem --tls-key key.pem
  dialtone serve 127.0.0.1:9443 --echo --tls-self-signed  # prints the dial line

--exec: when the client closes, its close is answered at once (RFC 6455 §7.1),
CMD's stdin is closed and CMD has --exec-grace seconds to exit by itself, then
SIGTERM, --exec-grace again, then SIGKILL. What it prints after the client's
close cannot be sent and is dropped (-v logs how many lines). A client that
wants CMD's answers waits for them before closing: `dialtone dial` does (see
--linger there).";

#[derive(clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct ServeArgs {
    /// Address to bind.
    addr: String,
    /// Echo every text and binary message back (without a mode: print
    /// them, and send each line of stdin to every client).
    #[arg(long, group = "mode")]
    echo: bool,
    /// Send every text and binary message to every client, the sender
    /// included (a chat room). A client that falls more than
    /// --broadcast-queue bytes behind is closed with 1008.
    #[arg(long, group = "mode")]
    broadcast: bool,
    /// Bytes of messages that may wait for one --broadcast client before it
    /// is closed as too slow (one message more is always let through).
    #[arg(long, value_name = "BYTES", default_value_t = broadcast::DEFAULT_QUEUE_BYTES, requires = "broadcast")]
    broadcast_queue: usize,
    /// Run CMD with `sh -c` for each connection: each line it prints is
    /// sent as a text message, each message received is written to its
    /// stdin as a line. The connection closes when CMD exits (1000 if it
    /// succeeded, 1011 if not). When the client closes, CMD's stdin is
    /// closed and it has --exec-grace to exit (then SIGTERM, then SIGKILL);
    /// what it prints after the client's close is dropped.
    #[arg(long, value_name = "CMD", group = "mode")]
    exec: Option<String>,
    /// Seconds a --exec command has to exit by itself once the client has
    /// closed (and its stdin is closed), before SIGTERM; as long again
    /// after SIGTERM before SIGKILL.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = crate::dial::seconds_or_zero, requires = "exec")]
    exec_grace: Duration,
    /// Also serve the files under DIR over plain HTTP (GET and HEAD of
    /// requests that do not ask for a WebSocket) on the same port.
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Serve a WebSocket console page at `/` (before any --static file).
    #[arg(long)]
    web: bool,
    #[command(flatten)]
    deflate: DeflateArgs,
    /// Certificate chain (PEM, leaf first) to serve wss:// with. It must
    /// be a leaf certificate, not a CA (what a plain `openssl req -x509`
    /// makes is a CA: clients refuse it); see --tls-self-signed.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve wss:// with a certificate made now for localhost, 127.0.0.1
    /// and ::1 (and the address bound, if it is another), signed by a CA
    /// made now too; the CA's PEM file, the certificate's SHA-256
    /// fingerprint and the `dialtone dial --cacert` line to dial it are
    /// printed. For local work: the key never leaves this process's temp
    /// files.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_self_signed: bool,
}

/// What to do with each WebSocket.
#[derive(Clone)]
enum Mode {
    /// Print what clients send; send them each line of our stdin.
    Print(broadcast_lines::Lines),
    Echo,
    Broadcast(Arc<broadcast::Hub>),
    Exec(Arc<str>, Duration),
}

pub(crate) async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let addr = &args.addr;
    let mut listener = Listener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?
        .with_acceptor(Acceptor::new().config(server_config(&args.deflate)));
    let mut self_signed = None;
    let scheme = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            listener = listener.with_tls(ServerTls::from_pem_files(cert, key)?);
            "wss"
        }
        _ if args.tls_self_signed => {
            let made = self_signed::make(listener.local_addr()?)?;
            listener = listener.with_tls(made.server_tls()?);
            self_signed = Some(made);
            "wss"
        }
        _ => "ws",
    };
    let site = match (&args.static_dir, args.web) {
        (None, false) => None,
        (dir, web) => Some(Arc::new(http::Site::new(dir.as_deref(), web)?)),
    };
    let mode = if args.echo {
        Mode::Echo
    } else if args.broadcast {
        Mode::Broadcast(Arc::new(broadcast::Hub::new(args.broadcast_queue)))
    } else if let Some(cmd) = &args.exec {
        Mode::Exec(cmd.as_str().into(), args.exec_grace)
    } else {
        Mode::Print(broadcast_lines::Lines::from_stdin())
    };
    let local = listener.local_addr()?;
    eprintln!("listening on {scheme}://{local}/");
    if let Some(made) = &self_signed {
        made.announce(local);
    }
    // With --tls-self-signed, Ctrl-C and SIGTERM remove its files first.
    let mut stop = match &self_signed {
        Some(_) => Some(stop_signals()?),
        None => None,
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            signal = next_stop(&mut stop) => {
                if let Some(made) = &self_signed {
                    made.remove_files();
                }
                return Ok(ExitCode::from(128 + signal));
            }
        };
        let incoming = match accepted {
            Ok(i) => i,
            Err(e) => {
                warn!("accept: {e}");
                continue;
            }
        };
        let (mode, site) = (mode.clone(), site.clone());
        tokio::spawn(async move {
            let peer = incoming.peer_addr();
            if let Err(e) = serve_one(incoming, mode, site).await {
                warn!(%peer, "{e:#}");
            }
        });
    }
}

/// SIGINT and SIGTERM, caught.
fn stop_signals() -> Result<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)> {
    use tokio::signal::unix::{signal, SignalKind};
    Ok((
        signal(SignalKind::interrupt()).context("catching SIGINT")?,
        signal(SignalKind::terminate()).context("catching SIGTERM")?,
    ))
}

/// The number of the next stop signal; never without `stop_signals`.
async fn next_stop(
    signals: &mut Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
) -> u8 {
    let Some((int, term)) = signals else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => 2,
        _ = term.recv() => 15,
    }
}

async fn serve_one(incoming: Incoming, mode: Mode, site: Option<Arc<http::Site>>) -> Result<()> {
    let peer = incoming.peer_addr();
    let upgraded = match incoming.handshake_or_http().await? {
        Accepted::WebSocket(upgraded) => *upgraded,
        Accepted::Http(request) => {
            return match site {
                Some(site) => site.answer(*request, peer).await,
                None => http::upgrade_required(*request).await,
            }
        }
    };
    let (ws, request, extensions) = (upgraded.ws, upgraded.request, upgraded.extensions);
    let opened = Opened {
        peer,
        request,
        extensions,
    };
    match mode {
        Mode::Print(lines) => print(ws, opened, lines).await,
        Mode::Echo => echo(ws, opened).await,
        Mode::Broadcast(hub) => hub.serve(ws, opened).await,
        Mode::Exec(cmd, grace) => exec::serve(ws, opened, &cmd, grace).await,
    }
}

/// A connection's handshake, for the log.
pub(crate) struct Opened {
    pub(crate) peer: SocketAddr,
    pub(crate) request: Request<()>,
    /// The extensions agreed (the answer's `Sec-WebSocket-Extensions`).
    pub(crate) extensions: Option<String>,
}

impl Opened {
    /// Logs the connection as open; a mode calls it once the connection is
    /// ready for messages (a broadcast client once it is in the room).
    pub(crate) fn log(&self) {
        info!(
            peer = %self.peer,
            http = ?self.request.version(),
            // The path, as on HTTP/1.1 (an HTTP/2 request's URI is whole).
            path = %self.request.uri().path_and_query().map_or("/", |p| p.as_str()),
            extensions = self.extensions.as_deref().unwrap_or("none"),
            "open"
        );
    }
}

/// Logs the end of a connection with the close frame the client sent
/// (`Abruptly`, 1006, if it dropped without one).
pub(crate) fn log_closed(peer: SocketAddr, received: Option<&CloseFrame>) {
    match received {
        Some(frame) => info!(
            %peer,
            code = frame.code.as_u16(),
            reason = ?frame.reason,
            "closed"
        ),
        None => info!(%peer, "closed without a close frame"),
    }
}

/// The default mode: what the client sends is printed on stdout, and each
/// line of our stdin is sent to it (and to every other client) as a text
/// message.
async fn print(
    mut ws: WebSocket<Transport>,
    opened: Opened,
    lines: broadcast_lines::Lines,
) -> Result<()> {
    // Subscribed before "open" is logged, so that a client told "open"
    // gets every line typed after it.
    let mut lines = lines.subscribe();
    opened.log();
    let peer = opened.peer;
    let result = async {
        loop {
            tokio::select! {
                msg = ws.recv() => {
                    let Some(msg) = msg else { break };
                    let msg = msg?;
                    debug!(%peer, "received {}", summary(&msg));
                    println!("{peer} {}", describe(&msg));
                }
                // At the end of stdin, clients go on talking to us.
                Some(line) = lines.next() => ws.send(Message::text(line)).await?,
            }
        }
        Ok(())
    }
    .await;
    log_closed(peer, ws.close_received());
    result
}

async fn echo(mut ws: WebSocket<Transport>, opened: Opened) -> Result<()> {
    opened.log();
    let peer = opened.peer;
    let result = async {
        while let Some(msg) = ws.recv().await {
            let msg = msg?;
            debug!(%peer, "received {}", summary(&msg));
            if msg.is_data() {
                ws.send(msg).await?;
            }
        }
        Ok(())
    }
    .await;
    log_closed(peer, ws.close_received());
    result
}

/// A message as one short log line: kind, size and the start of it (a
/// 10 MiB message is not written to the log whole).
pub(crate) fn summary(msg: &Message) -> String {
    const SHOWN: usize = 40;
    match msg {
        Message::Text(t) => {
            let text = t.as_str();
            let cut = text
                .char_indices()
                .nth(SHOWN)
                .map_or(text.len(), |(i, _)| i);
            let more = if cut < text.len() { "…" } else { "" };
            format!("text [{} bytes] {:?}{more}", text.len(), &text[..cut])
        }
        Message::Binary(b) => format!("binary [{} bytes]", b.len()),
        other => describe(other),
    }
}
