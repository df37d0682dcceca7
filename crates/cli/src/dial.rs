//! `dialtone dial`: a dialer on the command line.
//!
//! stdin lines go out as text messages; what arrives is printed as lines
//! (text messages on stdout, the rest on stderr) or, with `--jsonl`, as one
//! JSON object per event. `--binary` makes stdin and stdout byte streams,
//! `--echo` sends back what arrives, `--exec` puts a command in place of
//! stdin and stdout. The exit status says how the connection ended (see
//! `exit`).
//!
//! The end of stdin is not the end of the conversation: the replies to the
//! last lines may still be on their way, and a server that stops at our
//! close drops those it has not sent yet. So the close waits (see
//! [`AtEof`]): for `-n` messages, for `--linger` of quiet, or for ever with
//! `--no-close`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use dialtone::http::Version;
use dialtone::proto::close::MAX_REASON_LEN;
use dialtone::{
    CloseCode, CloseFrame, CookieJar, Dialer, Error, Http2, Message, MessageKind, Response,
    Transport, WebSocket, WsWriter,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::{Interval, MissedTickBehavior};

use crate::{config, describe, exit, DeflateArgs};

/// `dialtone dial --help`, above the options (set on the subcommand in
/// main.rs: a variant's doc comment would override it here).
pub(crate) const LONG_ABOUT: &str = "\
Dial URL (ws:// or wss://), send each line of stdin as a text message and
print what arrives: text messages on stdout, one per line, everything else on
stderr.

At the end of stdin, dial does not close at once (the replies to the last
lines may still be coming, and a server that stops at a close drops them):
  - by default it waits while messages keep arriving, and closes once none
    has arrived for --linger SECS (0.3) since the last line went out or the
    last message came in; a server slower than that to answer needs a longer
    --linger, or -n;
  - with -n N it waits for the N-th message, however long that takes;
  - with --no-close it never closes: it prints what arrives until the
    server closes (or Ctrl-C).
Then it closes with --close (Normal by default) and waits for the server's
answer.

--jsonl prints every event as one JSON object per line on stdout instead:
  {\"event\":\"open\",\"t_ms\":3.1,\"url\":\"ws://…\",\"status\":101,\"http\":\"1.1\",\"protocol\":null,\"extensions\":\"permessage-deflate\"}
  {\"event\":\"message\",\"t_ms\":5.2,\"type\":\"text\",\"len\":5,\"data\":\"hello\"}
  {\"event\":\"message\",\"t_ms\":5.4,\"type\":\"binary\",\"len\":3,\"encoding\":\"base64\",\"data\":\"AAH/\"}
  {\"event\":\"ping\",…} and {\"event\":\"pong\",…} (payload in base64; pongs that answer
      --ping also carry \"seq\" and \"rtt_ms\")
  {\"event\":\"close\",\"t_ms\":9.0,\"code\":1000,\"name\":\"normal\",\"reason\":\"\",\"initiator\":\"client\"}
  {\"event\":\"error\",\"t_ms\":…,\"error\":\"…\"}
t_ms counts milliseconds since the dial started.";

const AFTER_LONG_HELP: &str = concat!(
    "\
Examples:
  dialtone dial ws://127.0.0.1:9001/                    # lines in, lines out
  echo hello | dialtone dial --jsonl ws://127.0.0.1:9001/
  dialtone dial ws://127.0.0.1:9001/ --ping -n 10       # 10 messages, pings every second
  dialtone dial ws://127.0.0.1:9001/ --close 4000:bye < requests.txt
  dialtone dial ws://127.0.0.1:9001/ --binary < in.bin > out.bin
  printf 'hello\\n' | dialtone dial ws://127.0.0.1:9001/      # waits for the reply
  printf 'a\\nb\\n' | dialtone dial -n 2 ws://127.0.0.1:9001/   # waits for 2 replies
  dialtone dial --linger 2 ws://127.0.0.1:9001/ < requests.txt  # a slow server
  echo subscribe | dialtone dial --no-close ws://127.0.0.1:9001/feed   # until it closes
  dialtone dial --exec 'sed -u s/^/got:/' ws://127.0.0.1:9001/  # a command talks
  dialtone dial -H 'Authorization: Bearer t0k3n' --protocol chat --user-agent me/1 URL
  dialtone dial --proxy socks5h://127.0.0.1:1080 --timeout 5 --max-redirects 0 URL
  dialtone dial --cacert ca.pem --cert me.pem --key me.key wss://127.0.0.1:9443/
  dialtone dial --insecure wss://127.0.0.1:9443/        # no certificate check: testing only
  dialtone dial -v --http2 only wss://127.0.0.1:9443/   # WebSocket over HTTP/2 (RFC 8441) or fail
  dialtone dial --http2 only ws://127.0.0.1:9001/       # cleartext HTTP/2 (h2c, prior knowledge)
  dialtone dial --cookie-jar cookies.txt --ping-interval 20 --no-deflate URL
  dialtone dial --echo --deflate-threshold 0 URL        # compress every message

",
    exit::exit_table!()
);

#[derive(clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct DialArgs {
    /// A ws:// or wss:// URL.
    url: String,
    /// Echo every received message back instead of reading stdin.
    #[arg(long)]
    echo: bool,
    /// Send stdin as a byte stream of binary messages (EFL's streaming
    /// mode) and write received binary messages to stdout. At the end of
    /// stdin it waits as lines do (--linger, --no-close). Example:
    /// `dialtone dial --binary URL < in.bin > out.bin`.
    #[arg(long, conflicts_with = "echo")]
    binary: bool,
    /// Print every event (open, message, ping, pong, close, error) as one
    /// JSON object per line on stdout. Binary payloads are base64.
    #[arg(long, conflicts_with = "binary")]
    jsonl: bool,
    /// Send a ping every SECS seconds (1 without a value; write --ping=0.5)
    /// and report each pong with its round-trip time.
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "1",
        value_parser = seconds,
        conflicts_with = "binary"
    )]
    ping: Option<Duration>,
    /// The close frame sent at the end of stdin or after --count messages:
    /// CODE or CODE:REASON, CODE a number (1000, 4000) or a name (normal,
    /// going_away, policy_violation, …).
    #[arg(
        long,
        value_name = "CODE[:REASON]",
        value_parser = close_frame,
        default_value = "1000",
        conflicts_with = "binary"
    )]
    close: CloseFrame,
    /// Close (with --close) and exit after receiving N text or binary
    /// messages; at the end of stdin, wait for them however long it takes
    /// (e.g. `printf 'a\nb\n' | dialtone dial -n 2 URL`).
    #[arg(
        short = 'n',
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..),
        conflicts_with = "binary"
    )]
    count: Option<u64>,
    /// At the end of stdin, close only once no message has arrived for
    /// SECS seconds (since the last line went out or the last message came
    /// in), so that replies still on their way are not lost. 0 closes at
    /// once. Example: `--linger 2` for a server that takes a second to
    /// answer.
    #[arg(long, value_name = "SECS", default_value = "0.3", value_parser = seconds_or_zero)]
    linger: Duration,
    /// At the end of stdin, do not close: print what arrives until the
    /// server closes (or Ctrl-C). Example: `echo subscribe | dialtone dial
    /// --no-close URL`.
    #[arg(long, conflicts_with = "count")]
    no_close: bool,
    /// Run CMD with `sh -c` in place of stdin and stdout: each line it
    /// prints is sent as a text message, each text or binary message
    /// received is written to its stdin as a line. When its output ends,
    /// the connection is closed with --close; when the server closes, its
    /// stdin is closed and it has --exec-grace to exit (then SIGTERM, then
    /// SIGKILL). Example: `--exec 'while read l; do echo "got $l"; done'`.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["echo", "binary", "jsonl", "count", "no_close"])]
    exec: Option<String>,
    /// Seconds the --exec command has to exit by itself once the server has
    /// closed (and its stdin is closed), before SIGTERM; as long again
    /// after SIGTERM before SIGKILL. Example: `--exec-grace 5`.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = seconds_or_zero, requires = "exec")]
    exec_grace: Duration,
    /// Offer a subprotocol (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Add a request header, "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The User-Agent header.
    #[arg(long)]
    user_agent: Option<String>,
    /// Proxy URL: http://, socks5://, socks5h://, socks4://, socks4a://.
    /// Without it, the *_PROXY environment variables are used, like curl.
    #[arg(long, conflicts_with = "no_proxy")]
    proxy: Option<String>,
    /// Connect directly, whatever the environment says.
    #[arg(long)]
    no_proxy: bool,
    /// Trust this CA certificate (PEM file) too (repeatable).
    #[arg(long = "cacert")]
    cacerts: Vec<PathBuf>,
    /// Client certificate (PEM) for TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Do not verify the server's certificate. For testing only.
    #[arg(long)]
    insecure: bool,
    /// Load cookies from this Netscape cookie file and save them back.
    #[arg(long)]
    cookie_jar: Option<PathBuf>,
    /// Follow at most this many handshake redirects.
    #[arg(long, default_value_t = Dialer::DEFAULT_MAX_REDIRECTS)]
    max_redirects: usize,
    /// Keepalive: ping every SECS seconds, silently, and drop the
    /// connection (exit status 106) if no pong comes within SECS.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    ping_interval: Option<Duration>,
    /// Dial timeout in seconds (DNS, connect, proxy, TLS, handshake).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// WebSockets over HTTP/2 (RFC 8441): `auto` offers h2 on wss:// and
    /// uses it when the server enables extended CONNECT, else HTTP/1.1;
    /// `never` is HTTP/1.1 only; `only` fails if the server cannot (and
    /// on ws:// speaks cleartext h2c). `-v` logs the version used.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    http2: Http2Arg,
    #[command(flatten)]
    deflate: DeflateArgs,
}

