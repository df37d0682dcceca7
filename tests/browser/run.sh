#!/usr/bin/env bash
# Real-browser test: Debian's Chromium (headless), driven by playwright-core,
# loads the console page of `dialtone serve --web --echo` and talks to it
# (see console.test.mjs). Installs chromium with apt-get if it is missing
# and playwright-core with `npm ci` (never a browser download). The server
# log and the screenshot are kept in $TARGET/browser/.
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

bin="$target/release/dialtone"
if [[ ! -x "$bin" ]]; then
  (cd "$root" && cargo build --release -j2 -p dialtone-cli)
fi

cd "$here"
# playwright-core ships no browser; this keeps any install hook from fetching one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund --loglevel=error

log="$out/server.log"
: >"$log"
"$bin" -v serve 127.0.0.1:0 --echo --web 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

addr=""
for _ in $(seq 100); do
  addr="$(sed -n 's|^listening on ws://\(.*\)/$|\1|p' "$log")"
  [[ -n "$addr" ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
[[ -n "$addr" ]] || { echo "the server did not start"; cat "$log"; exit 1; }

node console.test.mjs "http://$addr/" "$log" "$out"
