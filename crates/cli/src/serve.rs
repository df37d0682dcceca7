//! `dialtone serve`: a listener on the command line. What it does with each
//! connection is its mode: print (the default), `--echo`, `--broadcast`
//! ([`broadcast`]) or `--exec` ([`exec`]); `--static` and `--web` answer
//! plain HTTP requests on the same port ([`http`]).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dialtone::http::{Request, StatusCode};
use dialtone::limits::ConnectionLimits;
use dialtone::{
    Accepted, Acceptor, CloseFrame, Incoming, Listener, Message, Origin, ServerTls, Transport,
    WebSocket,
};
use tracing::{debug, info, warn};

use crate::exec::Program;
use crate::{describe, server_config, DeflateArgs};

mod broadcast;
mod broadcast_lines;
mod cgi;
mod exec;
mod http;
mod origin;
mod self_signed;

/// `dialtone serve --help`, above the options.
pub(crate) const LONG_ABOUT: &str = "\
Listen for WebSocket connections on ADDR (e.g. 127.0.0.1:9001). What each
connection gets is the mode:
  (none)            what clients send is printed on stdout (\"PEER text \\\"…\\\"\"),
                    and each line of stdin is sent to every client connected
  --echo            every message is sent back
  --broadcast       every message goes to every client (a chat room)
  --exec PROG ARGS  PROG runs for each connection, its stdin and stdout on it
  --exec-shell CMD  the same with `sh -c CMD`
--static DIR and --web answer plain HTTP on the same port; --tls-cert and
--tls-key, or --tls-self-signed, make it wss://, offering HTTP/2 (ALPN h2)
beside HTTP/1.1: browsers then open WebSockets as HTTP/2 streams (RFC 8441).
-v logs connections (with the HTTP version) and closes on stderr.

Safe by default (docs/SECURITY.md): browsers' handshakes are accepted only
from pages of this same host and port (--allow-origin, --allow-any-origin);
at most --max-connections connections, --max-connections-per-ip from one
address, --max-procs commands; a plain HTTP answer that is not read within
--write-timeout is dropped.";

const AFTER_LONG_HELP: &str = "\
Examples:
  dialtone serve 127.0.0.1:9001                        # type lines to the clients
  dialtone serve 127.0.0.1:9001 --echo --no-deflate
  dialtone serve 127.0.0.1:9001 --deflate-threshold 1024
  dialtone serve 0.0.0.0:9001 --broadcast --broadcast-queue 1048576
  dialtone -v serve 127.0.0.1:9001 --exec cat          # an echo through a command
  dialtone serve 127.0.0.1:9001 --exec-grace 5 --exec python3 bot.py --room lobby
  dialtone serve 127.0.0.1:9001 --exec-shell 'tr a-z A-Z | tee -a log'
  dialtone serve 127.0.0.1:9001 --max-procs 16 --passenv PATH,HOME --exec ./bot
  dialtone serve 127.0.0.1:9001 --web --static ./public   # open http://127.0.0.1:9001/
  dialtone serve 127.0.0.1:9001 --echo --allow-origin https://app.example.com
  dialtone serve 0.0.0.0:9001 --echo --allow-any-origin   # a public echo
  dialtone serve 0.0.0.0:9001 --echo --max-connections 10000 --max-connections-per-ip 16
  dialtone serve 127.0.0.1:9001 --static ./big-files --write-timeout 30
  dialtone serve 127.0.0.1:9443 --echo --tls-cert chain.pem --tls-key key.pem
  dialtone serve 127.0.0.1:9443 --echo --tls-self-signed  # prints the dial line

--exec: every argument after --exec is the command's (it comes last). It runs
without a shell; its environment is the request's, under websocketd's names
(REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, REQUEST_METHOD,
SCRIPT_NAME, PATH_INFO, QUERY_STRING, REQUEST_URI, HTTP_<HEADER> such as
HTTP_ORIGIN, HTTPS with TLS), plus the --passenv variables and nothing else.
When the client closes, its close is answered at once (RFC 6455 §7.1),
the command's stdin is closed and it has --exec-grace seconds to exit by
itself, then SIGTERM, --exec-grace again, then SIGKILL. What it prints after
the client's close cannot be sent and is dropped (-v logs how many lines). A
client that wants the command's answers waits for them before closing:
`dialtone dial` does (see --linger there).";

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
    /// Run PROGRAM with ARGS for each connection, directly (execve, no
    /// shell: nothing a client sends is ever read by one): each line it
    /// prints is sent as a text message, each message received is written
    /// to its stdin as a line. Every argument after --exec is the
    /// command's, so it comes last. The connection closes when it exits
    /// (1000 if it succeeded, 1011 if not). When the client closes, its
    /// stdin is closed and it has --exec-grace to exit (then SIGTERM, then
    /// SIGKILL); what it prints after the client's close is dropped. It
    /// gets the request in its environment (REMOTE_ADDR, PATH_INFO,
    /// QUERY_STRING, HTTP_ORIGIN, …, as websocketd). Example: `--exec
    /// python3 bot.py --room lobby`.
    #[arg(
        long,
        value_name = "PROGRAM",
        num_args = 1..,
        allow_hyphen_values = true,
        groups = ["mode", "command"]
    )]
    exec: Option<Vec<OsString>>,
    /// Like --exec, but CMD is a shell command line run with `sh -c` (pipes,
    /// redirections, `$QUERY_STRING`…); quote what comes from the request,
    /// as in any shell script. Example: `--exec-shell 'grep --line-buffered
    /// -i "$QUERY_STRING" | tee -a log'`.
    #[arg(long, value_name = "CMD", groups = ["mode", "command"])]
    exec_shell: Option<String>,
    /// Seconds a --exec command has to exit by itself once the client has
    /// closed (and its stdin is closed), before SIGTERM; as long again
    /// after SIGTERM before SIGKILL. Example: `--exec-grace 5`.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = crate::dial::seconds_or_zero, requires = "command")]
    exec_grace: Duration,
    /// Commands (--exec, --exec-shell) running at once; past it, a
    /// handshake is answered 503 with Retry-After (or, if it loses a race
    /// for the last place, opened and closed with 1013 Try Again Later).
    /// 0: no limit. The default is 4 per CPU. Example: `--max-procs 16`.
    #[arg(long, value_name = "N", default_value_t = default_max_procs(), requires = "command")]
    max_procs: usize,
    /// The variables of serve's own environment that a command gets
    /// (comma-separated); it gets no other, besides the request's.
    /// Example: `--passenv PATH,HOME,LANG`.
    #[arg(long, value_name = "NAMES", value_delimiter = ',', default_value = cgi::DEFAULT_PASSENV, requires = "command")]
    passenv: Vec<String>,
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
    /// Also accept WebSocket handshakes from pages of this origin
    /// (`scheme://host[:port]`, repeatable). By default a browser's
    /// handshake is accepted only from a page served from the host and
    /// port it was sent to (as --web's is); clients that send no Origin
    /// (those that are not browsers) are always accepted. On a loopback
    /// address, a browser's handshake must also name a loopback host
    /// (localhost, 127.0.0.1, …) unless its origin is listed here: a page
    /// whose name was made to resolve to 127.0.0.1 (DNS rebinding) is
    /// refused. Example: `--allow-origin https://app.example.com`.
    #[arg(long, value_name = "ORIGIN", value_parser = origin)]
    allow_origin: Vec<Origin>,
    /// Accept WebSocket handshakes from pages of any site: any page open
    /// in a browser on this machine (or, bound to a public address, on
    /// the internet) can then talk to this server as its user. For public
    /// services that rely on no cookie and no network position. Example:
    /// `dialtone serve 0.0.0.0:9001 --echo --allow-any-origin`.
    #[arg(long, conflicts_with = "allow_origin")]
    allow_any_origin: bool,
    /// Connections open at once, in all; past it a new one is answered 503
    /// with Retry-After and closed, and those open go on. 0: no limit.
    /// Example: `--max-connections 10000`.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Connections open at once from one client address (an IPv6 client
    /// by its /64); past it a new one is answered 429 with Retry-After.
    /// 0: no limit (behind a reverse proxy, every client has its address).
    /// Example: `--max-connections-per-ip 16`.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_connections_per_ip: usize,
    /// Seconds a plain HTTP answer (--static, --web, a refusal) may wait
    /// for the client to take any of it before the connection is dropped:
    /// a client that never reads cannot hold a response open. Example:
    /// `--write-timeout 30`.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = crate::dial::seconds)]
    write_timeout: Duration,
}