/// `--http2`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Http2Arg {
    Auto,
    Never,
    Only,
}

fn dialer(args: &DialArgs) -> Result<Dialer> {
    let mut d = Dialer::new()
        .http2(match args.http2 {
            Http2Arg::Auto => Http2::Auto,
            Http2Arg::Never => Http2::Never,
            Http2Arg::Only => Http2::Only,
        })
        .config(config(&args.deflate))
        .max_redirects(args.max_redirects)
        .timeout(Duration::from_secs_f64(args.timeout));
    for p in &args.protocols {
        d = d.protocol(p.clone());
    }
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?} is not \"Name: value\""))?;
        d = d.header(name.trim(), value.trim());
    }
    if let Some(ua) = &args.user_agent {
        d = d.user_agent(Some(ua.clone()));
    }
    if let Some(proxy) = &args.proxy {
        d = d.proxy(proxy.clone());
    } else if args.no_proxy {
        d = d.no_proxy();
    }
    for ca in &args.cacerts {
        d = d.add_ca_file(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        d = d.client_cert_files(cert.clone(), key.clone());
    }
    if args.insecure {
        d = d.danger_accept_invalid_certs(true);
    }
    if let Some(every) = args.ping_interval {
        d = d.timeouts(dialtone::Timeouts::default().keepalive(every, every));
    }
    Ok(d)
}

