#!/usr/bin/env bash
# Benchmark driver: echo throughput of dialtone and its peers over loopback,
# and server memory per idle connection. See docs/BENCHMARKS.md.
#
# Each server runs pinned to one core (SERVER_CPU), the load generator to the
# other (CLIENT_CPU). For every point of the matrix the peers are run in turn
# (A B C D A B C D ...), REPEATS times, each run against a freshly started
# server; the median is kept.
#
# Environment (defaults in brackets):
#   DURATION [5]        measured seconds per run, after WARMUP [1] seconds
#   REPEATS [3]         runs per point and peer; the median is reported
#   CONNS ["1 10 100 1000"]   SIZES ["20 1024 16384 1048576"] (bytes; CONNS=""
#                       skips the throughput runs)
#   BIG_SIZE [1048576]  sizes from this one up run only with at most
#   BIG_MAX_CONNS [10]  connections
#   INFLIGHT [1]        messages in flight per connection
#   PEERS ["dialtone dialtone_uring tungstenite fastwebsockets tokio_websockets sockudo"]
#                       (dialtone_uring: the io_uring face, Linux only).
#                       Also: axum_dialtone (an axum app upgrading with
#                       dialtone::axum::WebSocketUpgrade), axum_tungstenite
#                       (axum's own WebSocketUpgrade), and either with the
#                       suffix _h2 (the same server, the load over HTTP/2:
#                       h2c, extended CONNECT, load_test --http2)
#   BASE [dialtone, else the first of PEERS]  the peer the others' ratios
#                       are taken against
#   IDLE_CONNS [10000]  connections for the memory measurement; 0 skips it
#   OUT [bench/results.md]  the Markdown report (raw results beside it, .jsonl)
#   SMOKE=1             one short point per peer and a small memory check,
#                       for CI (OUT defaults to bench/results-smoke.md)
#   SERVER_CPU [0]  CLIENT_CPU [1]
#   SKIP_BUILD=1        use binaries already built in $CARGO_TARGET_DIR/release
#   ISOLATE [rt]        rt (as root): the server and the load generator run
#                       SCHED_FIFO (chrt -f 10), and a SCHED_IDLE spinner on
#                       each of their cores keeps the cores from idling, so
#                       that neither other work on the machine nor the wake-up
#                       of a halted virtual CPU sets the pace; the noise check
#                       below is then off. none: plain taskset.
#   OTHER_MAX [0.10]    (ISOLATE=none) a run during which other processes used more than this
#                       many cores is run again (at most RETRIES [4] times),
#                       after waiting (up to QUIET_WAIT [120] s) for the
#                       machine to be quiet
#
# Exits non-zero if any run failed (a server that echoes wrongly fails).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

if [ -n "${SMOKE:-}" ]; then
  : "${DURATION:=1.5}" "${WARMUP:=0.5}" "${REPEATS:=1}"
  : "${CONNS:=10}" "${SIZES:=1024}" "${IDLE_CONNS:=200}"
  : "${OUT:=$here/results-smoke.md}" "${QUIET_WAIT:=0}" "${RETRIES:=0}"
fi
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
CONNS=${CONNS-1 10 100 1000}
SIZES=${SIZES-20 1024 16384 1048576}
BIG_SIZE=${BIG_SIZE:-1048576}
BIG_MAX_CONNS=${BIG_MAX_CONNS:-10}
INFLIGHT=${INFLIGHT:-1}
PEERS=${PEERS:-dialtone dialtone_uring tungstenite fastwebsockets tokio_websockets sockudo}
IDLE_CONNS=${IDLE_CONNS:-10000}
OUT=${OUT:-$here/results.md}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OTHER_MAX=${OTHER_MAX:-0.10}
RETRIES=${RETRIES:-4}
QUIET_WAIT=${QUIET_WAIT:-120}
RAW=${OUT%.md}.jsonl
LOG=${OUT%.md}.log

ISOLATE=${ISOLATE:-rt}
[ "$(id -u)" = 0 ] || ISOLATE=none
pin_server=(taskset -c "$SERVER_CPU")
pin_client=(taskset -c "$CLIENT_CPU")
if [ "$ISOLATE" = rt ]; then
  pin_server=(chrt -f 10 "${pin_server[@]}")
  pin_client=(chrt -f 10 "${pin_client[@]}")
  OTHER_MAX=1000 # the spinners count as other work
fi

target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release

log() { printf '%s\n' "$*" >&2; }

if [ -z "${SKIP_BUILD:-}" ]; then
  log "==> cargo build --release -p dialtone-bench -j2"
  cargo build --release -p dialtone-bench -j2
