"""Helpers for conformance/run.sh. Runs inside the kosoku venv (needs kosoku + websockets).

Subcommands:
  free-port                      print a free TCP port on 127.0.0.1
  wait-port PORT PID [SECS]      wait until 127.0.0.1:PORT accepts (fail if PID dies)
  case-count PORT                print the fuzzingserver's case count (/getCaseCount)
  update-reports PORT AGENT      ask the fuzzingserver to write its reports (/updateReports)
  check [PATTERN ...] -- LABEL=DIR [LABEL=DIR ...]
                                 summarize each DIR/index.json, fail on any selected case
                                 that is missing or not OK
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import os
import re
import socket
import sys
import time
from collections import Counter
from pathlib import Path


def free_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait_port(port: str, pid: str, secs: str = "30") -> None:
    deadline = time.monotonic() + float(secs)
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            sys.exit(f"process {pid} exited before 127.0.0.1:{port} accepted connections")
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"127.0.0.1:{port} did not accept connections within {secs}s")


def _ws(url: str) -> list[str | bytes]:
    """Open a WebSocket, collect messages until the peer closes or drops."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    msgs: list[str | bytes] = []
    with connect(url, open_timeout=30, close_timeout=5) as ws:
        try:
            while True:
                msgs.append(ws.recv(timeout=30))
        except (ConnectionClosed, TimeoutError):
            pass
    return msgs


def case_count(port: str) -> None:
    # /getCaseCount is a WebSocket endpoint (plain HTTP gets an empty reply).
    msgs = _ws(f"ws://127.0.0.1:{port}/getCaseCount")
    print(int(msgs[0]))


def update_reports(port: str, agent: str) -> None:
    # kosoku then writes the reports and exits; it drops the TCP connection
    # without a close frame, which is not an error here.
    from websockets.exceptions import ConnectionClosed

    try:
        _ws(f"ws://127.0.0.1:{port}/updateReports?agent={agent}")
    except ConnectionClosed:
        pass


def _suite() -> tuple[list[str], set[str]]:
    """All case ids kosoku knows, in its order, and those that are informational
    by construction (the case itself sets behavior = INFORMATIONAL, whatever the
    peer does: 7.1.6, 7.13.1, 7.13.2 in kosoku 0.1.0)."""
    from kosoku import _caseindex as ci

    ci.initialize_shims()
    root = Path(ci.__file__).parent / "cases"
    static, generators = [], []
    for f in sorted(root.glob("case*.py")):
        if f.stem == "case":
            continue
        gens = re.findall(r"^(Case\w+_X(?:_X)?)\s*=\s*\[\]", f.read_text(), re.M)
        if gens:
            generators += [(f.stem, g) for g in gens]
        else:
            static.append(f.stem)
    cases, _ = ci.build_index(static, generators)
    informational = set()
    pat = re.compile(r"self\.behavior\s*=\s*Case\.INFORMATIONAL\b")
    for cid, cls in cases.items():
        for fn in vars(cls).values():
            if inspect.isfunction(fn):
                try:
                    src = inspect.getsource(fn)
                except (OSError, TypeError):
                    continue
                if pat.search(src):
                    informational.add(cid)
    return list(cases), informational


def _fmt(counter: Counter) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counter.items(), key=lambda kv: (kv[0] != "OK", kv[0])))


def check(args: list[str]) -> None:
    sep = args.index("--")
    patterns, dirs = args[:sep], args[sep + 1 :]
    all_ids, informational = _suite()
    selected = [c for c in all_ids if any(fnmatch.fnmatchcase(c, p) for p in patterns)] if patterns else all_ids
    sel_set = set(selected)
    print(f"selected {len(selected)} cases ({' '.join(patterns) or 'all'}); "
          f"informational by design: {' '.join(sorted(informational & sel_set)) or '-'}")
    bad_total = 0
    passed_total = 0
    for spec in dirs:
        label, d = spec.split("=", 1)
        index_path = Path(d) / "index.json"
        if not index_path.is_file():
            print(f"{label}: FAIL: no report at {index_path}")
            bad_total += len(selected)
            continue
        index = json.loads(index_path.read_text())
        if len(index) != 1:
            print(f"{label}: FAIL: expected one agent in {index_path}, found {sorted(index)}")
            bad_total += len(selected)
            continue
        agent, results = next(iter(index.items()))
        got = {c: r for c, r in results.items() if c in sel_set}
        extra = sorted(set(results) - sel_set)
        print(f"{label}: agent {agent!r}, {len(got)}/{len(selected)} selected cases reported"
              + (f" (+{len(extra)} unselected, ignored)" if extra else ""))
        print(f"{label}: behavior {_fmt(Counter(r['behavior'] for r in got.values()))}; "
              f"close {_fmt(Counter(r['behaviorClose'] for r in got.values()))}")
        bad = []
        missing = [cid for cid in selected if cid not in got]
        for cid in selected:
            r = got.get(cid)
            if r is None:
                continue
            ok = {"OK", "INFORMATIONAL"} if cid in informational else {"OK"}
            if r["behavior"] in ok and r["behaviorClose"] in ok:
                continue
            why = ""
            try:
                detail = json.loads((Path(d) / r["reportfile"]).read_text())
                why = f" - {detail.get('result', '')} / {detail.get('resultClose', '')}"
            except (OSError, ValueError, KeyError):
                pass
            bad.append(f"{cid}: behavior={r['behavior']} close={r['behaviorClose']} "
                       f"remoteCloseCode={r.get('remoteCloseCode')}{why}")
        for line in bad:
            print(f"{label}: NOT OK {line}")
        if missing:
            print(f"{label}: MISSING from report ({len(missing)}): {' '.join(missing)}")
        bad += missing
        print(f"{label}: {'PASS' if not bad else f'FAIL ({len(bad)} cases not OK)'} - {Path(d) / 'index.html'}")
        bad_total += len(bad)
        passed_total += len(selected) - len(bad)
    # Plain closing line, read by CI as the test count.
    print(f"conformance: {passed_total} passed, {bad_total} failed")
    sys.exit(1 if bad_total else 0)


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "free-port":
        free_port()
    elif cmd == "wait-port":
        wait_port(*args)
    elif cmd == "case-count":
        case_count(*args)
    elif cmd == "update-reports":
        update_reports(*args)
    elif cmd == "check":
        check(args)
    else:
        sys.exit(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main()