/// `--ping 0.5`, `--ping-interval 10`: a positive number of seconds.
pub(crate) fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?}: expected a positive number of seconds"))
}

/// `--linger 0`, `--exec-grace 2.5`: zero or more seconds.
pub(crate) fn seconds_or_zero(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?}: expected zero or a positive number of seconds"))
}

/// `--close 4000:bye`, `--close going_away`: a close frame we may send.
fn close_frame(s: &str) -> Result<CloseFrame, String> {
    let (code, reason) = s.split_once(':').unwrap_or((s, ""));
    let code = match code.parse::<u16>() {
        Ok(n) => CloseCode::from_u16(n),
        Err(_) => (1000..=1015)
            .map(CloseCode::from_u16)
            .find(|c| c.name() == code)
            .ok_or_else(|| {
                format!("{code:?} is neither a close code nor a name like going_away")
            })?,
    };
    if !code.is_sendable() {
        return Err(format!(
            "{code} cannot be sent (1000-1003, 1007-1014 and 3000-4999 can)"
        ));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(format!(
            "the reason is {} bytes; a close frame holds at most {MAX_REASON_LEN}",
            reason.len()
        ));
    }
    Ok(CloseFrame::new(code, reason))
}

pub(crate) async fn dial(args: DialArgs) -> Result<ExitCode> {
    let mut dialer = dialer(&args)?;
    let jar = match &args.cookie_jar {
        Some(path) => {
            let jar = CookieJar::load(path).with_context(|| format!("reading {path:?}"))?;
            dialer = dialer.cookie_jar(jar.clone());
            Some((jar, path))
        }
        None => None,
    };
    let report = Report {
        jsonl: args.jsonl,
        start: Instant::now(),
    };
    let dialed = dialer.dial(&args.url).await;
    if let Some((jar, path)) = &jar {
        jar.save(path)
            .with_context(|| format!("writing {path:?}"))?;
    }
    let (ws, response) = match dialed {
        Ok(dialed) => {
            tracing::info!(
                "connected to {} over {:?} (status {})",
                dialed.1.url,
                dialed.1.version,
                dialed.1.head.status.as_u16()
            );
            dialed
        }
        Err(e) => {
            let (status, said) = exit::for_dial_error(&e);
            report.error(&said);
            return Ok(exit::code(status));
        }
    };
    if args.binary {
        let at_eof = if args.no_close {
            AtEof::Wait
        } else {
            AtEof::Linger(args.linger)
        };
        return Ok(exit::code(stream_binary(ws, at_eof).await?));
    }
    let at_eof = if args.exec.is_some() {
        // The command is done talking; what arrives now has nowhere to go.
        AtEof::Close
    } else if args.count.is_some() || args.no_close {
        AtEof::Wait
    } else {
        AtEof::Linger(args.linger)
    };
    let session = Session {
        report,
        ping: args.ping,
        close: args.close,
        count: args.count,
        at_eof,
    };
    if let Some(cmd) = &args.exec {
        let env = [("DIALTONE_URL", response.url.to_string())];
        let (child, stdin, stdout) = crate::exec::spawn(cmd, &env)?;
        session.report.open(&response);
        let (lines_tx, lines) = mpsc::channel(16);
        tokio::spawn(crate::exec::stdout_to_lines(stdout, lines_tx));
        let command = Command {
            child,
            stdin: Some(stdin),
            grace: args.exec_grace,
        };
        return Ok(exit::code(session.lines(ws, lines, Some(command)).await));
    }
    session.report.open(&response);
    let status = if args.echo {
        session.echo(ws).await
    } else {
        session.lines(ws, stdin_lines(), None).await
    };
    Ok(exit::code(status))
}

