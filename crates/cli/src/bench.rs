//! `dialtone bench`: the client half of a benchmark against any WebSocket
//! echo server.
//!
//! Each connection keeps `--in-flight` messages sent and not yet echoed;
//! each echo must be the message sent (same kind, length and bytes, in
//! order), or the run fails and prints no numbers: a server that answers
//! wrongly must not score. Latency is from the send to the echo's arrival.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use dialtone::{CloseCode, Dialer, Message, Transport, WebSocket, WsReader, WsWriter};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::{config, exit, DeflateArgs};

const AFTER_LONG_HELP: &str = concat!(
    "\
Examples:
  dialtone serve 127.0.0.1:9001 --echo &
  dialtone bench ws://127.0.0.1:9001/ -c 8 --size 1024 --duration 10 --in-flight 4
  dialtone bench wss://echo.example/ws --insecure --no-deflate --text

After the run, stdout has three lines: how many echoes came back in how long
(every one compared with what was sent), messages and MiB of payload per
second, and the latency percentiles p50, p90, p99 and the maximum, in ms, from
sending a message to its echo's arrival. A progress bar is drawn on stderr when
it is a terminal.

The exit status is 0 when every echo matched, 1 when one did not (no numbers are
printed then), and as for `dialtone dial` when dialing fails or a connection ends
early.

",
    exit::exit_table!()
);

#[derive(clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct BenchArgs {
    /// The ws:// or wss:// URL of an echo server.
    url: String,
    /// Connections to open.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Payload bytes per message.
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 1024)]
    size: usize,
    /// Seconds to send for (then the echoes still in flight are awaited).
    #[arg(short = 'd', long, value_name = "SECS", default_value = "10", value_parser = crate::dial::seconds)]
    duration: Duration,
    /// Messages sent and not yet echoed, per connection.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    in_flight: u32,
    /// Send text messages (ASCII payloads) instead of binary.
    #[arg(long)]
    text: bool,
    /// Do not verify the server's certificate. For testing only.
    #[arg(long)]
    insecure: bool,
    /// Dial timeout in seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = crate::dial::seconds)]
    timeout: Duration,
    #[command(flatten)]
    deflate: DeflateArgs,
}

/// How long the echoes still in flight at the end may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Latencies are recorded in microseconds, up to a minute, to three
/// significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub(crate) async fn bench(args: BenchArgs) -> Result<ExitCode> {
    let mut dialer = Dialer::new()
        .config(config(&args.deflate))
        .timeout(args.timeout);
    if args.insecure {
        dialer = dialer.danger_accept_invalid_certs(true);
    }
    let dials = (0..args.connections).map(|_| dialer.dial(&args.url));
    let mut sockets = Vec::new();
    let mut deflate = false;
    for dialed in futures_util::future::join_all(dials).await {
        match dialed {
            Ok((ws, response)) => {
                deflate |= response.deflate.is_some();
                sockets.push(ws);
            }
            Err(e) => {
                let (status, said) = exit::for_dial_error(&e);
                eprintln!("dialtone: {said}");
                return Ok(exit::code(status));
            }
        }
    }

    let start = Instant::now();
    let plan = Arc::new(Plan {
        deadline: start + args.duration,
        size: args.size,
        text: args.text,
        in_flight: args.in_flight as usize,
    });
    let live = Arc::new(AtomicU64::new(0));
    let progress = progress_bar(args.duration, live.clone(), start);
    let runs: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(id, ws)| tokio::spawn(run_connection(id as u64, ws, plan.clone(), live.clone())))
        .collect();
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await?);
    }
    progress.finish_and_clear();

    let mut latency = histogram();
    let mut echoed = 0;
    let mut finished = start;
    for outcome in &outcomes {
        latency.add(&outcome.latency)?;
        echoed += outcome.echoed;
        finished = finished.max(outcome.finished);
    }
    let kind = if args.text { "text" } else { "binary" };
    println!(
        "dialtone bench {}: {} connection(s) × {} in flight, {}-byte {kind} messages, permessage-deflate {}",
        args.url,
        args.connections,
        args.in_flight,
        args.size,
        if deflate { "on" } else { "off" }
    );
    let mismatches: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.mismatch.as_ref())
        .collect();
    if let Some(first) = mismatches.first() {
        println!(
            "FAILED: {} connection(s) received an echo that differs from what was sent; first: {first}",
            mismatches.len()
        );
        return Ok(exit::code(exit::FAILURE));
    }
    if let Some((close, why)) = outcomes.iter().find_map(|o| o.ended_early.as_ref()) {
        println!("FAILED: a connection ended before its echoes were back: {why}");
        return Ok(exit::code(exit::for_close(*close).max(exit::FAILURE)));
    }
    if echoed == 0 {
        println!("FAILED: no echo came back");
        return Ok(exit::code(exit::FAILURE));
    }
    let secs = (finished - start).as_secs_f64();
    let mib = (echoed as f64 * args.size as f64) / secs / (1024.0 * 1024.0);
    println!("echoed      {echoed} messages in {secs:.3} s, every echo verified");
    println!(
        "throughput  {:.0} msg/s, {mib:.2} MiB/s each way",
        echoed as f64 / secs
    );
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency     p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        ms(0.50),
        ms(0.90),
        ms(0.99),
        latency.max() as f64 / 1000.0
    );
    Ok(exit::code(exit::SUCCESS))
}