/// `--max-procs`' default: 4 per CPU.
fn default_max_procs() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--allow-origin https://app.example.com`.
fn origin(s: &str) -> Result<Origin, String> {
    Origin::parse(s).map_err(|e| e.to_string())
}

/// What to do with each WebSocket.
#[derive(Clone)]
enum Mode {
    /// Print what clients send; send them each line of our stdin.
    Print(broadcast_lines::Lines),
    Echo,
    Broadcast(Arc<broadcast::Hub>),
    Exec(Arc<exec::Spec>),
}

pub(crate) async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let addr = &args.addr;
    let program = Program::from_args(args.exec.as_deref(), args.exec_shell.as_deref());
    if let Some(program) = &program {
        program.check()?;
    }
    // Taken before the handshake's 101: past the limit a client is told
    // 503 rather than let in and closed (see `exec::Procs`).
    let procs = program
        .as_ref()
        .map(|_| exec::Procs::new(nonzero(args.max_procs)));
    let listener = Listener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let hosts = origin::LoopbackHosts::for_listener(
        listener.local_addr()?.ip(),
        args.allow_any_origin,
        &args.allow_origin,
    );
    let mut acceptor = Acceptor::new()
        .config(server_config(&args.deflate))
        .write_timeout(args.write_timeout)
        .origin_policy(origin::policy(args.allow_any_origin, &args.allow_origin));
    if hosts.is_some() || procs.is_some() {
        let procs = procs.clone();
        acceptor = acceptor.on_request(move |request, _| {
            if let Some(hosts) = &hosts {
                hosts.check(request)?;
            }
            if let Some(procs) = &procs {
                procs.check()?;
            }
            Ok(None)
        });
    }
    let mut listener = listener.with_acceptor(acceptor);
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
    } else if let (Some(program), Some(procs)) = (program, procs) {
        Mode::Exec(Arc::new(exec::Spec {
            program,
            grace: args.exec_grace,
            parent_env: cgi::passed(&args.passenv),
            tls: scheme == "wss",
            procs,
        }))
    } else {
        Mode::Print(broadcast_lines::Lines::from_stdin())
    };
    let limits = ConnectionLimits::new(
        nonzero(args.max_connections),
        nonzero(args.max_connections_per_ip),
    );
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
        let peer = incoming.peer_addr();
        let permit = match limits.try_acquire(peer.ip()) {
            Ok(permit) => permit,
            Err(reject) => {
                warn!(%peer, status = reject.status.as_u16(), "refused: {}", reject.reason);
                // Bounded by the write timeout (and, with TLS, the
                // handshake timeout): the accept loop never waits on it.
                tokio::spawn(incoming.refuse(reject));
                continue;
            }
        };
        let (mode, site) = (mode.clone(), site.clone());
        tokio::spawn(async move {
            // Held as long as the connection lasts.
            let _permit = permit;
            if let Err(e) = serve_one(incoming, mode, site).await {
                warn!(%peer, "{e:#}");
            }
        });
    }
}

/// `0` is no limit.
fn nonzero(n: usize) -> Option<usize> {
    (n != 0).then_some(n)
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
    let accepted = match incoming.handshake_or_http().await {
        Ok(accepted) => accepted,
        Err(dialtone::Error::Refused(reject)) => {
            // An Origin refusal names the origin; say how to let it in.
            let hint = if reject.status == StatusCode::FORBIDDEN {
                " (--allow-origin ORIGIN lets a site's pages in)"
            } else {
                ""
            };
            warn!(%peer, status = reject.status.as_u16(), "refused: {}{hint}", reject.reason);
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let upgraded = match accepted {
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
        Mode::Exec(spec) => exec::serve(ws, opened, &spec).await,
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