fi
# server_of PEER: the echo binary (a _h2 peer is its server, over HTTP/2).
server_of() { echo "echo_${1%_h2}"; }
# http_of PEER: load_test's flag for the HTTP version, if not 1.1.
http_of() { case $1 in *_h2) echo --http2 ;; esac; }
BASE=${BASE:-}
if [ -z "$BASE" ]; then
  case " $PEERS " in *" dialtone "*) BASE=dialtone ;; *) BASE=${PEERS%% *} ;; esac
fi
for b in load_test $(for p in $PEERS; do server_of "$p"; done); do
  [ -x "$bin/$b" ] || { log "missing $bin/$b (build it, or set CARGO_TARGET_DIR)"; exit 2; }
done

if ! command -v taskset >/dev/null 2>&1; then
  log "==> installing util-linux (taskset)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
fi
# The memory measurement holds IDLE_CONNS sockets in each process.
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

port_of() {
  case $1 in
    dialtone) echo 9301 ;;
    tungstenite) echo 9302 ;;
    fastwebsockets) echo 9303 ;;
    tokio_websockets) echo 9304 ;;
    dialtone_uring) echo 9305 ;;
    sockudo) echo 9306 ;;
    axum_dialtone) echo 9307 ;;
    axum_tungstenite) echo 9308 ;;
    axum_dialtone_h2) echo 9309 ;;
    axum_tungstenite_h2) echo 9310 ;;
    *) echo 9399 ;;
  esac
}

srv=
stop_server() {
  if [ -n "$srv" ]; then
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    srv=
  fi
}
lt=
spinners=()
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

# start_server PEER PORT: starts the server pinned and waits until it listens.
start_server() {
  "${pin_server[@]}" "$bin/$(server_of "$1")" "127.0.0.1:$2" 2>>"$LOG" &
  srv=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "$(server_of "$1") did not start listening on port $2"
  return 1
}

# machine_busy SECS: cores busy (user, nice, system) over SECS seconds.
machine_busy() {
  local a b
  a=$(awk '/^cpu / { print $2 + $3 + $4; exit }' /proc/stat)
  sleep "$1"
  b=$(awk '/^cpu / { print $2 + $3 + $4; exit }' /proc/stat)
  awk -v a="$a" -v b="$b" -v s="$1" 'BEGIN { printf "%.2f", (b - a) / 100 / s }'
}

# wait_quiet: waits (at most QUIET_WAIT s) until other work stops.
wait_quiet() {
  local t=0 busy
  [ "$ISOLATE" = rt ] && return 0
  while :; do
    busy=$(machine_busy 1)
    if awk -v b="$busy" -v m="$OTHER_MAX" 'BEGIN { exit !(b <= m) }'; then return 0; fi
    if [ "$t" -ge "$QUIET_WAIT" ]; then
      log "    machine still busy ($busy cores) after ${QUIET_WAIT} s; going on"
      return 0
    fi
    [ "$t" -eq 0 ] && log "    other processes are using $busy cores; waiting for quiet"
    sleep 4
    t=$((t + 5))
  done
}

size_label() {
  case $1 in
    *[!0-9]*) echo "$1" ;;
    *) if [ "$1" -ge 1048576 ] && [ $(($1 % 1048576)) -eq 0 ]; then echo "$(($1 / 1048576)) MiB"
       elif [ "$1" -ge 1024 ] && [ $(($1 % 1024)) -eq 0 ]; then echo "$(($1 / 1024)) KiB"
       else echo "$1 B"; fi ;;
  esac
}

# json_field LINE NAME
json_field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }

declare -A runs   # "peer conns size" -> lines "msgs_per_s client_cpu"
failures=0

# one_run PEER CONNS SIZE
one_run() {
  local peer=$1 conns=$2 size=$3 port out result other try
  port=$(port_of "$peer")
  for try in $(seq 0 "$RETRIES"); do
    start_server "$peer" "$port"
    # shellcheck disable=SC2046 # http_of says nothing or one word
    if out=$("${pin_client[@]}" "$bin/load_test" $(http_of "$peer") -c "$conns" -s "$size" -k "$INFLIGHT" \
        -d "$DURATION" -w "$WARMUP" --label "$peer" --watch-pid "$srv" "127.0.0.1:$port" 2>>"$LOG"); then
      stop_server
      result=$(grep '^RESULT ' <<<"$out" | sed 's/^RESULT //')
      grep -v '^RESULT ' <<<"$out" >&2
      other=$(json_field "$result" other_cpu)
      if [ "$try" -lt "$RETRIES" ] && awk -v o="${other:-0}" -v m="$OTHER_MAX" 'BEGIN { exit !(o > m) }'; then
        log "    other processes used $other cores during the run: running it again"
        echo "${result%\}},\"discarded\":true}" >>"$RAW"
        wait_quiet
        continue
      fi
      echo "$result" >>"$RAW"
      runs["$peer $conns $size"]+="$(json_field "$result" msgs_per_s) $(json_field "$result" client_cpu) ${other:-0}"$'\n'
      return 0
    fi
    stop_server
    log "FAILED: $peer, $conns conns, $size B: $(tail -n 1 "$LOG")"
    echo "{\"label\":\"$peer\",\"conns\":$conns,\"size\":$size,\"failed\":true}" >>"$RAW"
    runs["$peer $conns $size"]+="fail"$'\n'
    failures=$((failures + 1))
    return 0
  done
}