/// What every connection does.
struct Plan {
    deadline: Instant,
    size: usize,
    text: bool,
    in_flight: usize,
}

impl Plan {
    /// Message `seq` of connection `id`: pseudo-random bytes (ASCII letters
    /// for text) that differ per connection, stamped with the sequence
    /// number in hex at the front so that a server answering an older or
    /// another message fails verification.
    fn payload(&self, base: &[u8], seq: u64) -> Bytes {
        let mut payload = base.to_vec();
        let stamp = format!("{seq:016x}");
        let n = payload.len().min(stamp.len());
        payload[..n].copy_from_slice(&stamp.as_bytes()[stamp.len() - n..]);
        Bytes::from(payload)
    }

    fn base(&self, id: u64) -> Vec<u8> {
        // xorshift64*: any fixed sequence will do, this one is short.
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (id + 1).wrapping_mul(0xff51_afd7_ed55_8ccd);
        (0..self.size)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let byte = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
                if self.text {
                    b'a' + byte % 26
                } else {
                    byte
                }
            })
            .collect()
    }

    fn message(&self, payload: Bytes) -> Message {
        if self.text {
            // ASCII by construction (`base` and the hex stamp).
            Message::text(String::from_utf8_lossy(&payload).into_owned())
        } else {
            Message::Binary(payload)
        }
    }
}

/// What one connection measured.
struct Outcome {
    latency: Histogram<u64>,
    echoed: u64,
    /// When its last echo came back.
    finished: Instant,
    /// The first echo that was not what was sent, described.
    mismatch: Option<String>,
    /// The connection ended with echoes outstanding: how, and why.
    ended_early: Option<(CloseCode, String)>,
}

/// Messages sent and not yet echoed, oldest first, and whether the writer
/// has stopped sending; one lock, so "done and drained" is seen once.
#[derive(Default)]
struct InFlight {
    sent: VecDeque<(Bytes, Instant)>,
    done_sending: bool,
}

/// The two halves' meeting point.
struct Shared {
    in_flight: Mutex<InFlight>,
    /// One permit per message that may still be sent; closed to stop the
    /// writer early.
    permits: Semaphore,
    /// The writer may close: everything is echoed, or the run failed.
    drained: Notify,
}

fn lock(m: &Mutex<InFlight>) -> std::sync::MutexGuard<'_, InFlight> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn run_connection(
    id: u64,
    ws: WebSocket<Transport>,
    plan: Arc<Plan>,
    live: Arc<AtomicU64>,
) -> Outcome {
    let shared = Arc::new(Shared {
        in_flight: Mutex::default(),
        permits: Semaphore::new(plan.in_flight),
        drained: Notify::new(),
    });
    let (reader, writer) = ws.split();
    let writer = tokio::spawn(send_loop(id, writer, plan.clone(), shared.clone()));
    let outcome = receive_loop(reader, &plan, &shared, &live).await;
    // However the reader ended, the writer must not wait for it any more.
    shared.permits.close();
    shared.drained.notify_one();
    let _ = writer.await;
    outcome
}

/// Sends while there are permits and time; then waits (bounded) for the
/// echoes still in flight and closes.
async fn send_loop(id: u64, mut writer: WsWriter<Transport>, plan: Arc<Plan>, shared: Arc<Shared>) {
    let base = plan.base(id);
    let mut seq = 0u64;
    while let Ok(permit) = shared.permits.acquire().await {
        if Instant::now() >= plan.deadline {
            break;
        }
        permit.forget();
        seq += 1;
        let payload = plan.payload(&base, seq);
        let message = plan.message(payload.clone());
        // Queued before sending: the echo may be back before `send` returns.
        lock(&shared.in_flight)
            .sent
            .push_back((payload, Instant::now()));
        if writer.send(message).await.is_err() {
            return; // the reader sees why
        }
    }
    let drained = {
        let mut in_flight = lock(&shared.in_flight);
        in_flight.done_sending = true;
        in_flight.sent.is_empty()
    };
    if !drained && !shared.permits.is_closed() {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, shared.drained.notified()).await;
    }
    let _ = writer.close(CloseCode::Normal, "bench done").await;
}

