#!/usr/bin/env bash
# Real-browser tests: Debian's Chromium (headless), driven by playwright-core,
#   console.test.mjs  loads the console page of `dialtone serve --web --echo`
#                     and talks to it, then again over TLS (--tls-self-signed),
#                     where the page and its WebSocket go over HTTP/2 (RFC 8441);
#   cswsh.test.mjs    has a page of another origin (a server on 127.0.0.2)
#                     try a WebSocket to `dialtone serve --exec` on 127.0.0.1:
#                     refused by default, let in by --allow-origin.
# Installs chromium with apt-get if it is missing and playwright-core with
# `npm ci` (never a browser download). The server logs and the screenshot
# are kept in $TARGET/browser/. DIALTONE_BIN picks the binary under test
# (default: the release build, brought up to date first).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
out="$target/browser"
mkdir -p "$out"

if [[ ! -x /usr/bin/chromium ]]; then
  echo "installing chromium (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

# playwright-core 1.65 wants Node.js 20 or later (the machine image has it).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs + npm (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# DIALTONE_BIN: the binary to test (default: the release build, brought up
# to date first; cargo does nothing if it is).
bin="${DIALTONE_BIN:-$target/release/dialtone}"
if [[ -z "${DIALTONE_BIN:-}" ]]; then
  (cd "$root" && cargo build --release -j2 -p dialtone-cli)
fi

cd "$here"
# playwright-core ships no browser; this keeps any install hook from fetching one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund --loglevel=error

servers=()
trap 'for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done' EXIT

# start LOG SCHEME ARGS…: runs `dialtone ARGS…` with its stderr in LOG and
# sets $addr to the address it says it listens on (SCHEME://addr/).
start() {
  local log="$1" scheme="$2"
  shift 2
  : >"$log"
  "$bin" "$@" </dev/null 2>"$log" &
  local pid=$!
  servers+=("$pid")
  addr=""
  for _ in $(seq 100); do
    addr="$(sed -n "s|^listening on $scheme://\(.*\)/\$|\1|p" "$log")"
    [[ -n "$addr" ]] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
  echo "the server did not start: $*"
  cat "$log"
  exit 1
}

echo "# console.test.mjs, HTTP/1.1 (ws://)"
start "$out/server.log" ws -v serve 127.0.0.1:0 --echo --web
node console.test.mjs "http://$addr/" "$out/server.log" "$out"

echo "# console.test.mjs, HTTP/2 over TLS (wss://, a self-signed certificate accepted by its key)"
start "$out/server-h2.log" wss -v serve 127.0.0.1:0 --echo --web --tls-self-signed
spki=""
for _ in $(seq 50); do
  spki="$(sed -n 's|^ *SPKI SHA-256 (base64): \(.*\)$|\1|p' "$out/server-h2.log")"
  [[ -n "$spki" ]] && break
  sleep 0.1
done
[[ -n "$spki" ]] || { echo "the server printed no SPKI hash"; cat "$out/server-h2.log"; exit 1; }
DIALTONE_SPKI="$spki" EXPECT_HTTP=2 node console.test.mjs "https://$addr/" "$out/server-h2.log" "$out"

echo "# cswsh.test.mjs"
pages="$here/pages"
marker_b="$out/cswsh-default.marker"
marker_c="$out/cswsh-allowed.marker"
rm -f "$marker_b" "$marker_c"
# The other site: any static server on another loopback address.
start "$out/cswsh-site.log" ws -v serve 127.0.0.2:0 --echo --static "$pages"
site="$addr"
# Each command leaves a marker file, then echoes: the marker says it ran.
start "$out/cswsh-default.log" ws -v serve 127.0.0.1:0 --web --static "$pages" \
  --exec sh -c 'touch "$0"; exec cat' "$marker_b"
default="$addr"
start "$out/cswsh-allowed.log" ws -v serve 127.0.0.1:0 --allow-origin "http://$site" \
  --exec sh -c 'touch "$0"; exec cat' "$marker_c"
allowed="$addr"
node cswsh.test.mjs "http://$site/" "$default" "$out/cswsh-default.log" "$marker_b" \
  "$allowed" "$out/cswsh-allowed.log" "$marker_c"
