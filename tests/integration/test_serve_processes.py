"""``cloudseed serve`` as a process tree: one per data dir, nothing left however it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.support.ports import free_port
from tests.support.processes import alive, descendants, wait_until

READY_SECONDS = 120.0  # a loaded CI machine starts four Python processes slowly



def _env(tmp: Path) -> dict[str, str]:
    api = free_port()
    return {**os.environ,
            "CLOUDSEED_STORE_DATA_DIR": str(tmp / "data"),
            "CLOUDSEED_CONTROL_PORT": str(free_port()), "CLOUDSEED_API_HOST": "127.0.0.1",
            "CLOUDSEED_API_PORT": str(api),
            # Two workers: admin ports N and N + 1 must both be free.
            "CLOUDSEED_API_ADMIN_PORT": str(free_port(count=2)),
            "CLOUDSEED_API_WORKERS": "2", "CLOUDSEED_AGENT_API_URL": f"http://127.0.0.1:{api}",
            "CLOUDSEED_AGENT_SOCKET_PATH": str(tmp / "agent.sock"),
            "CLOUDSEED_AGENT_METRICS_PORT": "-1"}


def _cloudseed(*args: str) -> list[str]:
    return [sys.executable, "-m", "cloudseed", "--log-level", "warning", *args]


@contextmanager
def _serve(tmp: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    env = _env(tmp)
    serve = subprocess.Popen(_cloudseed("serve", "--tiers", "control,api,agent"), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Up: the agent and both API workers run (serve → api master → 2 workers).
        assert wait_until(lambda: len(descendants(serve.pid)) >= 5, READY_SECONDS)
        yield serve, env
    finally:
        serve.kill()
        serve.wait()


def test_a_second_serve_and_a_second_agent_are_refused_naming_the_first(tmp_path: Path) -> None:
    with _serve(tmp_path) as (serve, env):
        second = subprocess.run(_cloudseed("serve", "--tiers", "control,api,agent"), env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode != 0
        assert f"pid {serve.pid}" in second.stderr
        assert f"kill {serve.pid}" in second.stderr
        agent = subprocess.run(_cloudseed("agent"), env=env, capture_output=True, text=True,
                               timeout=60, check=False)
        assert agent.returncode != 0
        assert "agent.sock is in use by process" in agent.stderr
        assert (tmp_path / "agent.sock").is_socket()  # the live socket was not unlinked
        assert serve.poll() is None


# SIGTERM is the fault-injection test's last step; every signal is covered for the
# supervisor itself in tests/unit/test_supervisor.py.
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_serve_stopped_by_any_signal_leaves_no_process(tmp_path: Path, signum: int) -> None:
    with _serve(tmp_path) as (serve, _):
        tree = descendants(serve.pid)
        serve.send_signal(signum)
        serve.wait(60)
        assert wait_until(lambda: not any(alive(pid) for pid in tree), 30), [
            pid for pid in tree if alive(pid)]


def _tier_pid(serve: int, tier: str) -> int:
    """The serve child running ``cloudseed … <tier>`` (not an API worker)."""
    for pid in descendants(serve):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if parent == serve and tier.encode() in argv:
            return pid
    return 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def test_sighup_reloads_every_tier_and_stops_none(tmp_path: Path) -> None:
    with _serve(tmp_path) as (serve, env):
        # A tier signalled before it installed its handler would just be restarted.
        control_health = f"http://127.0.0.1:{env['CLOUDSEED_CONTROL_PORT']}/healthz"
        api_health = f"http://127.0.0.1:{env['CLOUDSEED_API_ADMIN_PORT']}/healthz"
        assert wait_until(lambda: _answers(control_health) and _answers(api_health),
                          READY_SECONDS)
        control, api, agent = (_tier_pid(serve.pid, t) for t in ("control", "api", "agent"))
        assert control
        assert api
        assert agent
        workers = set(descendants(api))
        serve.send_signal(signal.SIGHUP)
        # The agent has no reload of its own: serve starts a fresh one on the same socket.
        assert wait_until(lambda: _tier_pid(serve.pid, "agent") not in (0, agent), 60)
        assert wait_until(lambda: not alive(agent), 60)
        # The API master replaces its workers; the master and the control API stay.
        assert wait_until(lambda: bool(descendants(api)) and not workers & set(descendants(api)),
                          60)
        assert serve.poll() is None
        assert _tier_pid(serve.pid, "control") == control
        assert _tier_pid(serve.pid, "api") == api
        assert _answers(control_health)
        assert _answers(api_health)


def test_killing_the_api_master_leaves_no_orphan_holding_the_port(tmp_path: Path) -> None:
    with _serve(tmp_path) as (serve, _):
        master = next(pid for pid in descendants(serve.pid)
                      if b"api" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                      and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
                      == str(serve.pid))
        workers = descendants(master)
        assert len(workers) >= 2  # its workers (and anything they started)
        os.kill(master, signal.SIGKILL)
        # The old workers drain and go; a new master and its workers take over.
        assert wait_until(lambda: not any(alive(pid) for pid in workers), 30)
        assert wait_until(lambda: len(descendants(serve.pid)) >= 5, READY_SECONDS)
        assert serve.poll() is None
