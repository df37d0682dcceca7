#!/usr/bin/env bash
# Runs every fuzz target of dialtone-proto for SECONDS each (default 30).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Prerequisites, installed here when missing: cargo-fuzz (`cargo install`),
# and a C++ compiler for libFuzzer, which libfuzzer-sys compiles from source
# with the `cc` crate (g++ or clang++; `apt-get install g++` as root).
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets it take the
# nightly-only flags cargo-fuzz passes (-Zsanitizer, -Cpasses).
#
# Environment: SANITIZER (address, the default; none is ~10x faster and is
# used when AddressSanitizer does not build), CARGO_TARGET_DIR (default
# fuzz/target), FUZZ_JOBS (build jobs, default 2).
#
# New inputs go to fuzz/work/<target>/ (ignored by git); corpus/<target>/
# holds only the committed seeds. A failing input is saved under
# fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds=${1:-30}
shift || true
all_targets=(connection_server connection_client client_response server_request extensions inflate)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${FUZZ_JOBS:-2}
sanitizer=${SANITIZER:-address}

if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 \
   && ! command -v clang++ >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing g++ (libFuzzer is C++)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
  else
    echo "fuzz/run.sh: a C++ compiler (g++ or clang++) is needed to build libFuzzer" >&2
    exit 1
  fi
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> cargo install cargo-fuzz"
  cargo install --locked cargo-fuzz@0.13.2
fi

echo "==> cargo fuzz build -s $sanitizer"
if ! cargo fuzz build -s "$sanitizer"; then
  if [ "$sanitizer" = none ]; then exit 1; fi
  echo "==> AddressSanitizer build failed; building without a sanitizer"
  sanitizer=none
  cargo fuzz build -s none
fi

passed=0
failed=0
failures=()
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  echo "==> fuzzing $t for ${seconds}s"
  log="work/$t.log"
  if cargo fuzz run -s "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    passed=$((passed + 1))
    grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec' "$log" || true
  else
    failed=$((failed + 1))
    failures+=("$t")
    echo "!! $t failed; the end of its log ($log):"
    tail -n 60 "$log"
  fi
done

echo
echo "fuzz: $passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then
  echo "failing targets: ${failures[*]} (inputs under fuzz/artifacts/)"
  exit 1
fi
