"""``cloudseed api`` as real processes: pre-forked workers, signals, shared stores."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.support.api import SECRET, Reply, http_request, identity, store_view
from tests.support.ports import free_port
from tests.support.samples import RICH

from cloudseed.api.service import RENDERER_NAME
from cloudseed.ready.store import ReadyMap
from cloudseed.store import SqlStore, open_store

CLOUDSEED = str(Path(sys.executable).with_name("cloudseed"))
WHO = identity(RICH.server.id, RICH.server.project_id)
HOSTNAME = "/latest/meta-data/hostname"


@dataclasses.dataclass
class ApiProcess:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int

    def get(self, path: str = HOSTNAME, **kw: Any) -> Reply:
        return http_request(self.port, path, WHO, **kw)

    def workers(self) -> set[int]:
        return self._children(lambda name: name != RENDERER_NAME)

    def renderer(self) -> set[int]:
        """The ready map's renderer (api/service.py), told apart by its name."""
        return self._children(lambda name: name == RENDERER_NAME)

    def _children(self, wanted: Callable[[str], bool]) -> set[int]:
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            name, _, rest = text.partition(" (")[2].rpartition(") ")
            if int(rest.split()[1]) == self.process.pid and wanted(name):
                children.add(int(stat.parent.name))
        return children


