//! A server-side `Connection` fed arbitrary bytes (or frames built from the
//! input), in arbitrary pieces, with and without permessage-deflate. See
//! `dialtone_fuzz::run_connection` for the input layout and the invariants.
#![no_main]

use dialtone_proto::Role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dialtone_fuzz::run_connection(Role::Server, data));
