//! Time and closing in the core, driven by a fake clock: every `Instant` is
//! one the test builds (`t0 + n seconds`), nothing sleeps. Keepalive pings
//! and their pong deadline, the idle timeout, the close timeout, and which
//! end shuts the transport down when (RFC 6455 §7.1.1).

use std::time::{Duration, Instant};

use dialtone_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use dialtone_proto::mask::apply_mask;
use dialtone_proto::{
    CloseCode, CloseFrame, Config, Connection, Error, Event, KeepaliveTimeout, Role, State,
    Timeouts,
};

const S: Duration = Duration::from_secs(1);

/// A frame as a client sends it (masked).
fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut h = FrameHeader::new(opcode, payload.len() as u64);
    h.mask = Some([1, 2, 3, 4]);
    let mut head = [0; MAX_HEADER_LEN];
    let n = h.encode(&mut head);
    let mut out = head[..n].to_vec();
    let mut body = payload.to_vec();
    apply_mask(&mut body, [1, 2, 3, 4]);
    out.extend(body);
    out
}

/// A frame as a server sends it (unmasked).
fn server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader::new(opcode, payload.len() as u64);
    let mut head = [0; MAX_HEADER_LEN];
    let n = h.encode(&mut head);
    let mut out = head[..n].to_vec();
    out.extend_from_slice(payload);
    out
}

fn with(role: Role, timeouts: Timeouts) -> Connection {
    Connection::new(role, Config::default().timeouts(timeouts))
}

/// The opcodes of everything queued, which is then taken as written.
fn written(conn: &mut Connection) -> Vec<(OpCode, Vec<u8>)> {
    let mut bytes = Vec::new();
    while let Some(chunk) = conn.transmit_chunk() {
        let chunk = chunk.to_vec();
        conn.advance_transmit(chunk.len());
        bytes.extend(chunk);
    }
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let (h, n) = FrameHeader::decode(rest).unwrap().unwrap();
        let end = n + h.payload_len as usize;
        let mut payload = rest[n..end].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key);
        }
        frames.push((h.opcode, payload));
        rest = &rest[end..];
    }
    frames
}

fn events(conn: &mut Connection) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = conn.next_event().unwrap() {
        out.push(e);
    }
    out
}

fn keepalive(interval: u32, deadline: u32) -> Timeouts {
    Timeouts::default().keepalive(interval * S, deadline * S)
}

#[test]
fn no_timer_runs_by_default_while_open() {
    let t0 = Instant::now();
    let mut s = with(Role::Server, Timeouts::default());
    s.handle_timeout(t0).unwrap();
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(t0 + 3600 * S).unwrap();
    assert_eq!(s.pending_output(), 0);
    assert_eq!(s.state(), State::Open);
}

#[test]
fn keepalive_sends_a_ping_every_interval_from_the_first_handed_time() {
    let t0 = Instant::now();
    let mut c = with(Role::Client, keepalive(10, 5));
    assert_eq!(
        c.poll_timeout(),
        None,
        "not started before a time is handed in"
    );
    c.handle_timeout(t0).unwrap();
    assert_eq!(c.poll_timeout(), Some(t0 + 10 * S));
    c.handle_timeout(t0 + 9 * S).unwrap();
    assert_eq!(c.pending_output(), 0, "not yet");
    c.handle_timeout(t0 + 10 * S).unwrap();
    assert_eq!(written(&mut c), [(OpCode::Ping, vec![])]);
    // The pong deadline runs now, before the next ping.
    assert_eq!(c.poll_timeout(), Some(t0 + 15 * S));
    // A pong (any bytes) stops it; the pings go on every interval.
    c.receive(&server_frame(OpCode::Pong, b""));
    assert_eq!(events(&mut c), [Event::Pong(Default::default())]);
    assert_eq!(c.poll_timeout(), Some(t0 + 20 * S));
    c.handle_timeout(t0 + 20 * S).unwrap();
    assert_eq!(written(&mut c), [(OpCode::Ping, vec![])]);
    assert_eq!(c.state(), State::Open);
}

#[test]
fn a_missed_pong_deadline_aborts_the_connection_and_reports_abruptly() {
    let t0 = Instant::now();
    let mut c = with(Role::Client, keepalive(10, 5));
    c.handle_timeout(t0).unwrap();
    c.handle_timeout(t0 + 10 * S).unwrap();
    written(&mut c);
    assert_eq!(c.handle_timeout(t0 + 14 * S), Ok(()));
    c.send_text("queued, never written").unwrap();
    assert_eq!(c.handle_timeout(t0 + 15 * S), Err(KeepaliveTimeout(5 * S)));
    assert!(c.is_aborted());
    assert_eq!(c.pending_output(), 0, "what was queued is dropped");
    assert_eq!(
        events(&mut c),
        [Event::Close(CloseFrame::new(CloseCode::Abruptly, ""))]
    );
    assert_eq!(c.close_received().unwrap().code, CloseCode::Abruptly);
    assert_eq!(
        c.close_sent(),
        None,
        "no closing handshake with a dead peer"
    );
    assert!(c.is_finished());
    assert!(!c.should_close_transport(), "given up, not shut down");
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.send_text("late"), Err(Error::Closed));
}