# median PEER CONNS SIZE -> "msgs_per_s client_cpu other_cpu" of the median
# run, or "fail"
median() {
  local lines=${runs["$1 $2 $3"]:-}
  if grep -q fail <<<"$lines"; then echo fail; return; fi
  grep . <<<"$lines" | sort -g | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}

# best PEER CONNS SIZE -> the same, of the fastest run
best() {
  local lines=${runs["$1 $2 $3"]:-}
  if grep -q fail <<<"$lines"; then echo fail; return; fi
  grep . <<<"$lines" | sort -g | tail -n 1
}

points=()
for c in $CONNS; do
  for s in $SIZES; do
    if [ "$s" -ge "$BIG_SIZE" ] && [ "$c" -gt "$BIG_MAX_CONNS" ]; then continue; fi
    points+=("$c $s")
  done
done

start=$(date +%s)
wait_quiet
[ "${#points[@]}" -gt 0 ] && log "==> throughput: ${#points[@]} points x $(wc -w <<<"$PEERS") peers x $REPEATS repeats, ${WARMUP}+${DURATION} s each"
for p in "${points[@]}"; do
  read -r c s <<<"$p"
  for r in $(seq "$REPEATS"); do
    for peer in $PEERS; do
      log "--- $peer: $c conns, $(size_label "$s"), run $r/$REPEATS"
      one_run "$peer" "$c" "$s"
    done
  done
done

# Memory per idle connection.
declare -A rss
measure_rss() {
  local peer=$1 port fifo tmp r0 r1 r2 ok=1
  port=$(port_of "$peer")
  fifo=$(mktemp -u) && mkfifo "$fifo"
  tmp=$(mktemp)
  start_server "$peer" "$port"
  sleep 0.3
  r0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$srv/status")
  # shellcheck disable=SC2046
  "${pin_client[@]}" "$bin/load_test" $(http_of "$peer") --idle -c "$IDLE_CONNS" -s 20 "127.0.0.1:$port" \
    <"$fifo" >"$tmp" 2>>"$LOG" &
  lt=$!
  exec 3>"$fifo"
  wait_for() {
    for _ in $(seq 1200); do
      grep -q "^READY $1" "$tmp" && return 0
      kill -0 "$lt" 2>/dev/null || return 1
      sleep 0.1
    done
    return 1
  }
  if wait_for handshake; then
    sleep 0.5
    r1=$(awk '/^VmRSS:/ { print $2 }' "/proc/$srv/status")
    echo go >&3
    if wait_for echo; then
      sleep 0.5
      r2=$(awk '/^VmRSS:/ { print $2 }' "/proc/$srv/status")
    else ok=; fi
  else ok=; fi
  exec 3>&-
  wait "$lt" || ok=
  lt=
  stop_server
  rm -f "$fifo" "$tmp"
  if [ -n "$ok" ]; then
    rss[$peer]="$r0 $r1 $r2"
    echo "{\"label\":\"$peer\",\"idle_conns\":$IDLE_CONNS,\"rss_kib_start\":$r0,\"rss_kib_handshake\":$r1,\"rss_kib_echo\":$r2}" >>"$RAW"
    log "    $peer: RSS ${r0} KiB -> ${r1} KiB after handshakes -> ${r2} KiB after one echo each"
  else
    rss[$peer]=fail
    failures=$((failures + 1))
    log "FAILED: memory measurement of $peer: $(tail -n 1 "$LOG")"
  fi
}
if [ "$IDLE_CONNS" -gt 0 ]; then
  log "==> memory: $IDLE_CONNS idle connections per server"
  for peer in $PEERS; do measure_rss "$peer"; done
fi
elapsed=$(($(date +%s) - start))

