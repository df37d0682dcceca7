//! Logging to stderr with `tracing`: the level from `-v` flags, or from
//! `RUST_LOG` when it is set (e.g. `RUST_LOG=dialtone=trace`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the subscriber. Without `-v` only warnings and errors are
/// logged; `-v` adds connections and closes (info), `-vv` every message
/// (debug), `-vvv` everything (trace).
pub(crate) fn init(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::new(level),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes would get in the way of anything that reads the log.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