#[test]
fn any_bytes_from_the_peer_stop_the_pong_deadline() {
    // The pong may be stuck behind a long message: a message counts too.
    let t0 = Instant::now();
    let mut s = with(Role::Server, keepalive(10, 5));
    s.handle_timeout(t0).unwrap();
    s.handle_timeout(t0 + 10 * S).unwrap();
    written(&mut s);
    // Half a frame: bytes, but no event yet.
    let text = client_frame(OpCode::Text, b"a long message");
    s.read_buffer().extend_from_slice(&text[..6]);
    assert_eq!(s.handle_timeout(t0 + 15 * S), Ok(()));
    assert_eq!(s.state(), State::Open);
    assert_eq!(s.poll_timeout(), Some(t0 + 20 * S), "the next ping");
}

#[test]
fn idle_timeout_starts_closing_with_going_away() {
    let t0 = Instant::now();
    let mut s = with(Role::Server, Timeouts::default().idle(30 * S));
    s.handle_timeout(t0).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + 30 * S));
    // Bytes received count as activity at the next handed time.
    s.receive(&client_frame(OpCode::Text, b"hi"));
    assert_eq!(events(&mut s).len(), 1);
    s.handle_timeout(t0 + 20 * S).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + 50 * S));
    s.handle_timeout(t0 + 49 * S).unwrap();
    assert_eq!(s.state(), State::Open);
    s.handle_timeout(t0 + 50 * S).unwrap();
    assert_eq!(s.state(), State::Closing);
    let going_away = CloseFrame::new(CloseCode::GoingAway, "idle timeout");
    assert_eq!(s.close_sent(), Some(&going_away));
    assert_eq!(
        written(&mut s),
        [(OpCode::Close, going_away.to_payload().to_vec())]
    );
    // The close timeout takes over from the time it started.
    assert_eq!(s.poll_timeout(), Some(t0 + 52 * S));
}

#[test]
fn close_timeout_drops_a_peer_that_never_answers_our_close() {
    let t0 = Instant::now();
    let mut s = with(Role::Server, Timeouts::default());
    s.close(CloseFrame::new(CloseCode::Normal, "bye")).unwrap();
    written(&mut s);
    s.handle_timeout(t0).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + Timeouts::DEFAULT_CLOSE));
    s.handle_timeout(t0 + S).unwrap();
    assert!(!s.is_aborted());
    s.handle_timeout(t0 + 2 * S).unwrap();
    assert!(s.is_aborted());
    assert_eq!(
        events(&mut s),
        [Event::Close(CloseFrame::new(CloseCode::Abruptly, ""))]
    );
    assert!(s.is_finished());
    assert!(!s.should_close_transport());
}

#[test]
fn close_timeout_also_bounds_a_close_frame_the_peer_does_not_read() {
    let t0 = Instant::now();
    let mut s = with(Role::Server, Timeouts::default().close(S));
    s.send_binary(&[0; 100_000]).unwrap();
    s.close(CloseFrame::new(CloseCode::Normal, "")).unwrap();
    s.handle_timeout(t0).unwrap();
    assert!(
        s.pending_output() > 100_000,
        "nothing written: the peer reads nothing"
    );
    s.handle_timeout(t0 + S).unwrap();
    assert_eq!(s.pending_output(), 0);
    assert_eq!(s.transmit_chunk(), None);
    events(&mut s);
    assert!(s.is_finished());
}

#[test]
fn a_timer_never_fires_in_the_call_that_starts_it() {
    // With a zero close timeout the deadline is the starting time itself:
    // the next call acts on it, so the I/O layer always gets to see a
    // deadline before it passes.
    let t0 = Instant::now();
    let mut s = with(Role::Server, Timeouts::default().close(Duration::ZERO));
    s.close(CloseFrame::new(CloseCode::Normal, "")).unwrap();
    s.handle_timeout(t0).unwrap();
    assert!(!s.is_aborted());
    assert_eq!(s.poll_timeout(), Some(t0));
    s.handle_timeout(t0).unwrap();
    assert!(s.is_aborted());
}

