"""Python `websockets` echo server for the CLI's race tests (replies_lost.rs).

Listens on 127.0.0.1 on an ephemeral port, prints the port on stdout, and
echoes every message back as it came. Everything else is the package's
default (permessage-deflate, the closing handshake), which is the point:
a server that stops at a close and drops the replies it had not sent.
Exits when its standard input closes, so it never outlives the test.
"""

import asyncio
import os
import sys
import threading

from websockets.asyncio.server import serve


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


def exit_on_stdin_eof():
    sys.stdin.buffer.read()
    os._exit(0)


async def main():
    threading.Thread(target=exit_on_stdin_eof, daemon=True).start()
    async with serve(echo, "127.0.0.1", 0) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
