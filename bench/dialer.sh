#!/usr/bin/env bash
# Dialer benchmark: each library's *client* against one raw-TCP server
# (bench/src/bin/flood_server.rs, no WebSocket library). See docs/BENCHMARKS.md.
#
#   flood: the server floods pre-built binary messages of SIZE bytes; the
#          client (CONNS connections in one process, current_thread runtime)
#          receives N per connection and checks each; msgs/s over the whole
#          receive, and the client's CPU time (getrusage).
#   echo:  the server echoes; each connection keeps INFLIGHT messages in
#          flight for DURATION s after WARMUP s.
#
# The server runs pinned to SERVER_CPU, the client to CLIENT_CPU; for each
# point the libraries run in turn (A B C ... A B C ...), REPEATS times, each
# against a freshly started server; the median is kept.
#
# Environment (defaults in brackets):
#   MODES ["flood echo"]
#   FLOOD_CONNS ["1 10 100"]  ECHO_CONNS ["1 10 100"]
#   SIZES ["20 1024 16384 1048576"]  (sizes from BIG_SIZE [1048576] up run
#                       with at most BIG_MAX_CONNS [10] connections)
#   FLOOD_SECS [3]      each flood run receives about this long: N per
#                       connection is FLOOD_SECS x a rough rate for the size
#                       (20 B: 20 M/s, 1 KiB: 2 M/s, 16 KiB: 150 k/s,
#                       1 MiB: 3 k/s), divided by CONNS; N=... overrides
#   DURATION [3]  WARMUP [1]  INFLIGHT [1]   (echo)
#   REPEATS [3]
#   CLIENTS ["dialtone tungstenite fastwebsockets tokio_websockets sockudo"]
#   OUT [bench/results-dialer.md] (raw results beside it, .jsonl; servers'
#                       and clients' stderr in .log)
#   SERVER_CPU [0]  CLIENT_CPU [1]
#   ISOLATE [rt]        rt (as root): both SCHED_FIFO, with a SCHED_IDLE
#                       spinner on each core, as in run.sh; none: plain taskset
#   SKIP_BUILD=1        use binaries already built in $CARGO_TARGET_DIR/release
#   SMOKE=1             a ~1 s point per mode and client (OUT defaults to
#                       bench/results-dialer-smoke.md)
#
# Exits non-zero if any run failed (a client that receives wrongly fails).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

if [ -n "${SMOKE:-}" ]; then
  : "${FLOOD_CONNS:=10}" "${ECHO_CONNS:=10}" "${SIZES:=1024}" "${REPEATS:=1}"
  : "${FLOOD_SECS:=0.5}" "${DURATION:=1}" "${WARMUP:=0.3}"
  : "${OUT:=$here/results-dialer-smoke.md}"
fi
MODES=${MODES:-flood echo}
FLOOD_CONNS=${FLOOD_CONNS-1 10 100}
ECHO_CONNS=${ECHO_CONNS-1 10 100}
SIZES=${SIZES-20 1024 16384 1048576}
BIG_SIZE=${BIG_SIZE:-1048576}
BIG_MAX_CONNS=${BIG_MAX_CONNS:-10}
FLOOD_SECS=${FLOOD_SECS:-3}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
INFLIGHT=${INFLIGHT:-1}
REPEATS=${REPEATS:-3}
CLIENTS=${CLIENTS:-dialtone tungstenite fastwebsockets tokio_websockets sockudo}
OUT=${OUT:-$here/results-dialer.md}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RAW=${OUT%.md}.jsonl
LOG=${OUT%.md}.log
PORT=${PORT:-9381}

ISOLATE=${ISOLATE:-rt}
[ "$(id -u)" = 0 ] || ISOLATE=none
pin_server=(taskset -c "$SERVER_CPU")
pin_client=(taskset -c "$CLIENT_CPU")
if [ "$ISOLATE" = rt ]; then
  pin_server=(chrt -f 10 "${pin_server[@]}")
  pin_client=(chrt -f 10 "${pin_client[@]}")
fi

