#![doc = include_str!("../README.md")]
//! # dialtone-uring
//!
//! One [`Ring`]: an io_uring instance with a provided-buffer ring for
//! receiving, and the buffers of the sends in flight. Everything the kernel
//! may read or write while an operation runs is owned here until that
//! operation's last completion has come back, which is what makes the API
//! safe: a send takes its buffer by value and hands it back with its
//! completion; a receive lands in a buffer of the ring, lent to the caller
//! until the next [`Ring::next_completion`].
//!
//! Operations carry a caller's tag (its low [`TAG_BITS`] bits); their
//! completions come back with it, in the kernel's order.
//!
//! Linux only (5.19 or later: buffer rings, multishot receive, the wait
//! timeout of `io_uring_enter`); elsewhere the crate is empty.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "linux")]
mod ring;

#[cfg(target_os = "linux")]
pub use ring::{is_canceled, is_out_of_buffers, Completion, Ring, TAG_BITS};
