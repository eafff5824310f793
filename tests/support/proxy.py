"""Real servers for the proxy, agent and chain tests.

``LoopThread`` runs an event loop in a background thread so that tests can
start our asyncio servers there and talk to them with plain blocking
clients (``http.client``, raw sockets), as a guest would. ``Echo`` is a small
real HTTP upstream that answers with the request it received, as JSON — the
stand-in for the agent (behind a proxy) or for the metadata API (behind an
agent). ``start_proxy`` runs any proxy implementation in front of a Unix
socket; ``start_front`` runs one shared front with a listener per scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cloudseed.http.message import Request, Response, json_response
from cloudseed.http.server import HttpServer
from cloudseed.proxy.colocated import ColocatedAnswers
from cloudseed.proxy.front import Front
from cloudseed.proxy.haproxy import HaproxyProcess, config_for, render_config
from cloudseed.proxy.listen import ListenAddress
from cloudseed.proxy.listener_set import ScopedListeners, render_listener_set
from cloudseed.proxy.relay import ProxyScope, Relay
from cloudseed.settings import ProxySettings
from tests.support.ports import free_port

T = TypeVar("T")
HAPROXY = "/usr/sbin/haproxy"


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        async def _drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(_drain(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@contextlib.contextmanager
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


@dataclass
class Echo:
    """Answers every request with what it received. Special paths:

    ``/status/NNN`` answers NNN with ETag, Allow, Retry-After and token TTL
    headers; ``/slow/S`` answers after S seconds.
    """

    name: str = "echo"
    seen: list[Request] = field(default_factory=list)
    server: HttpServer | None = None

    async def handle(self, request: Request) -> Response:
        self.seen.append(request)
        if request.path.startswith("/slow/"):
            await asyncio.sleep(float(request.path.rsplit("/", 1)[1]))
        if request.path.startswith("/status/"):
            status = int(request.path.rsplit("/", 1)[1])
            headers = [
                ("ETag", '"v1"'),
                ("Allow", "GET, HEAD"),
                ("Retry-After", "7"),
                ("X-aws-ec2-metadata-token-ttl-seconds", "21600"),
                ("X-Unrelated", "dropped-by-agent"),
                # The API's internal hop limit, for the proxy only.
                ("X-Cloudseed-Hop-Limit", "2"),
            ]
            body = b"" if status in (204, 304) else f"status {status}\n".encode()
            return Response(status, body, headers)
        payload = {
            "upstream": self.name,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "body": request.body.decode("latin-1"),
        }
        return json_response(200, json.dumps(payload).encode())

    async def listen_unix(self, path: str | Path) -> None:
        self.server = HttpServer(self.handle)
        await self.server.listen_unix(path)

    async def listen_tcp(self, host: str = "127.0.0.1") -> int:
        self.server = HttpServer(self.handle)
        _, port = await self.server.listen_tcp(host, 0)
        return port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace_seconds=0.5)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@dataclass
class RunningProxy:
    kind: str
    host: str
    port: int
    relay: Relay | None = None
    haproxy: HaproxyProcess | None = None
    front: Front | None = None

    def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        timeout: float = 5.0,
        source: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        return http_request(self.host, self.port, method, path, headers, body, timeout, source)


def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    timeout: float = 5.0,
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request; headers may repeat (``putheader`` keeps duplicates)."""
    conn = http.client.HTTPConnection(
        host, port, timeout=timeout, source_address=(source, 0) if source else None
    )
    return _exchange(conn, method, path, headers, body)



def _exchange(conn: http.client.HTTPConnection, method: str, path: str,
              headers: list[tuple[str, str]] | None, body: bytes | None
              ) -> tuple[int, dict[str, str], bytes]:
    """One request on ``conn`` (closed after); headers may repeat (``putheader``
    keeps duplicates)."""
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers or []:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()

def raw_exchange(host: str, port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Send raw bytes and read until the server closes or goes quiet."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        sock.settimeout(1.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def statuses(raw: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


async def _start_builtin(
    scope: ProxyScope, agent_socket: str, host: str, settings: ProxySettings
) -> RunningProxy:
    relay = Relay(scope, agent_socket, settings)
    bound = await relay.start([ListenAddress(host, 0)])
    return RunningProxy("builtin", host, bound[0][1], relay=relay)


@contextlib.contextmanager
def start_proxy(
    kind: str,
    lt: LoopThread,
    scope: ProxyScope,
    agent_socket: str,
    workdir: Path,
    host: str = "127.0.0.1",
    settings: ProxySettings | None = None,
) -> Iterator[RunningProxy]:
    settings = settings or ProxySettings()
    if kind == "shared":
        with start_front(lt, {"only": scope}, agent_socket, workdir, host, settings) as fronts:
            yield fronts["only"]
        return
    if kind == "builtin":
        running = lt.run(_start_builtin(scope, agent_socket, host, settings))
        try:
            yield running
        finally:
            assert running.relay is not None
            lt.run(running.relay.stop())
        return
    port = free_port(host)
    config = config_for(scope, [ListenAddress(host, port)], agent_socket, workdir, settings)
    process = HaproxyProcess(config.uuid, workdir, binary=HAPROXY)
    process.ensure(render_config(config))
    try:
        wait_for_port(host, port)
        yield RunningProxy("haproxy", host, port, haproxy=process)
    finally:
        process.stop()


@contextlib.contextmanager
def start_front(
    lt: LoopThread,
    scopes: dict[str, ProxyScope],
    agent_socket: str,
    workdir: Path,
    host: str = "127.0.0.1",
    settings: ProxySettings | None = None,
    colocated: Callable[[Front], ColocatedAnswers] | None = None,
) -> Iterator[dict[str, RunningProxy]]:
    """One shared front, one listener per scope (here all in our own namespace, one port each);
    ``colocated``: it answers itself (proxy/colocated.py) instead of relaying to the agent."""
    ports = {name: free_port(host) for name in scopes}
    where = f"[{host}]" if ":" in host else host
    entries = [ScopedListeners("", scope, (f"{where}:{ports[name]}",))
               for name, scope in scopes.items()]
    listener_file = workdir / "listeners.json"
    listener_file.write_text(render_listener_set(entries))
    front = Front(listener_file, agent_socket, settings or ProxySettings(), colocated=colocated)
    lt.run(front.start())
    try:
        yield {name: RunningProxy("shared", host, ports[name], front=front) for name in scopes}
    finally:
        lt.run(front.stop())


def echoed(body: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(body)
    return result


def header_values(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k == name]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str | Path, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(socket_path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def unix_request(
    socket_path: str | Path,
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTPConnection(socket_path, timeout)
    return _exchange(conn, method, path, headers, body)