def wait_until(predicate: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


@contextmanager
def api_process(store_url: str, workers: int = 1, **env: str) -> Iterator[ApiProcess]:
    port, admin = free_port(), free_port(count=workers)
    environ = {
        **os.environ,
        "CLOUDSEED_STORE_URL": store_url,
        "CLOUDSEED_SHARED_SECRET": SECRET,
        "CLOUDSEED_API_HOST": "127.0.0.1",
        "CLOUDSEED_API_PORT": str(port),
        "CLOUDSEED_API_ADMIN_PORT": str(admin),
        "CLOUDSEED_API_WORKERS": str(workers),
        "CLOUDSEED_API_ACCESS_LOG": "false",
        "CLOUDSEED_API_TOKEN_KEY": "k" * 32,
        "CLOUDSEED_API_GRACEFUL_TIMEOUT_SECONDS": "10",
        **env,
    }
    process = subprocess.Popen(
        [CLOUDSEED, "--log-level", "warning", "api"], env=environ, stderr=subprocess.PIPE
    )
    api = ApiProcess(process, port, admin)
    try:
        if not wait_until(lambda: http_request(port, "/").status == 200):
            process.kill()
            raise AssertionError(process.communicate()[1].decode()[-3000:])
        yield api
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
def seeded(store_url: str) -> Iterator[tuple[str, SqlStore]]:
    with open_store(store_url) as store:
        store_view(store, dataclasses.replace(RICH, password=""))
        yield store_url, store


def rename(store: SqlStore, hostname: str) -> None:
    server = store.get_server(RICH.server.id)
    with store.write() as w:
        w.put_server(dataclasses.replace(server, hostname=hostname))


def served_everywhere(api: ApiProcess, expected: bytes, tries: int = 20) -> bool:
    # New connection per request, so the kernel spreads them over the workers.
    return all(api.get().body.startswith(expected) for _ in range(tries))


def test_a_change_reaches_every_worker(seeded: tuple[str, SqlStore]) -> None:
    url, store = seeded
    with api_process(url, workers=2) as api:
        # Warm both workers' caches, and prove both serve.
        def both_served() -> bool:
            api.get()
            counts = [
                http_request(api.admin_port + n, "/metrics").body.count(b'family="ec2",status="200"')
                for n in range(2)
            ]
            return all(counts)

        assert wait_until(both_served)
        assert len(api.workers()) == 2
        rename(store, "renamed")
        assert wait_until(lambda: served_everywhere(api, b"renamed."), 5.0)


def test_two_api_processes_on_one_store_both_see_a_change(seeded: tuple[str, SqlStore]) -> None:
    url, store = seeded
    with api_process(url) as first, api_process(url) as second:
        assert first.get().body.startswith(b"web-1.")
        assert second.get().body.startswith(b"web-1.")
        rename(store, "moved")
        assert wait_until(lambda: first.get().body.startswith(b"moved."), 5.0)
        assert wait_until(lambda: second.get().body.startswith(b"moved."), 5.0)


def test_password_race_across_two_processes_has_one_winner(
    seeded: tuple[str, SqlStore],
) -> None:
    url, store = seeded
    with api_process(url) as first, api_process(url) as second:
        statuses: list[int] = []
        barrier = threading.Barrier(8)

        def post(api: ApiProcess, n: int) -> None:
            barrier.wait()
            reply = api.get("/openstack/latest/password", method="POST", body=f"pw{n}".encode())
            statuses.append(reply.status)

        threads = [
            threading.Thread(target=post, args=(first if n % 2 else second, n)) for n in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200] + [409] * 7
        winner = store.get_password(RICH.server.id)
        assert winner.startswith("pw")
        for api in (first, second):
            assert wait_until(
                lambda api=api: api.get("/openstack/latest/password").body == winner.encode()
            )


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sighup_replaces_workers_without_failing_a_request(
    seeded: tuple[str, SqlStore],
) -> None:
    url, _ = seeded
    with api_process(url, workers=2) as api:
        old = api.workers()
        assert len(old) == 2
        failures: list[str] = []
        done = threading.Event()

        def hammer() -> None:
            while not done.is_set():
                try:
                    status = api.get().status
                    if status != 200:
                        failures.append(str(status))
                except OSError as exc:
                    failures.append(repr(exc))

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            api.process.send_signal(signal.SIGHUP)
            assert wait_until(lambda: len(api.workers()) == 2 and not api.workers() & old)
        finally:
            done.set()
            thread.join()
        assert failures == []
        assert api.get().status == 200


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sigterm_finishes_in_flight_requests_then_exits_0(
    seeded: tuple[str, SqlStore],
) -> None:
    import asyncio

    from tests.unit.api.test_vendordata import Target, serve

    slow = Target(body={"slow": True}, delay=1.0)
    loop = asyncio.new_event_loop()
    server, port = loop.run_until_complete(serve(slow))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url, _ = seeded
    try:
        target = f"slow@http://127.0.0.1:{port}/"
        with api_process(url, CLOUDSEED_API_VENDORDATA_DYNAMIC_TARGETS=target) as api:
            result: list[Reply] = []
            # The server is cold, so this waits ~1 s on the slow target.
            request = threading.Thread(
                target=lambda: result.append(api.get("/openstack/latest/vendor_data2.json"))
            )
            request.start()
            assert wait_until(lambda: len(slow.received) == 1)
            api.process.send_signal(signal.SIGTERM)
            request.join()
            assert result[0].status == 200
            assert api.process.wait(30) == 0
            with pytest.raises(ConnectionRefusedError):
                http_request(api.port, "/")
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLOUDSEED_SHARED_SECRET": ""}, "shared_secret is required"),
        ({"CLOUDSEED_API_MODE": "sideways"}, "api.mode"),
        (
            {"CLOUDSEED_API_MODE": "direct", "CLOUDSEED_API_TRUSTED_PROXY_CIDRS": "10.0.0.0/99"},
            "api.trusted_proxy_cidrs",
        ),
    ],
)
def test_misconfiguration_refuses_to_start_naming_the_setting(
    sqlite_url: str, env: dict[str, str], message: str
) -> None:
    environ = {
        **os.environ,
        "CLOUDSEED_STORE_URL": sqlite_url,
        "CLOUDSEED_SHARED_SECRET": SECRET,
        "CLOUDSEED_API_PORT": str(free_port()),
        "CLOUDSEED_API_ADMIN_HOST": "",
        **env,
    }
    result = subprocess.run(
        [CLOUDSEED, "api"], env=environ, capture_output=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr.decode()


def test_invalid_static_vendordata_refuses_to_start(sqlite_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "vendor.json"
    bad.write_text("{oops")
    environ = {
        **os.environ,
        "CLOUDSEED_STORE_URL": sqlite_url,
        "CLOUDSEED_SHARED_SECRET": SECRET,
        "CLOUDSEED_API_PORT": str(free_port()),
        "CLOUDSEED_API_VENDORDATA_STATIC_FILE": str(bad),
    }
    result = subprocess.run(
        [CLOUDSEED, "api"], env=environ, capture_output=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "api.vendordata_static_file" in result.stderr.decode()
    assert "not valid JSON" in result.stderr.decode()


def worker_metric(api: ApiProcess, line_start: bytes, workers: int) -> float:
    """A metric's value summed over the workers' admin listeners."""
    total = 0.0
    for n in range(workers):
        for line in http_request(api.admin_port + n, "/metrics").body.splitlines():
            if line.startswith(line_start):
                total += float(line.rsplit(b" ", 1)[1])
    return total


def test_workers_answer_from_the_renderers_map_and_outlive_it(
    seeded: tuple[str, SqlStore],
) -> None:
    url, store = seeded
    with api_process(url, workers=2) as api:
        assert wait_until(lambda: len(api.renderer()) == 1)
        map_dir = Path(os.environ["CLOUDSEED_API_READY_MAP_DIR"]) / store.store_id()

        def caught_up() -> bool:
            ready = ReadyMap.reader(map_dir)
            if ready is None:
                return False
            try:
                return ready.built_from()[1] >= store.revision()
            finally:
                ready.close()

        assert wait_until(caught_up)
        # No worker has served the server yet: its first request is a map hit.
        assert api.get().body.startswith(b"web-1.")
        hits = b'cloudseed_api_ready_map_total{outcome="hit"}'
        assert worker_metric(api, hits, 2) == 1
        assert worker_metric(api, b"cloudseed_api_cache_misses_total", 2) == 0

        # A frozen renderer writes nothing: the workers serve the change from the store.
        (renderer,) = api.renderer()
        os.kill(renderer, signal.SIGSTOP)
        try:
            rename(store, "while-frozen")
            assert wait_until(lambda: served_everywhere(api, b"while-frozen."), 5.0)
        finally:
            os.kill(renderer, signal.SIGCONT)
        # A killed one is replaced, and the map follows changes again.
        os.kill(renderer, signal.SIGKILL)
        assert wait_until(lambda: len(api.renderer() - {renderer}) == 1)
        rename(store, "after-restart")
        assert wait_until(caught_up)
        assert wait_until(lambda: served_everywhere(api, b"after-restart."), 5.0)
        assert len(api.workers()) == 2  # the workers never restarted


TOKEN = "/latest/api/token"
TOKEN_TTL = {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}


def take_token(api: ApiProcess) -> str:
    reply = http_request(api.port, TOKEN, {**WHO, **TOKEN_TTL}, method="PUT")
    assert reply.status == 200, reply
    return reply.body.decode()


def with_token(api: ApiProcess, token: str) -> int:
    return http_request(api.port, HOSTNAME, {**WHO, "X-aws-ec2-metadata-token": token}).status


def test_with_no_token_key_set_a_token_outlives_its_api_and_verifies_on_another(
        seeded: tuple[str, SqlStore]) -> None:
    """api.token_key unset: the store's key (migration 0009) is every host's and
    every start's, so a guest's token survives the API's restart (or crash) and a
    move to another API host on the same store."""
    url, _store = seeded
    with api_process(url, workers=2, CLOUDSEED_API_TOKEN_KEY="") as first:
        token = take_token(first)
        assert with_token(first, token) == 200
        with api_process(url, CLOUDSEED_API_TOKEN_KEY="") as second:
            assert with_token(second, token) == 200
            assert with_token(second, take_token(second)) == 200
            assert with_token(second, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) == 401
        first.process.kill()  # no graceful stop: a crash
    with api_process(url, CLOUDSEED_API_TOKEN_KEY="") as restarted:
        assert with_token(restarted, token) == 200
    # A configured key still wins: the store's tokens do not verify there.
    with api_process(url) as configured:
        assert with_token(configured, token) == 401
        assert with_token(configured, take_token(configured)) == 200


def test_every_store_makes_its_own_token_key(tmp_path: Path) -> None:
    keys = set()
    for name in ("one", "two"):
        with open_store(f"sqlite:///{tmp_path / name}.db") as store:
            key = store.token_key()
            assert len(key) == 64
            assert int(key, 16)
            assert store.token_key() == key
            keys.add(key)
    assert len(keys) == 2
