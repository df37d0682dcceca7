#!/usr/bin/env bash
# Compression benchmark: echo with permessage-deflate negotiated, for every
# server that has it, driven by load_test --deflate (raw TCP, no WebSocket
# library): msgs/s, bytes on the wire per message, and the server's memory
# per idle deflate connection. See docs/BENCHMARKS.md.
#
# Servers (SERVERS):
#   dialtone    `dialtone serve ADDR --echo` (its default server policy is
#               Deflate::server_default(): 12-bit windows both ways)
#   sockudo     bench/src/bin/echo_sockudo_deflate.rs (sockudo-ws 3.1,
#               DeflateConfig::default(): 15-bit windows)
#   ws          Node `ws` 8, bench/deflate/echo_ws.js (perMessageDeflate: true)
#   websockets  Python `websockets` 17.4 at its defaults,
#               bench/deflate/echo_websockets.py
# Node and the venv come from the test environment: $DIALTONE_TEST_ENV, else
# target/test-env (`cargo xtask provision` makes it).
#
# The load generator offers `permessage-deflate; client_no_context_takeover;
# client_max_window_bits` (OFFER=... to change it), sends pre-compressed
# JSON market-data messages of SIZE bytes (a pool of 64 distinct ones) and
# inflates and checks every echo.
#
# Environment (defaults in brackets):
#   CONNS ["1 100"]  SIZES ["256 1024 16384"]  INFLIGHT [1]
#   DURATION [3]  WARMUP [1]  REPEATS [3]   (median kept; CONNS="" skips)
#   IDLE_CONNS [10000]  (0 skips the memory measurement)  MEM_SIZE [1024]:
#                       the size of the one message each connection sends
#   SERVERS ["dialtone sockudo ws websockets"]
#   OUT [bench/results-compression.md] (raw results .jsonl and stderr .log beside it)
#   SERVER_CPU [0]  CLIENT_CPU [1]  ISOLATE [rt] (as run.sh)  SKIP_BUILD=1
#   SMOKE=1             one short point per server and a 200-connection memory check
#
# Exits non-zero if any run failed (a server that echoes wrongly fails).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

if [ -n "${SMOKE:-}" ]; then
  : "${CONNS:=10}" "${SIZES:=1024}" "${REPEATS:=1}" "${DURATION:=1}" "${WARMUP:=0.3}"
  : "${IDLE_CONNS:=200}" "${OUT:=$here/results-compression-smoke.md}"
fi
CONNS=${CONNS-1 100}
SIZES=${SIZES-256 1024 16384}
INFLIGHT=${INFLIGHT:-1}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
MEM_SIZE=${MEM_SIZE:-1024}
SERVERS=${SERVERS:-dialtone sockudo ws websockets}
OUT=${OUT:-$here/results-compression.md}
OFFER=${OFFER:-}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RAW=${OUT%.md}.jsonl
LOG=${OUT%.md}.log
PORT=${PORT:-9391}
testenv=${DIALTONE_TEST_ENV:-$root/target/test-env}

ISOLATE=${ISOLATE:-rt}
[ "$(id -u)" = 0 ] || ISOLATE=none
pin_server=(taskset -c "$SERVER_CPU")
pin_client=(taskset -c "$CLIENT_CPU")
if [ "$ISOLATE" = rt ]; then
  pin_server=(chrt -f 10 "${pin_server[@]}")
  pin_client=(chrt -f 10 "${pin_client[@]}")
fi
offer=(--deflate)
[ -n "$OFFER" ] && offer=(--deflate-offer "$OFFER")

target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release
log() { printf '%s\n' "$*" >&2; }

if [ -z "${SKIP_BUILD:-}" ]; then
  log "==> cargo build --release -p dialtone-bench -p dialtone-cli -j2"
  cargo build --release -p dialtone-bench -p dialtone-cli -j2
fi
for b in load_test dialtone echo_sockudo_deflate; do
  [ -x "$bin/$b" ] || { log "missing $bin/$b (build it, or set CARGO_TARGET_DIR)"; exit 2; }
done
for s in $SERVERS; do
  case $s in
    ws) [ -d "$testenv/node/node_modules/ws" ] && command -v node >/dev/null ||
          { log "missing Node or $testenv/node/node_modules/ws: run 'cargo xtask provision' (or set DIALTONE_TEST_ENV)"; exit 2; } ;;
    websockets) [ -x "$testenv/venv/bin/python" ] ||
          { log "missing $testenv/venv (Python websockets): run 'cargo xtask provision' (or set DIALTONE_TEST_ENV)"; exit 2; } ;;
  esac
done

