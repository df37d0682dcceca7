//! `dialtone`: the command-line face of the library. It uses only the
//! library's public API.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dialtone::{Config, Deflate, Message};

mod bench;
mod completions;
mod demo;
mod dial;
mod exec;
mod exit;
mod logging;
mod serve;

use bench::BenchArgs;
use completions::CompletionsArgs;
use dial::DialArgs;
use serve::ServeArgs;

#[derive(Parser)]
#[command(
    name = "dialtone",
    version,
    about = "A WebSocket dialer and listener",
    long_about = LONG_ABOUT,
    after_help = "Run `dialtone help COMMAND` for a command's options, examples and exit statuses."
)]
struct Cli {
    /// Log to stderr: -v connections and closes, -vv every message too
    /// (RUST_LOG, if set, decides instead).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a listener on 127.0.0.1, dial it, exchange a few messages and
    /// print the transcript.
    Demo,
    /// Listen for WebSocket connections on ADDR (e.g. 127.0.0.1:9001).
    #[command(long_about = serve::LONG_ABOUT)]
    Serve(ServeArgs),
    /// Dial URL; send each stdin line as a text message and print what
    /// arrives (or every event as JSON lines).
    #[command(long_about = dial::LONG_ABOUT)]
    Dial(Box<DialArgs>),
    /// Measure an echo server: latency percentiles and throughput over
    /// several connections, every echo verified.
    Bench(Box<BenchArgs>),
    /// Print a completion script for a shell (bash, zsh, fish, elvish,
    /// powershell).
    Completions(CompletionsArgs),
}

const LONG_ABOUT: &str = "\
A WebSocket (RFC 6455, permessage-deflate) dialer and listener for the terminal:
talk to a service line by line or in JSON lines, serve an echo, measure a server.

Examples:
  dialtone serve 127.0.0.1:9001 --echo             # an echo listener
  dialtone dial ws://127.0.0.1:9001/               # stdin lines out, messages in
  dialtone dial --jsonl --ping ws://127.0.0.1:9001/
  dialtone bench ws://127.0.0.1:9001/ -c 4 -d 5    # latency and throughput
  dialtone completions bash > /etc/bash_completion.d/dialtone";

#[derive(clap::Args)]
pub(crate) struct DeflateArgs {
    /// Do not use permessage-deflate.
    #[arg(long)]
    pub(crate) no_deflate: bool,
    /// Send messages shorter than this many bytes uncompressed.
    #[arg(long, default_value_t = Deflate::default().threshold)]
    pub(crate) deflate_threshold: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let result = match cli.command {
        Command::Demo => demo::demo().await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Dial(args) => dial::dial(*args).await,
        Command::Bench(args) => bench::bench(*args).await,
        Command::Completions(args) => completions::completions(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dialtone: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// permessage-deflate is offered twice, in order of preference: with
/// context takeover, then without it, for servers that accept only clients
/// that can go without (RFC 7692 §7.1.1.2). Servers use [`server_config`].
pub(crate) fn config(args: &DeflateArgs) -> Config {
    let (no_deflate, threshold) = (args.no_deflate, args.deflate_threshold);
    let config = Config::default();
    if no_deflate {
        return config;
    }
    let without_takeover = Deflate {
        client_no_context_takeover: true,
        ..Deflate::default()
    };
    config
        .deflate(Deflate::default().threshold(threshold))
        .deflate(without_takeover.threshold(threshold))
}

/// The server's policy: [`Deflate::server_default`] (12-bit windows where
/// the offer allows, which keeps an active connection's zlib state small;
/// an idle one holds none), accepting any valid offer.
pub(crate) fn server_config(args: &DeflateArgs) -> Config {
    let config = Config::default();
    if args.no_deflate {
        return config;
    }
    config.deflate(Deflate::server_default().threshold(args.deflate_threshold))
}

/// How a message looks in a transcript.
pub(crate) fn describe(msg: &Message) -> String {
    fn hex(b: &[u8]) -> String {
        let shown: Vec<String> = b.iter().take(16).map(|x| format!("{x:02x}")).collect();
        let more = if b.len() > 16 { " …" } else { "" };
        format!("{}{more}", shown.join(" "))
    }
    match msg {
        Message::Text(t) => format!("text {:?}", t.as_str()),
        Message::Binary(b) => format!("binary [{} bytes] {}", b.len(), hex(b)),
        Message::Ping(b) => format!("ping {:?}", String::from_utf8_lossy(b)),
        Message::Pong(b) => format!("pong {:?}", String::from_utf8_lossy(b)),
        Message::Close(c) => format!("close {c}"),
    }
}
