"""The Python ceiling: asyncio.Protocol + httptools + uvloop, answering ready bytes.

Nothing here does more than a metadata server must: parse the request, look
the path up in a dict of prepared responses, write them, honour keep-alive.
Whatever cloudseed's tiers spend above this is their own cost. It serves the
same files as nginx does (see ``docroot.py``); on a Unix socket it is also the
fixed-bytes backend that isolates a proxy's own cost.

    python -m bench.refserver --docroot DIR (--tcp 127.0.0.1:PORT | --unix PATH)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import cast

import httptools
import uvloop

from bench.docroot import read_docroot

NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nNot Found"
)


def prepare(files: dict[str, bytes]) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """Whole responses per path, keep-alive and close variants."""
    alive: dict[bytes, bytes] = {}
    closing: dict[bytes, bytes] = {}
    for path, body in files.items():
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        alive[path.encode()] = head.encode() + b"\r\n" + body
        closing[path.encode()] = head.encode() + b"Connection: close\r\n\r\n" + body
    return alive, closing


class FixedBytesProtocol(asyncio.Protocol):
    def __init__(self, alive: dict[bytes, bytes], closing: dict[bytes, bytes]) -> None:
        self._alive = alive
        self._closing = closing
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None:
            return
        keep = self._parser.should_keep_alive()
        table = self._alive if keep else self._closing
        transport.write(table.get(self._url, NOT_FOUND))
        if not keep:
            transport.close()


async def serve(files: dict[str, bytes], tcp: str | None, unix: str | None) -> None:
    loop = asyncio.get_running_loop()
    alive, closing = prepare(files)

    def factory() -> FixedBytesProtocol:
        return FixedBytesProtocol(alive, closing)

    if unix:
        if os.path.exists(unix):
            os.unlink(unix)
        server = await loop.create_unix_server(factory, unix, backlog=1024)
    else:
        assert tcp is not None
        host, _, port = tcp.rpartition(":")
        server = await loop.create_server(factory, host, int(port), backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docroot", type=Path, required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT")
    where.add_argument("--unix", metavar="PATH")
    args = parser.parse_args()
    files = read_docroot(args.docroot)
    uvloop.run(serve(files, args.tcp, args.unix))


if __name__ == "__main__":
    main()
