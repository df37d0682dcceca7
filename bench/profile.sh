#!/usr/bin/env bash
# Profiles one echo server under load_test. See docs/BENCHMARKS.md.
#
#   bash bench/profile.sh callgrind PEER CONNS SIZE   # user-space instructions per echo
#   bash bench/profile.sh perf PEER CONNS SIZE        # where the server's CPU time goes
#
# PEER: dialtone, dialtone_uring, tungstenite, fastwebsockets, tokio_websockets, sockudo. SIZE takes
# K/M suffixes. Needs valgrind (callgrind_control, callgrind_annotate) or perf
# (Debian: linux-perf); uses the release binaries in $CARGO_TARGET_DIR (or
# target/), which `bash bench/run.sh` or `cargo build --release -p
# dialtone-bench` builds. Output files go to $PROFILE_DIR (default /tmp).
set -euo pipefail

mode=${1:?usage: profile.sh callgrind|perf PEER CONNS SIZE}
peer=${2:?peer}
conns=${3:-10}
size=${4:-16k}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${CARGO_TARGET_DIR:-$(dirname "$here")/target}/release
dir=${PROFILE_DIR:-/tmp}
port=9190
out=$dir/$mode.$peer.$conns.$size

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

case $mode in
  callgrind)
    rm -f "$out".*
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
      "$bin/echo_$peer" "127.0.0.1:$port" 2>/dev/null &
    srv=$!
    pids+=("$srv")
    sleep 1.5
    taskset -c 1 "$bin/load_test" -c "$conns" -s "$size" -d 4 -w 2 "127.0.0.1:$port" \
      >"$out.result" 2>/dev/null &
    lt=$!
    sleep 2 # the warm-up: count only the measured window
    callgrind_control -z "$srv" >/dev/null
    wait "$lt"
    callgrind_control -d "$srv" >/dev/null
    sleep 1
    kill "$srv"
    wait "$srv" 2>/dev/null || true
    dump=$(ls "$out".*.1)
    msgs=$(sed -n 's/.*"msgs":\([0-9]*\).*/\1/p' "$out.result")
    ir=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    echo "$peer, $conns conns, $size: $msgs echoes, $ir instructions, $((ir / msgs)) per echo"
    echo "profile: $dump"
    echo "  callgrind_annotate --inclusive=no --threshold=100 $dump | less"
    echo "  callgrind_annotate --tree=caller $dump | less    # who calls memcpy, realloc, ..."
    ;;
  perf)
    # Same setting as run.sh: both processes SCHED_FIFO, idle spinners, and
    # perf above them so that it gets to read its buffers.
    for cpu in 0 1; do
      chrt -i 0 taskset -c "$cpu" bash -c 'while :; do :; done' &
      pids+=($!)
    done
    chrt -f 10 taskset -c 0 "$bin/echo_$peer" "127.0.0.1:$port" &
    srv=$!
    pids+=("$srv")
    sleep 0.3
    chrt -f 10 taskset -c 1 "$bin/load_test" -c "$conns" -s "$size" -d 5 -w 1 \
      --watch-pid "$srv" "127.0.0.1:$port" 2>/dev/null | head -n 1 &
    lt=$!
    sleep 2
    # Hardware counters may be missing in a VM: sample the CPU clock.
    chrt -f 20 perf record -e cpu-clock -F 2999 --call-graph dwarf,8192 -p "$srv" \
      -o "$out.data" -- sleep 3 2>&1 | grep -v '^\[' || true
    wait "$lt" || true
    perf report -i "$out.data" --no-children --sort dso 2>/dev/null | grep '%' | head -n 4
    perf report -i "$out.data" --no-children --sort sym -g none 2>/dev/null |
      grep '%' | grep -v '^#' | head -n 25
    echo "profile: $out.data  (perf report -i $out.data --no-children)"
    ;;
  *)
    echo "unknown mode $mode (callgrind or perf)" >&2
    exit 2
    ;;
esac