/// Verifies and times echoes until the connection ends.
async fn receive_loop(
    mut reader: WsReader<Transport>,
    plan: &Plan,
    shared: &Shared,
    live: &AtomicU64,
) -> Outcome {
    let mut outcome = Outcome {
        latency: histogram(),
        echoed: 0,
        finished: Instant::now(),
        mismatch: None,
        ended_early: None,
    };
    let mut error = None;
    let mut all_back = false;
    while let Some(msg) = reader.recv().await {
        let msg = match msg {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(frame)) => {
                // The writer may have closed without our noticing the end:
                // its last echo came back before it stopped sending.
                let in_flight = lock(&shared.in_flight);
                all_back |= in_flight.done_sending && in_flight.sent.is_empty();
                drop(in_flight);
                if !all_back && outcome.mismatch.is_none() {
                    let why = error.take().unwrap_or_else(|| format!("closed {frame}"));
                    outcome.ended_early = Some((frame.code, why));
                }
                continue;
            }
            Ok(msg) => msg,
            Err(e) => {
                error.get_or_insert_with(|| e.to_string());
                continue;
            }
        };
        if all_back || outcome.mismatch.is_some() {
            continue;
        }
        let arrived = Instant::now();
        let (expected, finished) = {
            let mut in_flight = lock(&shared.in_flight);
            let expected = in_flight.sent.pop_front();
            (
                expected,
                in_flight.done_sending && in_flight.sent.is_empty(),
            )
        };
        let Some((expected, sent_at)) = expected else {
            outcome.mismatch = Some("an echo of a message that was never sent".into());
            shared.permits.close();
            shared.drained.notify_one();
            continue;
        };
        if let Some(why) = differs(&msg, &expected, plan.text) {
            outcome.mismatch = Some(why);
            shared.permits.close();
            shared.drained.notify_one();
            continue;
        }
        let micros = (arrived - sent_at).as_micros();
        outcome
            .latency
            .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
        outcome.echoed += 1;
        outcome.finished = arrived;
        live.fetch_add(1, Ordering::Relaxed);
        shared.permits.add_permits(1);
        if finished {
            all_back = true;
            shared.drained.notify_one();
        }
    }
    outcome
}

/// Why an echo is not the message sent, if it is not.
fn differs(echo: &Message, sent: &[u8], text: bool) -> Option<String> {
    let kind_ok = matches!(
        (echo, text),
        (Message::Text(_), true) | (Message::Binary(_), false)
    );
    if !kind_ok {
        let kind = if text { "text" } else { "binary" };
        return Some(format!(
            "a {kind} message came back as {}",
            crate::describe(echo)
        ));
    }
    let got = echo.as_payload();
    if got.len() != sent.len() {
        return Some(format!(
            "{} bytes came back for {} sent",
            got.len(),
            sent.len()
        ));
    }
    let at = got.iter().zip(sent).position(|(a, b)| a != b)?;
    Some(format!(
        "byte {at} of a {}-byte message came back as {:#04x}, sent as {:#04x}",
        sent.len(),
        got[at],
        sent[at]
    ))
}

/// A bar over the run's duration with the echo count and rate, on stderr
/// when it is a terminal (nothing otherwise, so logs stay clean).
fn progress_bar(duration: Duration, live: Arc<AtomicU64>, start: Instant) -> ProgressBar {
    let total = duration.as_millis() as u64;
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template("{bar:30.cyan/blue} {elapsed:>4} {msg}") {
        bar.set_style(style);
    }
    let ticking = bar.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        while !ticking.is_finished() {
            every.tick().await;
            let elapsed = start.elapsed();
            let echoed = live.load(Ordering::Relaxed);
            let rate = echoed as f64 / elapsed.as_secs_f64().max(1e-3);
            ticking.set_position((elapsed.as_millis() as u64).min(total));
            ticking.set_message(format!("{echoed} echoes, {rate:.0} msg/s"));
        }
    });
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(size: usize, text: bool) -> Plan {
        Plan {
            deadline: Instant::now(),
            size,
            text,
            in_flight: 1,
        }
    }

    #[test]
    fn payloads_differ_per_message_and_per_connection() {
        let p = plan(64, false);
        let base = p.base(0);
        assert_ne!(p.payload(&base, 1), p.payload(&base, 2));
        assert_ne!(p.payload(&p.base(0), 1), p.payload(&p.base(1), 1));
        assert_eq!(p.payload(&base, 1).len(), 64);
        // Tiny messages still carry the low digits of the sequence number.
        let tiny = plan(2, false);
        assert_ne!(
            tiny.payload(&tiny.base(0), 1),
            tiny.payload(&tiny.base(0), 2)
        );
    }

    #[test]
    fn text_payloads_are_ascii() {
        let p = plan(300, true);
        assert!(p.payload(&p.base(3), 12345).is_ascii());
    }

    #[test]
    fn an_echo_must_match_kind_length_and_bytes() {
        let sent = b"0001abcdef";
        assert_eq!(differs(&Message::binary(sent.to_vec()), sent, false), None);
        assert!(differs(&Message::text("0001abcdef"), sent, false).is_some());
        assert!(differs(&Message::binary(b"0001abcde".to_vec()), sent, false).is_some());
        assert!(differs(&Message::binary(b"0002abcdef".to_vec()), sent, false).is_some());
    }
}