want_fds=$((IDLE_CONNS + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
  ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
  log "warning: ulimit -n is $(ulimit -n); lowering IDLE_CONNS to fit"
  IDLE_CONNS=$(($(ulimit -n) - 1024))
fi

: >"$RAW"
: >"$LOG"

srv=
lt=
spinners=()
stop_server() {
  if [ -n "$srv" ]; then
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    srv=
  fi
}
cleanup() {
  [ -n "$lt" ] && kill "$lt" 2>/dev/null
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

# start_server NAME: starts it pinned (its pid is the server's own: every
# wrapper execs) and waits until it listens.
start_server() {
  local a=127.0.0.1:$PORT
  case $1 in
    dialtone) "${pin_server[@]}" "$bin/dialtone" serve "$a" --echo 2>>"$LOG" & ;;
    sockudo) "${pin_server[@]}" "$bin/echo_sockudo_deflate" "$a" 2>>"$LOG" & ;;
    ws) NODE_PATH=$testenv/node/node_modules "${pin_server[@]}" node "$here/deflate/echo_ws.js" "$a" 2>>"$LOG" & ;;
    websockets) "${pin_server[@]}" "$testenv/venv/bin/python" "$here/deflate/echo_websockets.py" "$a" 2>>"$LOG" & ;;
    *) log "unknown server $1"; return 1 ;;
  esac
  srv=$!
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "$1 did not start listening on port $PORT"
  return 1
}

size_label() {
  if [ "$1" -ge 1048576 ] && [ $(($1 % 1048576)) -eq 0 ]; then echo "$(($1 / 1048576)) MiB"
  elif [ "$1" -ge 1024 ] && [ $(($1 % 1024)) -eq 0 ]; then echo "$(($1 / 1024)) KiB"
  else echo "$1 B"; fi
}
json_field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }
fmt_int() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

declare -A runs agreed_of   # "server conns size" -> lines "msgs_per_s up down server_cpu"
failures=0

one_run() {
  local s=$1 c=$2 size=$3 out result
  start_server "$s"
  if out=$("${pin_client[@]}" "$bin/load_test" "${offer[@]}" -c "$c" -s "$size" -k "$INFLIGHT" \
      -d "$DURATION" -w "$WARMUP" --label "$s" --watch-pid "$srv" "127.0.0.1:$PORT" 2>>"$LOG"); then
    stop_server
    result=$(grep '^RESULT ' <<<"$out" | sed 's/^RESULT //')
    grep -v '^RESULT ' <<<"$out" >&2
    echo "$result" >>"$RAW"
    agreed_of[$s]=$(json_field "$result" deflate)
    runs["$s $c $size"]+="$(json_field "$result" msgs_per_s) $(json_field "$result" wire_up_per_msg) $(json_field "$result" wire_down_per_msg) $(json_field "$result" server_cpu)"$'\n'
  else
    stop_server
    log "FAILED: $s, $c conns, $size B: $(tail -n 1 "$LOG")"
    echo "{\"label\":\"$s\",\"conns\":$c,\"size\":$size,\"failed\":true}" >>"$RAW"
    runs["$s $c $size"]+="fail"$'\n'
    failures=$((failures + 1))
  fi
}

median() {
  local lines=${runs["$1 $2 $3"]:-}
  if [ -z "$lines" ] || grep -q fail <<<"$lines"; then echo fail; return; fi
  grep . <<<"$lines" | sort -g | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}

points=()
for c in $CONNS; do for s in $SIZES; do points+=("$c $s"); done; done

start=$(date +%s)
[ "${#points[@]}" -gt 0 ] && log "==> compression: ${#points[@]} points x $(wc -w <<<"$SERVERS") servers x $REPEATS repeats"
for p in "${points[@]}"; do
  read -r c s <<<"$p"
  for r in $(seq "$REPEATS"); do
    for srvname in $SERVERS; do
      log "--- $srvname: $c conns, $(size_label "$s") JSON, run $r/$REPEATS"
      one_run "$srvname" "$c" "$s"
    done
  done
done

declare -A rss
measure_rss() {
  local s=$1 fifo tmp r0 r1 r2 ok=1
  fifo=$(mktemp -u) && mkfifo "$fifo"
  tmp=$(mktemp)
  start_server "$s"
  sleep 0.5
  r0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$srv/status")
  "${pin_client[@]}" "$bin/load_test" "${offer[@]}" --idle -c "$IDLE_CONNS" -s "$MEM_SIZE" "127.0.0.1:$PORT" \
    <"$fifo" >"$tmp" 2>>"$LOG" &
  lt=$!
  exec 3>"$fifo"
  wait_for() {
    for _ in $(seq 1800); do
      grep -q "^READY $1" "$tmp" && return 0
      kill -0 "$lt" 2>/dev/null || return 1
      sleep 0.1
    done
    return 1
  }
  if wait_for handshake; then
    sleep 1
    r1=$(awk '/^VmRSS:/ { print $2 }' "/proc/$srv/status")
    echo go >&3
    if wait_for echo; then
      sleep 1
      r2=$(awk '/^VmRSS:/ { print $2 }' "/proc/$srv/status")
    else ok=; fi
  else ok=; fi
  exec 3>&-
  wait "$lt" || ok=
  lt=
  stop_server
  rm -f "$fifo" "$tmp"
  if [ -n "$ok" ]; then
    rss[$s]="$r0 $r1 $r2"
    echo "{\"label\":\"$s\",\"idle_conns\":$IDLE_CONNS,\"deflate\":true,\"size\":$MEM_SIZE,\"rss_kib_start\":$r0,\"rss_kib_handshake\":$r1,\"rss_kib_message\":$r2}" >>"$RAW"
    log "    $s: RSS ${r0} KiB -> ${r1} KiB after handshakes -> ${r2} KiB after one compressed message each"
  else
    rss[$s]=fail
    failures=$((failures + 1))
    log "FAILED: memory measurement of $s: $(tail -n 1 "$LOG")"
  fi
}
if [ "$IDLE_CONNS" -gt 0 ]; then
  log "==> memory: $IDLE_CONNS idle deflate connections per server"
  for s in $SERVERS; do measure_rss "$s"; done