# ------------------------------------------------------------------ report
rev=${DIALTONE_REV:-}
if [ -z "$rev" ]; then
  rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "(unknown revision)")
  if [ -n "$(git -C "$root" status --porcelain -- crates 2>/dev/null)" ]; then rev+=" with uncommitted changes"; fi
fi
fmt_int() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
# table STAT: the throughput table, each point's run chosen by STAT
# (median or best)
table() {
  local stat=$1 p c s row base base_rate peer m rate ccpu other cell marked= noisy=
  header="| conns | size |"
  rule="|---:|---:|"
  for peer in $PEERS; do
    header+=" $peer msgs/s |"
    rule+="---:|"
  done
  header+=" $BASE MiB/s |"
  rule+="---:|"
  echo "$header"
  echo "$rule"
  for p in "${points[@]}"; do
    read -r c s <<<"$p"
    row="| $c | $(size_label "$s") |"
    base=$($stat "$BASE" "$c" "$s")
    base_rate=${base%% *}
    for peer in $PEERS; do
      m=$($stat "$peer" "$c" "$s")
      if [ "$m" = fail ] || [ -z "$m" ]; then row+=" fail |"; continue; fi
      read -r rate ccpu other <<<"$m"
      cell=$(fmt_int "$rate")
      if awk -v c="$ccpu" 'BEGIN { exit !(c >= 0.95) }'; then cell+="†"; marked=1; fi
      if awk -v o="${other:-0}" -v m="$OTHER_MAX" 'BEGIN { exit !(o > m) }'; then cell+="*"; noisy=1; fi
      if [ "$peer" != "$BASE" ] && [ -n "$base_rate" ] && [ "$base" != fail ]; then
        cell+=" ($(awk -v a="$rate" -v b="$base_rate" 'BEGIN { printf "%.2f", a / b }')×)"
      fi
      row+=" $cell |"
    done
    if [ -n "$base_rate" ] && [ "$base" != fail ]; then
      row+=" $(awk -v r="$base_rate" -v s="$s" 'BEGIN { printf "%.1f", r * s / 1048576 }') |"
    else row+=" – |"; fi
    echo "$row"
  done
  echo
  echo "A peer's ratio is its msgs/s divided by $BASE's: above 1 the peer is faster. MiB/s is payload echoed per second, one way."
  if [ -n "$marked" ]; then
    echo "† the load generator used ≥ 95 % of its core in the $stat run: the figure is a floor for that server, not its limit."
  fi
  if [ -n "$noisy" ]; then
    echo "\* other processes used more than $OTHER_MAX cores during the $stat run, even after $RETRIES retries: the figure is unreliable."
  fi
}

{
  echo "# dialtone echo benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); dialtone $rev; $(awk -F: '/model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo), $(nproc) cores; Linux $(uname -r); $(rustc --version 2>/dev/null || echo rustc)."
  if [ "$ISOLATE" = rt ]; then iso="both SCHED_FIFO, with a SCHED_IDLE spinner on each core"; else iso="normal priority"; fi
  echo "Server on CPU $SERVER_CPU, load generator on CPU $CLIENT_CPU, $iso; ${WARMUP} s warm-up + ${DURATION} s measured per run; median of $REPEATS run(s); $INFLIGHT message(s) in flight per connection; binary messages. Run took ${elapsed} s."
  echo
  if [ "${#points[@]}" -gt 0 ]; then
    table median
    if [ "$REPEATS" -ge 3 ]; then
      echo
      echo "The fastest of the $REPEATS runs of each server (runs are often bimodal, every server alike: the median may fall in either mode):"
      echo
      table best
    fi
  fi
  if [ "$IDLE_CONNS" -gt 0 ]; then
    echo
    echo "Memory (VmRSS of the server) with $IDLE_CONNS idle connections, in bytes per connection:"
    echo
    echo "| server | idle RSS | after handshakes | per conn, handshake only | after one 20 B echo each | per conn, after an echo |"
    echo "|---|---:|---:|---:|---:|---:|"
    for peer in $PEERS; do
      v=${rss[$peer]:-fail}
      if [ "$v" = fail ]; then echo "| $peer | fail | | | | |"; continue; fi
      read -r r0 r1 r2 <<<"$v"
      echo "| $peer | $r0 KiB | $r1 KiB | $(((r1 - r0) * 1024 / IDLE_CONNS)) | $r2 KiB | $(((r2 - r0) * 1024 / IDLE_CONNS)) |"
    done
  fi
} | tee "$OUT"
log "==> wrote $OUT (raw results: $RAW, servers' stderr: $LOG)"
if [ "$failures" -gt 0 ]; then
  log "$failures run(s) FAILED"
  exit 1
fi
