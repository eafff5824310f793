"""The keep-alive HTTP client against real servers: TCP, TLS, Unix sockets."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
from tests.support.ports import free_port
from tests.support.proxy import Echo, echoed
from tests.support.tls import make_tls

from cloudseed.errors import ConfigError, UpstreamTimeout, UpstreamUnavailable
from cloudseed.http.client import HttpClient, Upstream, tls_context
from cloudseed.http.server import HttpServer


def test_upstream_urls_parse() -> None:
    assert Upstream.parse("http://127.0.0.1:8775") == Upstream("http", "127.0.0.1", 8775)
    assert Upstream.parse("https://meta.example") == Upstream("https", "meta.example", 443)
    assert Upstream.parse("http://[::1]:80").host_header == "[::1]:80"
    assert Upstream.parse("unix:/run/x.sock").socket_path == "/run/x.sock"
    assert Upstream.parse("unix:///run/x.sock").socket_path == "/run/x.sock"
    for bad in ("ftp://x", "unix:relative", "http://", "http://h:port"):
        with pytest.raises(ConfigError):
            Upstream.parse(bad)


async def _serve(echo: Echo) -> tuple[HttpServer, int]:
    port = await echo.listen_tcp()
    assert echo.server is not None
    return echo.server, port


def test_keep_alive_reuses_one_connection() -> None:
    async def main() -> None:
        echo = Echo()
        server, port = await _serve(echo)
        client = HttpClient(f"http://127.0.0.1:{port}")
        for i in range(10):
            response = await client.request("GET", f"/p{i}?q=1", [("X-A", "b")])
            assert echoed(response.body)["path"] == f"/p{i}"
        assert client.idle_connections == 1
        assert len(server.connections) == 1
        response = await client.request("POST", "/post", body=b"payload")
        assert echoed(response.body)["body"] == "payload"
        await client.close()
        await echo.stop()

    asyncio.run(main())


def test_unix_socket_upstream(tmp_path: Path) -> None:
    async def main() -> None:
        echo = Echo()
        await echo.listen_unix(tmp_path / "s.sock")
        client = HttpClient(f"unix:{tmp_path / 's.sock'}")
        response = await client.request("GET", "/via-unix")
        assert response.status == 200
        assert echoed(response.body)["path"] == "/via-unix"
        await client.close()
        await echo.stop()

    asyncio.run(main())


def test_connection_refused_is_unavailable() -> None:
    async def main() -> None:
        client = HttpClient(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(UpstreamUnavailable):
            await client.request("GET", "/")

    asyncio.run(main())


def test_missing_unix_socket_is_unavailable(tmp_path: Path) -> None:
    async def main() -> None:
        client = HttpClient(f"unix:{tmp_path / 'nope.sock'}")
        with pytest.raises(UpstreamUnavailable):
            await client.request("GET", "/")

    asyncio.run(main())


def test_slow_upstream_times_out_and_connection_is_not_reused() -> None:
    async def main() -> None:
        echo = Echo()
        _, port = await _serve(echo)
        client = HttpClient(f"http://127.0.0.1:{port}", read_timeout_seconds=0.2)
        with pytest.raises(UpstreamTimeout):
            await client.request("GET", "/slow/2")
        assert client.idle_connections == 0
        response = await client.request("GET", "/fast")
        assert echoed(response.body)["path"] == "/fast"
        await client.close()
        await echo.stop()

    asyncio.run(main())


def test_idle_connection_closed_by_server_is_retried_on_a_fresh_one() -> None:
    async def main() -> None:
        echo = Echo()
        server, port = await _serve(echo)
        client = HttpClient(f"http://127.0.0.1:{port}")
        await client.request("GET", "/one")
        for conn in list(server.connections):
            conn.close()  # the server's keep-alive timeout fired
        await asyncio.sleep(0.05)
        response = await client.request("GET", "/two")
        assert echoed(response.body)["path"] == "/two"
        await client.close()
        await echo.stop()

    asyncio.run(main())


def test_malformed_response_is_unavailable() -> None:
    async def main() -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient(f"http://127.0.0.1:{port}")
        with pytest.raises(UpstreamUnavailable):
            await client.request("GET", "/")
        server.close()
        await client.close()

    asyncio.run(main())


def test_head_response_without_body_completes() -> None:
    async def main() -> None:
        echo = Echo()
        _, port = await _serve(echo)
        client = HttpClient(f"http://127.0.0.1:{port}")
        response = await client.request("HEAD", "/h")
        assert response.status == 200
        assert response.body == b""
        response = await client.request("GET", "/after-head")
        assert echoed(response.body)["path"] == "/after-head"
        await client.close()
        await echo.stop()

    asyncio.run(main())


def test_tls_with_ca_file_and_client_certificate(tmp_path: Path) -> None:
    files = make_tls(tmp_path)
    ca, client_cert, client_key = files.ca, files.client_cert, files.client_key
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    server_ctx.load_cert_chain(str(files.server_cert), str(files.server_key))
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # the API insists on our client cert

    async def main() -> None:
        echo = Echo("tls")
        http = HttpServer(echo.handle)
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = await loop.create_server(http.connection_factory, sock=sock, ssl=server_ctx)
        good = HttpClient(f"https://127.0.0.1:{port}",
                          tls=tls_context(str(ca), str(client_cert), str(client_key)))
        response = await good.request("GET", "/over-tls")
        assert echoed(response.body)["path"] == "/over-tls"
        await good.close()
        # Without the client certificate, or without trusting our CA: unavailable.
        for tls in (tls_context(str(ca)), tls_context()):
            bad = HttpClient(f"https://127.0.0.1:{port}", tls=tls)
            with pytest.raises(UpstreamUnavailable):
                await bad.request("GET", "/")
            await bad.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_a_server_that_dies_mid_request_costs_a_get_nothing_and_a_post_one_error() -> None:
    """The first connection is accepted, read and dropped without a byte (a server
    SIGKILLed mid-request); the next connection is answered. A GET is re-sent
    once; a POST is not, since the dead server may have applied it."""

    async def main() -> None:
        seen: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.readuntil(b"\r\n\r\n")
            seen.append(request.split(b" ", 1)[0])
            if len(seen) % 2 == 1:  # every other request: die without answering
                writer.transport.abort()
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient(f"http://127.0.0.1:{port}")
        response = await client.request("GET", "/meta_data.json")
        assert (response.status, response.body) == (200, b"ok")
        assert seen == [b"GET", b"GET"]
        with pytest.raises(UpstreamUnavailable):
            await client.request("POST", "/openstack/latest/password", body=b"secret")
        assert seen == [b"GET", b"GET", b"POST"]  # sent once, never twice
        await client.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