/// What `lines` does at the end of its input.
#[derive(Clone, Copy, Debug)]
enum AtEof {
    /// Close once no data message has arrived for this long (measured
    /// from the end of the input, then from each message received).
    Linger(Duration),
    /// Do not close: `-n` closes after its count, `--no-close` never.
    Wait,
    /// Close now (`--exec`: the command's output ended).
    Close,
}

/// `--exec`: the command in place of stdin and stdout.
struct Command {
    child: tokio::process::Child,
    /// Closed (dropped) when the connection ends, or when the command
    /// stops reading.
    stdin: Option<tokio::process::ChildStdin>,
    grace: Duration,
}

/// What one connection does besides moving messages.
struct Session {
    report: Report,
    /// `--ping`: how often to send a timed ping.
    ping: Option<Duration>,
    /// `--close`: what to close with.
    close: CloseFrame,
    /// `-n`: how many data messages to receive before closing.
    count: Option<u64>,
    /// What to do at the end of the input.
    at_eof: AtEof,
}

impl Session {
    /// `input` out as messages (from another task, so that a server that
    /// stops reading until we read cannot wedge us), events in: printed,
    /// or written to `command`'s stdin. At the end of the input, closes as
    /// `at_eof` says.
    async fn lines(
        self,
        ws: WebSocket<Transport>,
        input: mpsc::Receiver<Message>,
        mut command: Option<Command>,
    ) -> u8 {
        let (mut reader, writer) = ws.split();
        let close_now = Arc::new(Notify::new());
        let close_sent = Arc::new(AtomicBool::new(false));
        let (eof_tx, mut eof) = oneshot::channel();
        let writer = tokio::spawn(write_loop(
            writer,
            input,
            eof_tx,
            close_now.clone(),
            self.timed_pings(),
            self.close.clone(),
            close_sent.clone(),
        ));
        let mut received = 0u64;
        let mut failed = None;
        let mut eof_seen = false;
        // Armed at the end of the input with --linger, pushed back by
        // every data message.
        let mut lingering = false;
        let quiet = tokio::time::sleep(Duration::MAX);
        tokio::pin!(quiet);
        loop {
            let msg = tokio::select! {
                biased;
                msg = reader.recv() => msg,
                done = &mut eof, if !eof_seen => {
                    eof_seen = true;
                    // Err: the writer gave up; the reader tells why.
                    if done.is_ok() {
                        match self.at_eof {
                            AtEof::Linger(quiet_for) => {
                                lingering = true;
                                quiet.as_mut().reset(tokio::time::Instant::now() + quiet_for);
                            }
                            AtEof::Close => close_now.notify_one(),
                            AtEof::Wait => {}
                        }
                    }
                    continue;
                }
                () = &mut quiet, if lingering => {
                    lingering = false;
                    close_now.notify_one();
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            match msg {
                Ok(Message::Close(frame)) => {
                    let ours = close_sent.load(Ordering::SeqCst);
                    self.report.closed(&frame, initiator(ours, &frame));
                }
                // Past -n, what still arrives before the close is not shown.
                Ok(msg) if msg.is_data() && Some(received) == self.count => {}
                Ok(msg) => {
                    if msg.is_data() {
                        if let AtEof::Linger(quiet_for) = self.at_eof {
                            if lingering {
                                quiet
                                    .as_mut()
                                    .reset(tokio::time::Instant::now() + quiet_for);
                            }
                        }
                    }
                    match &mut command {
                        Some(command) if msg.is_data() => command.write(&msg).await,
                        _ => self.report.received(&msg),
                    }
                    if msg.is_data() {
                        received += 1;
                        if Some(received) == self.count {
                            close_now.notify_one();
                        }
                    }
                }
                Err(e) => failed = failed.or(self.failure(&e)),
            }
        }
        writer.abort();
        let ours = close_sent.load(Ordering::SeqCst).then_some(self.close.code);
        if let Some(command) = command {
            command.stop().await;
        }
        final_status(failed, ours, reader.close_received().as_ref())
    }

    /// `--echo`: every text and binary message goes back as it came. One
    /// task, as before `--jsonl`: the conformance runs depend on its pace.
    async fn echo(self, mut ws: WebSocket<Transport>) -> u8 {
        let mut pings = self.timed_pings();
        let mut received = 0u64;
        let mut failed = None;
        loop {
            let msg = tokio::select! {
                biased;
                msg = ws.recv() => msg,
                payload = next_ping(&mut pings) => {
                    if let Err(e) = ws.send(Message::Ping(payload)).await {
                        failed = failed.or(self.failure(&e));
                    }
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            match msg {
                Ok(Message::Close(frame)) => self.report.closed(&frame, initiator(false, &frame)),
                Ok(msg) => {
                    // Line mode keeps quiet: an echo run can be long.
                    if self.report.jsonl {
                        self.report.received(&msg);
                    }
                    if !msg.is_data() {
                        continue;
                    }
                    if let Err(e) = ws.send(msg).await {
                        failed = failed.or(self.failure(&e));
                    }
                    received += 1;
                    if Some(received) == self.count {
                        let answer = ws.close(self.close.code, &self.close.reason).await;
                        if let Ok(Some(frame)) = &answer {
                            self.report.closed(frame, Some("client"));
                        }
                        let ours = Some(self.close.code);
                        return final_status(failed, ours, ws.close_received());
                    }
                }
                Err(e) => failed = failed.or(self.failure(&e)),
            }
        }
        final_status(failed, None, ws.close_received())
    }

    fn timed_pings(&self) -> Option<TimedPings> {
        self.ping
            .map(|every| TimedPings::new(every, self.report.start))
    }

    /// Reports an error of an open connection; if it was a protocol error,
    /// we closed with its code, which then decides the exit status.
    fn failure(&self, e: &Error) -> Option<CloseCode> {
        let said = match e {
            // The only timeout of an open connection is keepalive's.
            Error::Timeout(after) => format!(
                "no pong within {:.1} s (--ping-interval): dropping the connection",
                after.as_secs_f64()
            ),
            e => e.to_string(),
        };
        self.report.error(&said);
        match e {
            Error::Protocol(p) => {
                let frame = CloseFrame::new(p.close_code(), p.to_string());
                self.report.closed(&frame, Some("client"));
                Some(frame.code)
            }
            _ => None,
        }
    }
}

impl Command {
    /// Writes a message to the command's stdin as a line; once it stops
    /// reading, messages are dropped (and said so once).
    async fn write(&mut self, msg: &Message) {
        if let Some(stdin) = &mut self.stdin {
            if let Err(e) = crate::exec::write_line(stdin, msg).await {
                eprintln!("dialtone: the command's stdin is closed ({e}): messages are dropped");
                self.stdin = None;
            }
        }
    }

    /// The connection is over: closes the command's stdin and lets it
    /// exit, gently ([`crate::exec::stop`]); says so if it had to be
    /// stopped, or failed.
    async fn stop(mut self) {
        drop(self.stdin.take());
        let (status, ended) = crate::exec::stop(&mut self.child, self.grace).await;
        match status {
            Ok(status) if status.success() && ended == crate::exec::Ended::ByItself => {}
            Ok(status) => eprintln!("dialtone: the command {ended}: {status}"),
            Err(e) => eprintln!("dialtone: the command: {e}"),
        }
    }
}

/// Who sent the first close frame: we did if we had sent ours when the
/// peer's arrived; no one if the connection just dropped.
fn initiator(ours_sent: bool, received: &CloseFrame) -> Option<&'static str> {
    if ours_sent {
        Some("client")
    } else if received.code == CloseCode::Abruptly {
        None
    } else {
        Some("server")
    }
}

/// The exit status of a connection: the code we failed it with, else the
/// code that ended it. A server that answers our own close (echoing our
/// code, or with no code) ended it as we asked: success.
fn final_status(
    failed_with: Option<CloseCode>,
    our_close: Option<CloseCode>,
    received: Option<&CloseFrame>,
) -> u8 {
    if let Some(code) = failed_with {
        return exit::for_close(code);
    }
    let Some(received) = received else {
        return exit::for_close(CloseCode::Abruptly);
    };
    match our_close {
        Some(ours) if received.code == ours || received.code == CloseCode::NoReason => {
            exit::SUCCESS
        }
        _ => exit::for_close(received.code),
    }
}

/// Sends the input's messages and timed pings, says when the input has
/// ended and all of it is sent, and sends the close frame when the reader
/// asks (at the end of the input as `AtEof` says, or after `-n` messages).
async fn write_loop(
    mut writer: WsWriter<Transport>,
    mut input: mpsc::Receiver<Message>,
    eof: oneshot::Sender<()>,
    close_now: Arc<Notify>,
    mut pings: Option<TimedPings>,
    close: CloseFrame,
    close_sent: Arc<AtomicBool>,
) {
    let mut eof = Some(eof);
    loop {
        let sent = tokio::select! {
            biased;
            _ = close_now.notified() => break,
            msg = input.recv(), if eof.is_some() => match msg {
                Some(msg) => writer.send(msg).await,
                None => {
                    if let Some(eof) = eof.take() {
                        let _ = eof.send(());
                    }
                    continue;
                }
            },
            payload = next_ping(&mut pings) => writer.send(Message::Ping(payload)).await,
        };
        if sent.is_err() {
            // The reader reports what happened to the connection.
            return;
        }
    }
    close_sent.store(true, Ordering::SeqCst);
    let _ = writer.close(close.code, &close.reason).await;
}

/// stdin, line by line. Read on a thread of its own rather than with
/// `tokio::io::stdin`, whose blocking read would hold up the runtime's
/// shutdown (and the exit) until the next line when the server ends first.
fn stdin_lines() -> mpsc::Receiver<Message> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("dialtone: reading stdin: {e}");
                    return;
                }
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            // A text message must be UTF-8; a stray byte should not end
            // the session.
            let text = String::from_utf8_lossy(text).into_owned();
            if tx.blocking_send(Message::text(text)).is_err() {
                return;
            }
        }
    });
    rx
}