#[test]
fn keepalive_and_idle_stop_once_a_close_frame_went_out() {
    let t0 = Instant::now();
    let mut s = with(Role::Server, keepalive(1, 1).idle(S).close(100 * S));
    s.handle_timeout(t0).unwrap();
    s.close(CloseFrame::new(CloseCode::Normal, "")).unwrap();
    written(&mut s);
    for i in 1..50 {
        s.handle_timeout(t0 + i * S).unwrap();
    }
    assert_eq!(s.pending_output(), 0, "no pings after our close");
    assert!(!s.is_aborted(), "only the close timeout ends it");
    assert_eq!(s.poll_timeout(), Some(t0 + 101 * S));
}

#[test]
fn a_zero_interval_or_idle_time_is_off() {
    let t0 = Instant::now();
    let off = Timeouts {
        keepalive: Some(dialtone_proto::Keepalive {
            interval: Duration::ZERO,
            pong_deadline: S,
        }),
        idle: Some(Duration::ZERO),
        ..Timeouts::default()
    };
    let mut s = with(Role::Server, off);
    s.handle_timeout(t0).unwrap();
    s.handle_timeout(t0 + S).unwrap();
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.pending_output(), 0);
    assert_eq!(
        Timeouts::default().keepalive(Duration::ZERO, S).keepalive,
        None
    );
}

#[test]
fn set_timeouts_restarts_the_timers_from_the_next_handed_time() {
    let t0 = Instant::now();
    let mut s = with(Role::Server, Timeouts::default());
    s.handle_timeout(t0).unwrap();
    s.set_timeouts(keepalive(10, 5));
    assert_eq!(s.config().timeouts, keepalive(10, 5));
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(t0 + 100 * S).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + 110 * S));
}

#[test]
fn a_server_shuts_the_transport_down_after_the_close_handshake_then_waits_for_the_end() {
    // RFC 6455 §7.1.1: the server closes TCP first.
    let t0 = Instant::now();
    let mut s = with(Role::Server, Timeouts::default());
    s.receive(&client_frame(OpCode::Close, &1000u16.to_be_bytes()));
    assert_eq!(events(&mut s).len(), 1);
    assert!(!s.should_close_transport(), "the answer is not written yet");
    assert_eq!(written(&mut s)[0].0, OpCode::Close);
    assert!(s.should_close_transport());
    assert!(!s.is_finished(), "it reads on until the client's end");
    s.handle_timeout(t0).unwrap();
    s.receive_eof();
    assert_eq!(events(&mut s), []);
    assert!(s.is_finished());
    assert!(s.should_close_transport());
}

#[test]
fn a_client_waits_for_the_servers_end_then_at_most_the_close_timeout() {
    let t0 = Instant::now();
    let mut c = with(Role::Client, Timeouts::default());
    c.close(CloseFrame::new(CloseCode::Normal, "")).unwrap();
    written(&mut c);
    c.receive(&server_frame(OpCode::Close, &1000u16.to_be_bytes()));
    assert_eq!(events(&mut c).len(), 1);
    assert_eq!(c.state(), State::Closed);
    c.handle_timeout(t0).unwrap();
    assert!(!c.should_close_transport(), "the server closes first");
    assert!(!c.is_finished());

    // The server's end comes: now the client shuts its side down too.
    let mut ended = c;
    ended.receive_eof();
    assert_eq!(events(&mut ended), []);
    assert!(ended.should_close_transport());
    assert!(ended.is_finished());

    // A server that never closes: the client gives up at the close timeout.
    let mut c = with(Role::Client, Timeouts::default());
    c.receive(&server_frame(OpCode::Close, &1000u16.to_be_bytes()));
    events(&mut c);
    written(&mut c);
    c.handle_timeout(t0).unwrap();
    c.handle_timeout(t0 + 2 * S).unwrap();
    assert!(c.is_aborted());
    assert_eq!(
        events(&mut c),
        [],
        "its close frame came: nothing more to report"
    );
    assert!(c.is_finished());
    assert!(!c.should_close_transport());
}

#[test]
fn a_failed_client_still_waits_for_the_server_to_close() {
    // §7.1.7: after failing the connection the client waits for the
    // server's end, within the close timeout.
    let t0 = Instant::now();
    let mut c = with(Role::Client, Timeouts::default());
    c.receive(&[0x83, 0x00]); // reserved opcode
    assert!(c.next_event().is_err());
    assert_eq!(written(&mut c)[0].0, OpCode::Close);
    assert!(!c.should_close_transport());
    c.handle_timeout(t0).unwrap();
    assert_eq!(c.poll_timeout(), Some(t0 + 2 * S));
    c.receive_eof();
    assert_eq!(c.next_event(), Ok(None), "the error was the last word");
    assert!(c.should_close_transport());
    assert!(c.is_finished());
}