fi
elapsed=$(($(date +%s) - start))

rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "(unknown revision)")
if [ -n "$(git -C "$root" status --porcelain -- crates bench 2>/dev/null)" ]; then rev+=" with uncommitted changes"; fi
{
  echo "# dialtone compression benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); dialtone $rev; $(awk -F: '/model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo), $(nproc) cores; Linux $(uname -r); node $(node --version 2>/dev/null || echo '-'); $("$testenv/venv/bin/python" --version 2>/dev/null || echo python -)."
  if [ "$ISOLATE" = rt ]; then iso="both SCHED_FIFO, with a SCHED_IDLE spinner on each core"; else iso="normal priority"; fi
  echo "Server on CPU $SERVER_CPU, load_test --deflate on CPU $CLIENT_CPU, $iso; offer: ${OFFER:-permessage-deflate; client_no_context_takeover; client_max_window_bits}; JSON market-data messages (64 distinct), pre-compressed by the load generator (level 6, its own context each), every echo inflated and checked; ${WARMUP} s warm-up + ${DURATION} s, median of $REPEATS; $INFLIGHT in flight. Run took ${elapsed} s."
  echo
  echo "Negotiated:"
  echo
  for s in $SERVERS; do echo "- $s: \`${agreed_of[$s]:-(not measured)}\`"; done
  if [ "${#points[@]}" -gt 0 ]; then
    echo
    echo "Echoes per second (ratio to dialtone; above 1 the server is faster), and the bytes on the wire per echo from the server (frame headers included; the client's messages are the same for every server: see the .jsonl, wire_up_per_msg):"
    echo
    h="| conns × size |"; r="|---|"
    for s in $SERVERS; do h+=" $s msgs/s |"; r+="---:|"; done
    for s in $SERVERS; do h+=" $s B/echo |"; r+="---:|"; done
    h+=" client B/msg |"; r+="---:|"
    echo "$h"; echo "$r"
    for p in "${points[@]}"; do
      read -r c size <<<"$p"
      row="| $c × $(size_label "$size") |"
      base=$(median dialtone "$c" "$size"); base_rate=${base%% *}
      bytes=""; up=""
      for s in $SERVERS; do
        m=$(median "$s" "$c" "$size")
        if [ "$m" = fail ]; then row+=" fail |"; bytes+=" – |"; continue; fi
        read -r rate u d _ <<<"$m"
        cell=$(fmt_int "$rate")
        if [ "$s" != dialtone ] && [ "$base" != fail ]; then
          cell+=" ($(awk -v a="$rate" -v b="$base_rate" 'BEGIN { printf "%.2f", a / b }')×)"
        fi
        row+=" $cell |"
        bytes+=" $(printf '%.0f' "$d") |"
        up=$u
      done
      echo "$row$bytes ${up:+$(printf '%.0f' "$up")} |"
    done
  fi
  if [ "$IDLE_CONNS" -gt 0 ]; then
    echo
    echo "Memory (VmRSS of the server) with $IDLE_CONNS idle connections with permessage-deflate negotiated, in bytes per connection (growth over the server's RSS before them):"
    echo
    echo "| server | RSS before | after the handshakes | per conn, handshake only | after one $(size_label "$MEM_SIZE") compressed message each | per conn, after a message |"
    echo "|---|---:|---:|---:|---:|---:|"
    for s in $SERVERS; do
      v=${rss[$s]:-fail}
      if [ "$v" = fail ]; then echo "| $s | fail | | | | |"; continue; fi
      read -r r0 r1 r2 <<<"$v"
      echo "| $s | $r0 KiB | $r1 KiB | $(fmt_int $(((r1 - r0) * 1024 / IDLE_CONNS))) | $r2 KiB | $(fmt_int $(((r2 - r0) * 1024 / IDLE_CONNS))) |"
    done
  fi
} | tee "$OUT"
log "==> wrote $OUT (raw results: $RAW, servers' stderr: $LOG)"
if [ "$failures" -gt 0 ]; then
  log "$failures run(s) FAILED"
  exit 1
fi
