"""The whole guest path on loopback: proxy → agent (Unix socket) → API.

Three proxies — router rtr-a, router rtr-b, network net-c — share one agent,
as the namespaces of one network node do (with ``kind="shared"``: one front
with a listener per scope; with ``kind="co-located"``: one front that answers
itself, with no agent and no API behind it, so only ``api="real"`` fits). Each tenant's guest has the same
address, 127.0.0.5: a test client binds it as its source address, so each
proxy sees that guest exactly as a namespace proxy sees its tenant's guest.
The last hop is either the echo upstream or the real metadata API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cloudseed.agent.server import Agent
from cloudseed.http.server import HttpServer
from cloudseed.proxy.front import Front
from cloudseed.proxy.relay import ProxyScope
from cloudseed.settings import AgentSettings, ApiMode, ApiSettings, ProxySettings, Secret, Settings
from cloudseed.store import SqlStore
from cloudseed.store.protocol import Store
from tests.support import world
from tests.support.proxy import (
    Echo,
    LoopThread,
    RunningProxy,
    loop_thread,
    start_front,
    start_proxy,
)

GUEST_IP = "127.0.0.5"
SECRET = "chain-secret"
SCOPES = {
    "a": ProxyScope(router_id="rtr-a"),
    "b": ProxyScope(router_id="rtr-b"),
    "c": ProxyScope(network_id="net-c"),
}


@dataclass
class Chain:
    lt: LoopThread
    store: SqlStore
    agent: Agent | None  # None: the co-located front answers itself
    proxies: dict[str, RunningProxy] = field(default_factory=dict)
    echo: Echo | None = None
    api_server: HttpServer | None = None

    def ask(self, tenant: str, path: str, headers: list[tuple[str, str]] | None = None,
            method: str = "GET", source: str = GUEST_IP,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        return self.proxies[tenant].request(method, path, headers, body, source=source)


async def _start_real_api(store: SqlStore) -> tuple[HttpServer, int]:
    from cloudseed.api.app import build_metadata_app

    settings = Settings(shared_secret=Secret(SECRET), api=ApiSettings(mode=ApiMode.PROXY))
    app = build_metadata_app(store, settings)
    await app.start()
    server = HttpServer(app.handle, on_handler_error=app.on_handler_error)
    _, port = await server.listen_tcp("127.0.0.1", 0)
    server.app = app  # type: ignore[attr-defined]  # stopped with the server below
    return server, port


async def _stop_real_api(server: HttpServer) -> None:
    await server.stop(grace_seconds=0.5)
    await server.app.stop()  # type: ignore[attr-defined]


@contextlib.contextmanager
def chain(
    store: SqlStore,
    tmp_path: Path,
    kind: str = "builtin",
    api: str = "echo",
    proxy_settings: ProxySettings | None = None,
    **agent_overrides: Any,
) -> Iterator[Chain]:
    world.build(store, ip=GUEST_IP, cidr="127.0.0.0/24", uuids=True)
    if kind == "co-located":
        assert api == "real", "the co-located front is its own API: there is no hop to echo"
        with colocated_front(store, tmp_path, proxy_settings, **agent_overrides) as result:
            yield result
        return
    with loop_thread() as lt, contextlib.ExitStack() as stack:
        echo = None
        api_server = None
        if api == "echo":
            echo = Echo("api")
            api_port = lt.run(echo.listen_tcp())
            stack.callback(lambda: lt.run(echo.stop()))
        else:
            api_server, api_port = lt.run(_start_real_api(store))
            stack.callback(lambda: lt.run(_stop_real_api(api_server)))
        settings = replace(
            AgentSettings(
                socket_path=str(tmp_path / "agent" / "agent.sock"),
                api_url=f"http://127.0.0.1:{api_port}",
                metrics_port=-1,
            ),
            **agent_overrides,
        )
        agent = Agent(store, settings, SECRET.encode())
        lt.run(agent.start())
        stack.callback(lambda: lt.run(agent.stop()))
        result = Chain(lt, store, agent, echo=echo, api_server=api_server)
        if kind == "shared":  # one front, a listener per scope
            result.proxies = stack.enter_context(start_front(
                lt, SCOPES, settings.socket_path, tmp_path, settings=proxy_settings))
        for tenant, scope in SCOPES.items() if kind != "shared" else ():
            workdir = tmp_path / f"proxy-{tenant}"
            workdir.mkdir()
            result.proxies[tenant] = stack.enter_context(
                start_proxy(kind, lt, scope, settings.socket_path, workdir,
                            settings=proxy_settings)
            )
        yield result


@contextlib.contextmanager
def colocated_front(store: SqlStore, tmp_path: Path, proxy_settings: ProxySettings | None = None,
                    *, answer_store: Store | None = None, loaded: bool = True,
                    **agent_overrides: Any) -> Iterator[Chain]:
    """One shared front in co-located mode: resolves from its own address map and answers
    from its own metadata app (the agent's settings give only the rate limit).
    ``answer_store``: what the front reads (a wrapper of ``store``); ``loaded``: return
    only once its address map is built."""
    from cloudseed.proxy.colocated import ColocatedAnswers

    settings = Settings(
        api=ApiSettings(mode=ApiMode.DIRECT, access_log=False, ready_map=False),
        agent=replace(AgentSettings(), **agent_overrides))

    def answers(front: Front) -> ColocatedAnswers:
        return ColocatedAnswers(answer_store or store, settings, front.registry,
                                front.count_status)

    with loop_thread() as lt, start_front(lt, SCOPES, str(tmp_path / "no-agent.sock"), tmp_path,
                                          settings=proxy_settings, colocated=answers) as fronts:
        front = fronts["a"].front
        assert front is not None
        assert front.answers is not None
        if loaded:
            lt.run(front.answers.followed.wait_loaded())
        yield Chain(lt, store, None, proxies=fronts)