/// stdin in chunks, on a thread of its own (see [`stdin_lines`]).
fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut chunk = vec![0; 64 * 1024];
            match stdin.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(chunk).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("dialtone: reading stdin: {e}");
                    return;
                }
            }
        }
    });
    rx
}

/// `--ping`: pings whose payload says when they left, so that the pong
/// (which echoes it, RFC 6455 §5.5.3) gives the round trip without any
/// bookkeeping, and pongs that are not ours are told apart.
struct TimedPings {
    every: Interval,
    seq: u64,
    clock: Instant,
}

const PING_PREFIX: &str = "dialtone-ping";

impl TimedPings {
    fn new(every: Duration, clock: Instant) -> Self {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        TimedPings {
            every,
            seq: 0,
            clock,
        }
    }
}

/// The next ping's payload, when it is due; never without `--ping`.
async fn next_ping(pings: &mut Option<TimedPings>) -> Bytes {
    let Some(p) = pings else {
        return std::future::pending().await;
    };
    p.every.tick().await;
    p.seq += 1;
    let micros = p.clock.elapsed().as_micros();
    Bytes::from(format!("{PING_PREFIX} {} {micros}", p.seq))
}

/// The sequence number and round trip of a pong that answers one of our
/// timed pings.
fn timed_pong(payload: &[u8], clock: Instant) -> Option<(u64, Duration)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut words = text.strip_prefix(PING_PREFIX)?.split_whitespace();
    let seq = words.next()?.parse().ok()?;
    let sent: u64 = words.next()?.parse().ok()?;
    let now = u64::try_from(clock.elapsed().as_micros()).ok()?;
    Some((seq, Duration::from_micros(now.checked_sub(sent)?)))
}

