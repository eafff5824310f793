"""A real control API on a loopback port, served from a background thread.

The CLI under test is synchronous (urllib), so the server runs its own event
loop in a thread; tests talk to it over real TCP, exactly as operators do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cloudseed.control.api import ControlApp, start_control
from cloudseed.settings import Secret, Settings
from cloudseed.store.protocol import Store
from tests.support.cli import cloudseed_argv
from tests.support.processes import wait_until

TOKEN = "test-token-0123456789"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunningControl:
    url: str
    token: str
    app: ControlApp
    store: Store

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = "default"
    ) -> Reply:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        use = self.token if token == "default" else token
        if use is not None:
            req.add_header("Authorization", f"Bearer {use}")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return Reply(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read(), dict(exc.headers))


@contextmanager
def running_control(
    store: Store, token: str = TOKEN, settings: Settings | None = None
) -> Iterator[RunningControl]:
    """``settings``: any others the test needs (host, port and token are the harness's)."""
    given = settings or Settings()
    control = dataclasses.replace(given.control, host="127.0.0.1", port=0,
                                  tokens=(Secret(token),))
    settings = dataclasses.replace(given, control=control)
    scheme = "https" if control.tls_cert_file else "http"
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        server, app, address = await start_control(store, settings)
        holder.update(server=server, app=app, address=address)
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=30)
    started.wait(30)
    host, port = holder["address"]
    try:
        yield RunningControl(f"{scheme}://{host}:{port}", token, holder["app"], store)
    finally:
        asyncio.run_coroutine_threadsafe(holder["server"].stop(1.0), loop).result(timeout=30)
        holder["app"].close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def seconds_from_post_to_booted(control: RunningControl, server: str,
                                post: Callable[[], None]) -> float:
    """Run ``cloudseed server wait SERVER --booted`` (a process) until its long-poll is
    parked in the control API, call ``post`` (the guest's phone-home), and return the
    seconds from ``post``'s return to the command's exit 0."""
    env = {"CLOUDSEED_URL": control.url, "CLOUDSEED_TOKEN": control.token,
           "CLOUDSEED_CONFIG": "/dev/null", "PATH": "/usr/bin:/bin"}
    waiting = subprocess.Popen(
        [*cloudseed_argv(), "server", "wait", server, "--booted", "--timeout", "120"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Parked: the CLI's request waits in the control API, holding no thread.
        assert wait_until(lambda: control.app.waiters.count == 1, timeout=60)
        assert waiting.poll() is None
        post()
        posted = time.monotonic()
        code = waiting.wait(timeout=60)
        seconds = time.monotonic() - posted
    finally:
        waiting.kill()
        _out, err = waiting.communicate()
    assert code == 0, err
    return seconds