target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release
log() { printf '%s\n' "$*" >&2; }

if [ -z "${SKIP_BUILD:-}" ]; then
  log "==> cargo build --release -p dialtone-bench -j2"
  cargo build --release -p dialtone-bench -j2
fi
for b in flood_server $(for c in $CLIENTS; do echo "client_$c"; done); do
  [ -x "$bin/$b" ] || { log "missing $bin/$b (build it, or set CARGO_TARGET_DIR)"; exit 2; }
done

: >"$RAW"
: >"$LOG"

srv=
spinners=()
stop_server() {
  if [ -n "$srv" ]; then
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    srv=
  fi
}
cleanup() {
  stop_server
  for p in "${spinners[@]}"; do kill "$p" 2>/dev/null; done
  return 0
}
trap cleanup EXIT
if [ "$ISOLATE" = rt ]; then
  for cpu in "$SERVER_CPU" "$CLIENT_CPU"; do
    chrt -i 0 taskset -c "$cpu" bash -c 'while :; do :; done' &
    spinners+=($!)
  done
fi

# start_server MODE SIZE
start_server() {
  "${pin_server[@]}" "$bin/flood_server" "--$1" -s "$2" "127.0.0.1:$PORT" 2>>"$LOG" &
  srv=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "flood_server did not start listening on port $PORT"
  return 1
}

size_label() {
  if [ "$1" -ge 1048576 ] && [ $(($1 % 1048576)) -eq 0 ]; then echo "$(($1 / 1048576)) MiB"
  elif [ "$1" -ge 1024 ] && [ $(($1 % 1024)) -eq 0 ]; then echo "$(($1 / 1024)) KiB"
  else echo "$1 B"; fi
}
json_field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }

# flood_n SIZE CONNS: messages per connection for a run of about FLOOD_SECS.
flood_n() {
  if [ -n "${N:-}" ]; then echo "$N"; return; fi
  local rate
  if [ "$1" -le 64 ]; then rate=20000000
  elif [ "$1" -le 4096 ]; then rate=2000000
  elif [ "$1" -le 65536 ]; then rate=150000
  else rate=3000; fi
  awk -v s="$FLOOD_SECS" -v r="$rate" -v c="$2" 'BEGIN { n = int(s * r / c); print (n < 10 ? 10 : n) }'
}

declare -A runs   # "mode client conns size" -> lines "msgs_per_s client_cpu cpu_ns_per_msg"
failures=0

# one_run MODE CLIENT CONNS SIZE
one_run() {
  local mode=$1 client=$2 conns=$3 size=$4 out result how
  if [ "$mode" = flood ]; then how=(--flood "$(flood_n "$size" "$conns")")
  else how=(--echo "$DURATION" -w "$WARMUP" -k "$INFLIGHT"); fi
  start_server "$mode" "$size"
  if out=$("${pin_client[@]}" timeout 300 "$bin/client_$client" "${how[@]}" -c "$conns" -s "$size" \
      "127.0.0.1:$PORT" 2>>"$LOG"); then
    stop_server
    result=$(grep '^RESULT ' <<<"$out" | sed 's/^RESULT //')
    grep -v '^RESULT ' <<<"$out" >&2
    echo "$result" >>"$RAW"
    runs["$mode $client $conns $size"]+="$(json_field "$result" msgs_per_s) $(json_field "$result" client_cpu) $(json_field "$result" cpu_ns_per_msg)"$'\n'
  else
    stop_server
    log "FAILED: $client, $mode, $conns conns, $size B: $(tail -n 1 "$LOG")"
    echo "{\"label\":\"$client\",\"mode\":\"$mode\",\"conns\":$conns,\"size\":$size,\"failed\":true}" >>"$RAW"
    runs["$mode $client $conns $size"]+="fail"$'\n'
    failures=$((failures + 1))
  fi
}

median() {
  local lines=${runs["$1 $2 $3 $4"]:-}
  if grep -q fail <<<"$lines"; then echo fail; return; fi
  grep . <<<"$lines" | sort -g | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}