/// Where events go: lines for people, or JSON lines for programs.
struct Report {
    jsonl: bool,
    /// When the dial started: `t_ms` counts from here.
    start: Instant,
}

/// Milliseconds, to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn base64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl Report {
    fn event(&self, name: &str, mut fields: serde_json::Value) {
        let mut line = json!({ "event": name, "t_ms": millis(self.start.elapsed()) });
        if let (Some(line), Some(fields)) = (line.as_object_mut(), fields.as_object_mut()) {
            line.append(fields);
        }
        println!("{line}");
    }

    fn open(&self, response: &Response) {
        if self.jsonl {
            let extensions = response
                .head
                .headers
                .get("sec-websocket-extensions")
                .and_then(|v| v.to_str().ok());
            self.event(
                "open",
                json!({
                    "url": response.url.as_str(),
                    "status": response.head.status.as_u16(),
                    "http": if response.version == Version::HTTP_2 { "2" } else { "1.1" },
                    "protocol": response.protocol,
                    "extensions": extensions,
                }),
            );
        }
    }

    fn received(&self, msg: &Message) {
        if !self.jsonl {
            match msg {
                Message::Text(t) => println!("{t}"),
                Message::Pong(p) => match timed_pong(p, self.start) {
                    Some((seq, rtt)) => {
                        eprintln!("< pong #{seq}: round trip {:.3} ms", millis(rtt))
                    }
                    None => eprintln!("< {}", describe(msg)),
                },
                _ => eprintln!("< {}", describe(msg)),
            }
            return;
        }
        let bytes = |b: &[u8]| json!({ "len": b.len(), "encoding": "base64", "data": base64(b) });
        match msg {
            Message::Text(t) => self.event(
                "message",
                json!({ "type": "text", "len": t.len(), "data": t.as_str() }),
            ),
            Message::Binary(b) => {
                let mut fields = bytes(b);
                fields["type"] = "binary".into();
                self.event("message", fields);
            }
            Message::Ping(p) => self.event("ping", bytes(p)),
            Message::Pong(p) => {
                let mut fields = bytes(p);
                if let Some((seq, rtt)) = timed_pong(p, self.start) {
                    fields["seq"] = seq.into();
                    fields["rtt_ms"] = millis(rtt).into();
                }
                self.event("pong", fields);
            }
            Message::Close(frame) => self.closed(frame, None),
        }
    }

    fn closed(&self, frame: &CloseFrame, initiator: Option<&str>) {
        if self.jsonl {
            self.event(
                "close",
                json!({
                    "code": frame.code.as_u16(),
                    "name": frame.code.name(),
                    "reason": frame.reason,
                    "initiator": initiator,
                }),
            );
        } else {
            eprintln!("< close {frame}");
        }
    }

    /// Errors go to stderr in both modes, and are an event too in JSON.
    fn error(&self, said: &str) {
        eprintln!("dialtone: {said}");
        if self.jsonl {
            self.event("error", json!({ "error": said }));
        }
    }
}

