"""Python `websockets` echo server for the interop test.

Listens on 127.0.0.1 on an ephemeral port, prints the port on stdout, and
echoes every message back as it came (text as text, binary as binary). Exits
when its standard input closes (so it never outlives the test process).
"""

import asyncio
import os
import sys
import threading

from websockets.asyncio.server import serve

MAX_SIZE = 16 << 20


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


def exit_on_stdin_eof():
    sys.stdin.buffer.read()
    os._exit(0)


async def main():
    threading.Thread(target=exit_on_stdin_eof, daemon=True).start()
    # compression="deflate" is the default; said here to make the point.
    # No keepalive pings: they are not what this checks, and their 20 s
    # deadline fired on a loaded 2-core machine while 4 MiB went through.
    async with serve(echo, "127.0.0.1", 0, compression="deflate", max_size=MAX_SIZE, ping_interval=None, open_timeout=60, close_timeout=30) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
