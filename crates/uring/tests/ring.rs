//! The ring over loopback TCP: accept, multishot receive into the buffer
//! ring, sends that hand their buffers back, cancellation. Skips, saying
//! so, where the kernel has no io_uring.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use dialtone_uring::{is_canceled, Completion, Ring};

fn ring() -> Option<Ring> {
    match Ring::new(64, 8, 1024) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("SKIP: io_uring is not available here: {e}");
            None
        }
    }
}

/// Waits for completions until `f` has seen what it wants (true).
fn until(ring: &mut Ring, mut f: impl FnMut(&mut Ring, Completion) -> bool) {
    for _ in 0..500 {
        ring.submit_and_wait(Some(Duration::from_millis(20)))
            .unwrap();
        while let Some(c) = ring.next_completion() {
            if f(ring, c) {
                return;
            }
        }
    }
    panic!("no such completion within 10 s");
}

#[test]
fn accepts_receives_into_the_buffer_ring_and_sends_with_the_buffer_back() {
    let Some(mut ring) = ring() else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ring.accept_multi(&listener, 7).unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mut server = None;
    until(&mut ring, |_, c| match c {
        Completion::Accepted { tag, result, .. } => {
            assert_eq!(tag, 7);
            server = Some(result.unwrap());
            true
        }
        other => panic!("{other:?}"),
    });
    let server = server.unwrap();
    ring.recv_multi(server.as_raw_fd(), 42).unwrap();
    // More than the ring's 8 buffers of 1 KiB: they must come back to be
    // used again (or the receive ends with ENOBUFS and is armed again).
    let data: Vec<u8> = (0..32 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    client.write_all(&data).unwrap();
    let mut got = Vec::new();
    until(&mut ring, |ring, c| match c {
        Completion::Received { tag, result, more } => {
            assert_eq!(tag, 42);
            match result {
                Ok(n) => {
                    assert_eq!(n, ring.received().len());
                    got.extend_from_slice(ring.received());
                }
                Err(e) if dialtone_uring::is_out_of_buffers(&e) => {}
                Err(e) => panic!("{e}"),
            }
            if !more {
                ring.recv_multi(server.as_raw_fd(), 42).unwrap();
            }
            got.len() >= data.len()
        }
        other => panic!("{other:?}"),
    });
    assert!(got == data, "received bytes differ");
    ring.send(server.as_raw_fd(), 43, b"xxhello".to_vec(), 2)
        .unwrap();
    until(&mut ring, |_, c| match c {
        Completion::Sent {
            tag,
            result,
            buf,
            offset,
        } => {
            assert_eq!((tag, offset, buf.as_slice()), (43, 2, &b"xxhello"[..]));
            assert_eq!(result.unwrap(), 5);
            true
        }
        Completion::Received { .. } => false,
        other => panic!("{other:?}"),
    });
    let mut hello = [0u8; 5];
    client.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    // Cancelling the receive ends it.
    ring.cancel_fd(server.as_raw_fd()).unwrap();
    until(&mut ring, |_, c| match c {
        Completion::Received {
            result: Err(e),
            more: false,
            ..
        } => {
            assert!(is_canceled(&e), "{e}");
            true
        }
        other => panic!("{other:?}"),
    });
}