/// `--binary`: stdin → binary messages, binary messages → stdout, until
/// the closing handshake is over; the exit status as for lines.
async fn stream_binary(ws: WebSocket<Transport>, at_eof: AtEof) -> Result<u8> {
    use tokio::io::AsyncReadExt;
    let stream = ws.into_stream(MessageKind::Binary);
    let (mut from_ws, mut to_ws) = tokio::io::split(stream);
    let mut chunks = stdin_chunks();
    let mut shut_down = false;
    // When bytes last arrived: the linger counts from there.
    let last_received = std::cell::Cell::new(tokio::time::Instant::now());
    let upload = async {
        while let Some(chunk) = chunks.recv().await {
            if to_ws.write_all(&chunk).await.is_err() {
                return std::future::pending().await;
            }
        }
        // End of stdin: the answers may still be on their way (see
        // `AtEof`); then close (Normal), and keep receiving until the
        // server answers.
        if to_ws.flush().await.is_err() {
            return std::future::pending().await;
        }
        last_received.set(tokio::time::Instant::now());
        match at_eof {
            AtEof::Linger(quiet_for) => loop {
                let due = last_received.get() + quiet_for;
                if tokio::time::Instant::now() >= due {
                    break;
                }
                tokio::time::sleep_until(due).await;
            },
            AtEof::Wait => std::future::pending().await,
            AtEof::Close => {}
        }
        shut_down = to_ws.shutdown().await.is_ok();
        std::future::pending::<()>().await
    };
    let mut stdout = tokio::io::stdout();
    let download = async {
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = from_ws.read(&mut buf).await?;
            if n == 0 {
                return std::io::Result::Ok(total);
            }
            last_received.set(tokio::time::Instant::now());
            stdout.write_all(&buf[..n]).await?;
            total += n as u64;
        }
    };
    let received = tokio::select! {
        received = download => received,
        () = upload => unreachable!("the upload waits forever once done"),
    };
    stdout.flush().await?;
    let stream = from_ws.unsplit(to_ws);
    let failed = stream
        .get_ref()
        .connection()
        .close_sent()
        .map(|frame| frame.code)
        .filter(|&code| code != CloseCode::Normal);
    if let Err(e) = received {
        eprintln!("dialtone: {e}");
        if failed.is_none() && stream.close_received().is_none() {
            // Not the connection: stdout.
            return Ok(exit::FAILURE);
        }
    }
    let ours = shut_down.then_some(CloseCode::Normal);
    Ok(final_status(failed, ours, stream.close_received()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_flag_takes_numbers_names_and_reasons() {
        assert_eq!(
            close_frame("4000:bye"),
            Ok(CloseFrame::new(CloseCode::Private(4000), "bye"))
        );
        assert_eq!(
            close_frame("going_away"),
            Ok(CloseFrame::new(CloseCode::GoingAway, ""))
        );
        assert_eq!(
            close_frame("1000:a:b"),
            Ok(CloseFrame::new(CloseCode::Normal, "a:b"))
        );
        assert!(close_frame("1006").is_err(), "1006 is never sent");
        assert!(close_frame("bogus").is_err());
        assert!(close_frame(&format!("1000:{}", "x".repeat(124))).is_err());
    }

    #[test]
    fn linger_and_grace_take_zero_or_more_seconds() {
        assert_eq!(seconds_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(seconds_or_zero("0.3"), Ok(Duration::from_millis(300)));
        assert_eq!(seconds_or_zero("2"), Ok(Duration::from_secs(2)));
        assert!(seconds_or_zero("-1").is_err());
        assert!(seconds_or_zero("soon").is_err());
        assert!(seconds_or_zero("inf").is_err());
    }

    #[test]
    fn our_pongs_give_their_sequence_and_round_trip() {
        let clock = Instant::now() - Duration::from_millis(10);
        let (seq, rtt) = timed_pong(b"dialtone-ping 7 4000", clock).unwrap();
        assert_eq!(seq, 7);
        assert!(rtt >= Duration::from_millis(5), "{rtt:?}");
        assert_eq!(timed_pong(b"someone else's", clock), None);
    }

    #[test]
    fn an_answer_to_our_close_is_success_and_a_server_close_is_its_code() {
        let frame = |n| CloseFrame::new(CloseCode::from_u16(n), "");
        let ours = Some(CloseCode::Private(4000));
        assert_eq!(final_status(None, ours, Some(&frame(4000))), 0);
        assert_eq!(final_status(None, ours, Some(&frame(1005))), 0);
        assert_eq!(final_status(None, ours, Some(&frame(1006))), 106);
        assert_eq!(final_status(None, None, Some(&frame(1001))), 101);
        assert_eq!(
            final_status(Some(CloseCode::ProtocolError), None, Some(&frame(1000))),
            102
        );
        assert_eq!(final_status(None, None, None), 106);
    }
}
