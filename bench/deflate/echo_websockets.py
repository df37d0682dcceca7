"""Echo server on Python `websockets` (17.4) at its defaults, which
negotiate permessage-deflate with 12-bit windows and memLevel 5 (see its
docs/topics/compression.rst): a non-Rust reference for the compression
benchmark (bench/compression.sh).

    python bench/deflate/echo_websockets.py [HOST:PORT]   (default 127.0.0.1:9001)
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9001").rpartition(":")
    async with serve(echo, host.strip("[]"), int(port)) as server:
        print(f"echo_websockets: listening on {host}:{port}", file=sys.stderr)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
