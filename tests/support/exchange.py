"""Talking raw HTTP/1.1 to a server under test over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from cloudseed.http.server import Limits

# Small wire limits, so the requests below are over them.
SMALL_LIMITS = Limits(max_body_bytes=1024, max_headers=10, max_target_bytes=256)
# Requests every server must refuse under SMALL_LIMITS: (raw request, status), each
# answered with a reason and a closed connection, never handed to the tier.
OVER_THE_LIMITS = [
    pytest.param(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 414, id="target-too-long"),
    pytest.param(b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(11))
                 + b"\r\n", 431, id="too-many-headers"),
    pytest.param(b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n", 431,
                 id="headers-too-large"),
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000, 413,
                 id="body-too-large"),
    pytest.param(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"7d0\r\n" + b"x" * 2000 + b"\r\n0\r\n\r\n", 413, id="chunked-body-too-large"),
    # Smuggling shapes: both framings at once, and two lengths.
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\n", 400, id="cl-and-te"),
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400,
                 id="two-cl"),
    pytest.param(b"NOT HTTP AT ALL\r\n\r\n", 400, id="junk"),
]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    return code, headers, body


async def send(port: int, raw: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    return reader, writer


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]
