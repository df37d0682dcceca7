"""Python `websockets` client for the interop test: sends the 8 messages of
messages.py to the URL given, checks every echo byte for byte and that
permessage-deflate was negotiated, closes normally. Exits 0 only if all held.
"""

import asyncio
import sys

from websockets.asyncio.client import connect

from messages import all_messages

MAX_SIZE = 16 << 20


def describe(msg):
    return f"{type(msg).__name__} of {len(msg.encode() if isinstance(msg, str) else msg)} B"


async def run(url):
    failures = 0
    # No keepalive pings: they are not what this checks, and their 20 s
    # deadline fired on a loaded 2-core machine while 4 MiB went through.
    async with connect(url, compression="deflate", max_size=MAX_SIZE, ping_interval=None, open_timeout=60, close_timeout=30) as ws:
        names = [ext.name for ext in ws.protocol.extensions]
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        print(f"extensions: {names} ({header})", flush=True)
        if names != ["permessage-deflate"]:
            print(f"FAIL: permessage-deflate not negotiated: {names}", flush=True)
            failures += 1
        count = 0
        for msg in all_messages():
            await ws.send(msg)
            echo = await ws.recv()
            if type(echo) is not type(msg) or echo != msg:
                print(f"FAIL: sent {describe(msg)}, got {describe(echo)} back", flush=True)
                failures += 1
            else:
                print(f"ok: {describe(msg)}", flush=True)
            count += 1
    answer = ws.protocol.close_rcvd
    print(f"closed; the server answered {answer}", flush=True)
    if answer is None or answer.code != 1000:
        print("FAIL: no normal close frame from the server", flush=True)
        failures += 1
    if count != 8:
        print(f"FAIL: {count} messages, not 8", flush=True)
        failures += 1
    return failures


def main():
    failures = asyncio.run(asyncio.wait_for(run(sys.argv[1]), timeout=50))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