points=()
for mode in $MODES; do
  if [ "$mode" = flood ]; then cs=$FLOOD_CONNS; else cs=$ECHO_CONNS; fi
  for c in $cs; do
    for s in $SIZES; do
      if [ "$s" -ge "$BIG_SIZE" ] && [ "$c" -gt "$BIG_MAX_CONNS" ]; then continue; fi
      points+=("$mode $c $s")
    done
  done
done

start=$(date +%s)
log "==> dialer: ${#points[@]} points x $(wc -w <<<"$CLIENTS") clients x $REPEATS repeats"
for p in "${points[@]}"; do
  read -r mode c s <<<"$p"
  for r in $(seq "$REPEATS"); do
    for client in $CLIENTS; do
      log "--- $client: $mode, $c conns, $(size_label "$s"), run $r/$REPEATS"
      one_run "$mode" "$client" "$c" "$s"
    done
  done
done
elapsed=$(($(date +%s) - start))

rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "(unknown revision)")
if [ -n "$(git -C "$root" status --porcelain -- crates bench 2>/dev/null)" ]; then rev+=" with uncommitted changes"; fi
fmt_int() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

table() {
  local mode=$1 header rule p m c s row base base_rate rate ccpu ns cell
  header="| conns × size |"
  rule="|---|"
  for client in $CLIENTS; do header+=" $client msgs/s |"; rule+="---:|"; done
  header+=" CPU ns/msg ($(tr ' ' '/' <<<"$CLIENTS")) |"
  rule+="---|"
  echo "$header"
  echo "$rule"
  for p in "${points[@]}"; do
    read -r m c s <<<"$p"
    [ "$m" = "$mode" ] || continue
    row="| $c × $(size_label "$s") |"
    base=$(median "$mode" dialtone "$c" "$s")
    base_rate=${base%% *}
    local cpus=()
    for client in $CLIENTS; do
      r=$(median "$mode" "$client" "$c" "$s")
      if [ "$r" = fail ] || [ -z "$r" ]; then row+=" fail |"; cpus+=("–"); continue; fi
      read -r rate ccpu ns <<<"$r"
      cell=$(fmt_int "$rate")
      if [ "$client" != dialtone ] && [ -n "$base_rate" ] && [ "$base" != fail ]; then
        cell+=" ($(awk -v a="$rate" -v b="$base_rate" 'BEGIN { printf "%.2f", a / b }')×)"
      fi
      row+=" $cell |"
      cpus+=("$(fmt_int "$ns")")
    done
    row+=" $(IFS=/; echo "${cpus[*]}") |"
    echo "$row"
  done
}

{
  echo "# dialtone dialer benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); dialtone $rev; $(awk -F: '/model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo), $(nproc) cores; Linux $(uname -r); $(rustc --version 2>/dev/null || echo rustc)."
  if [ "$ISOLATE" = rt ]; then iso="both SCHED_FIFO, with a SCHED_IDLE spinner on each core"; else iso="normal priority"; fi
  echo "flood_server on CPU $SERVER_CPU, the client on CPU $CLIENT_CPU, $iso; median of $REPEATS run(s) per point; binary messages; each client one process, one current_thread runtime. Run took ${elapsed} s."
  echo "A ratio is the client's msgs/s divided by dialtone's (above 1: the peer's client is faster). CPU ns/msg: the client process's CPU time (user + system, getrusage) per message."
  for mode in $MODES; do
    echo
    if [ "$mode" = flood ]; then
      echo "Flood: the server writes pre-built messages as fast as the client reads; each connection receives about ${FLOOD_SECS} s worth (N per connection: see the .jsonl)."
    else
      echo "Echo: $INFLIGHT message(s) in flight per connection, ${WARMUP} s warm-up + ${DURATION} s measured."
    fi
    echo
    table "$mode"
  done
} | tee "$OUT"
log "==> wrote $OUT (raw results: $RAW, stderr: $LOG)"
if [ "$failures" -gt 0 ]; then
  log "$failures run(s) FAILED"
  exit 1
fi
