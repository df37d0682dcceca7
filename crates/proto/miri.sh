#!/usr/bin/env bash
# Runs the unit tests of the modules with `unsafe` code in dialtone-proto
# (mask, utf8) under Miri, twice: for the x86-64 baseline, and with AVX2
# enabled, where Miri reports AVX2 present, so that the paths chosen at run
# time for AVX2 (in mask.rs, and simdutf8's) run too. ~3 min.
#
# Needs the nightly toolchain with Miri:
#   rustup component add --toolchain nightly miri rust-src
# First run: `cargo +nightly miri setup` builds Miri's sysroot (~20 s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

run() {
  printf '\n==> miri: mask and utf8 tests%s\n' "${1:+ (RUSTFLAGS=$1)}"
  RUSTFLAGS="${1:-}" cargo +nightly miri test -p dialtone-proto --lib -- \
    --test-threads=1 mask:: utf8::
}

run ""
run "-C target-feature=+avx2"
