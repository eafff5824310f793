"""A real metadata API on a real loopback socket, for tests.

``running_api`` starts a ``MetadataApp`` behind our ``HttpServer`` on its own
event loop in a thread; tests talk to it with ``http.client`` (or raw
sockets for hostile input), exactly as a guest would. Direct-mode tests pick
a guest by binding the client socket to a 127.x.y.z source address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cloudseed.api.app import MetadataApp, build_metadata_app
from cloudseed.api.observe import AccessLog
from cloudseed.auth.signing import sign_instance_id
from cloudseed.http.server import HttpServer
from cloudseed.model import FixedIp, Port, Server, ServerView
from cloudseed.settings import ApiSettings, Secret, Settings
from cloudseed.store import SqlStore
from tests.support.samples import RICH

SECRET = "s3cret-shared-between-agent-and-api"
TOKEN_KEY = b"k" * 32


class FakeClock:
    """Wall and monotonic time that only moves when a test moves it."""

    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def api_settings(**api: Any) -> Settings:
    """In-process apps have no renderer, so the ready map is off unless a test asks
    (then it runs a ``Renderer`` itself, tests/integration/test_ready_map.py)."""
    values: dict[str, Any] = {"mode": "proxy", "access_log": False, "ready_map": False}
    values.update(api)
    return Settings(api=ApiSettings(**values), shared_secret=Secret(SECRET))


def store_view(store: SqlStore, view: ServerView, *, guest_ip: str | None = None) -> ServerView:
    """Write a renderer sample into the store (its networks, key, server, ports)."""
    ports = view.ports
    if guest_ip is not None and ports:
        # Direct mode on loopback: the guest's first address is a 127.x one.
        first = ports[0]
        loopback = dataclasses.replace(
            first.subnets[0], cidr="127.0.0.0/8", gateway_ip="127.0.0.254", dns_nameservers=()
        )
        fixed = (FixedIp(loopback.id, guest_ip), *first.port.fixed_ips[1:])
        ports = (
            dataclasses.replace(
                first,
                port=dataclasses.replace(first.port, fixed_ips=fixed),
                subnets=(loopback, *first.subnets[1:]),
            ),
            *ports[1:],
        )
    with store.write() as w:
        for pv in ports:
            w.put_network(pv.network)
            for subnet in pv.subnets:
                w.put_subnet(subnet)
        if view.keypair is not None:
            w.put_keypair(view.keypair)
        w.put_server(view.server)
        for pv in ports:
            w.put_port(pv.port)
    if view.password:
        store.set_password_once(view.server.id, view.password)
    return store.server_view(view.server.id)


def another_server(store: SqlStore, n: int, guest_ip: str, **changes: Any) -> Server:
    """A second small server on RICH's DHCP network (that network must exist)."""
    net = RICH.ports[0]
    values: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "name": f"guest{n}",
        "hostname": f"guest{n}",
        "project_id": "project-b",
    }
    values.update(changes)
    server = Server(**values)
    port = Port(
        id=f"10000000-0000-4000-8000-{n:012d}",
        network_id=net.network.id,
        mac_address=f"fa:16:3e:10:00:{n:02x}",
        fixed_ips=(FixedIp(net.subnets[0].id, guest_ip),),
        server_id=server.id,
    )
    with store.write() as w:
        stored = w.put_server(server)
        w.put_port(port)
    return stored


def identity(server_id: str, tenant: str, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Instance-ID": server_id,
        "X-Tenant-ID": tenant,
        "X-Instance-ID-Signature": sign_instance_id(secret.encode(), server_id),
    }


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class RunningApi:
    app: MetadataApp
    port: int
    admin_port: int
    loop: asyncio.AbstractEventLoop

    def request(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        *,
        method: str = "GET",
        body: bytes | None = None,
        source: str = "127.0.0.1",
        admin: bool = False,
    ) -> Reply:
        return http_request(
            self.admin_port if admin else self.port, path, headers, method=method, body=body,
            source=source,
        )

    def call(self, func: Any) -> Any:
        """Run ``func()`` on the app's loop thread (the cache is loop-only)."""
        async def run() -> Any:
            return func()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


def http_request(
    port: int,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "GET",
    body: bytes | None = None,
    source: str = "127.0.0.1",
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, return everything the server answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # No half-close: the request itself says Connection: close, or is
        # refused and closed by the server.
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def running_api(
    store: SqlStore,
    settings: Settings,
    *,
    clock: FakeClock | None = None,
    access_log: AccessLog | None = None,
) -> Iterator[RunningApi]:
    started = threading.Event()
    holder: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def start() -> None:
        kwargs: dict[str, Any] = {"token_key": TOKEN_KEY, "access_log": access_log}
        if clock is not None:
            kwargs.update(clock=clock, monotonic=clock)
        app = build_metadata_app(store, settings, **kwargs)
        await app.start()
        server = HttpServer(app.handle, app.config.limits, on_handler_error=app.on_handler_error,
                            failures=app.failures)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        admin = HttpServer(app.handle_admin, failures=app.failures)
        _, admin_port = await admin.listen_tcp("127.0.0.1", 0)
        holder.update(app=app, server=server, admin=admin, port=port, admin_port=admin_port)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            holder["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(30)
    if "error" in holder:
        raise holder["error"]
    try:
        yield RunningApi(holder["app"], holder["port"], holder["admin_port"], loop)
    finally:

        async def stop() -> None:
            await holder["admin"].stop(1)
            await holder["server"].stop(1)
            await holder["app"].stop()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def rich_with(**server_changes: Any) -> ServerView:
    """RICH with some server fields changed (``imds=...`` etc.)."""
    return dataclasses.replace(RICH, server=dataclasses.replace(RICH.server, **server_changes))

