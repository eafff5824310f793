"""The shared front killed at scale: how long until every namespace answers, and what failed.

    sudo .venv/bin/python -m bench.front_restart --n 1000 --kills 3

``bench.namespaces``' inventory (N routers, N isolated networks, a stand-in
agent) served by ``dataplane.proxy_implementation = "shared"``. Client threads
inside ``--probes`` DHCP namespaces (each thread enters its own; a router
namespace's firewall admits only what its REDIRECT rule sends, so guests are
needed there: tests/privileged/test_front_handoff.py) connect in a loop
(every 20 ms) while the front is SIGKILLed
``--kills`` times, waiting for every probe to be answered again in between.
Per kill: ``recovered_s``, from the SIGKILL until every probed namespace has
answered again (the supervisor's back-off, the new front's start, and its
adoption of every namespace's kept listeners, routers' included); over the
run, once a probe has been answered: answers, connections refused (must be
0), requests cut (the killed front had accepted them), and the kept
listeners (``supervisor_sockets``: the front supervisor's open sockets, the
kept listeners and the hand-off channel). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.namespaces import STATE_BASE, StandInAgent, _cli, _env, _inventory, _sweep
from cloudseed.dataplane import supervise
from cloudseed.dataplane.desired import Names
from cloudseed.dataplane.plan import SHARED_FRONT_PROCESS
from cloudseed.proxy.listen import enter_netns

PAUSE_SECONDS = 0.02
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@dataclass
class Probe:
    namespace: str
    address: tuple[str, int]
    answers: list[float] = field(default_factory=list)  # wall clock of each 200
    refused: list[float] = field(default_factory=list)  # wall clock of each refusal
    cut: int = 0
    other: list[str] = field(default_factory=list)

    def run(self, stopping: threading.Event) -> None:
        enter_netns(self.namespace)  # this thread only
        while not stopping.is_set():
            try:
                with socket.create_connection(self.address, timeout=30) as sock:
                    sock.sendall(REQUEST)
                    head = sock.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    self.answers.append(time.time())
                elif head:
                    self.other.append(head[:40].decode("latin-1"))
                else:
                    self.cut += 1
            except ConnectionRefusedError:
                self.refused.append(time.time())
            except (ConnectionResetError, BrokenPipeError):
                self.cut += 1
            except OSError as exc:
                self.other.append(f"{type(exc).__name__}: {exc}")
            time.sleep(PAUSE_SECONDS)


def _front(state_dir: Path) -> supervise.ProcessState:
    return supervise.observe(str(state_dir))[SHARED_FRONT_PROCESS]


def run(n: int, kills: int, probes: int) -> dict[str, object]:
    root = f"bk{uuid.uuid4().hex[:6]}"
    state_dir = STATE_BASE / root
    tmp = Path(tempfile.mkdtemp(prefix="cloudseed-bench-restart-"))
    env = _env(root, state_dir, tmp, "shared")
    agent = StandInAgent(tmp / "agent.sock")
    names = Names(root)
    row: dict[str, object] = {"namespaces": 2 * n, "kills": kills}
    stopping = threading.Event()
    try:
        _inventory(env["CLOUDSEED_STORE_URL"], n)
        _cli(env, "dataplane", "sync")
        step = max(1, n // max(1, probes))
        chosen = [Probe(names.dhcp_namespace(f"inet-{i}"), ("169.254.169.254", 80))
                  for i in range(0, n, step)][:probes]
        threads = [threading.Thread(target=p.run, args=(stopping,), daemon=True)
                   for p in chosen]
        for thread in threads:
            thread.start()
        _wait(lambda: all(p.answers for p in chosen), "every probe answered",
              lambda: [(p.namespace, len(p.refused), p.cut, p.other[-1:]) for p in chosen
                       if not p.answers])
        recovered = []
        for _ in range(kills):
            front = _front(state_dir)
            assert front.child_pid is not None
            killed = time.time()
            os.kill(front.child_pid, signal.SIGKILL)
            _wait(lambda: all(p.answers and p.answers[-1] > killed  # noqa: B023
                              for p in chosen), "every probe answered again")
            recovered.append(max(next(t for t in p.answers if t > killed) for p in chosen)
                             - killed)
            time.sleep(1.0)
        supervisor = _front(state_dir).supervisor_pid
        row["supervisor_sockets"] = sum(
            1 for fd in Path(f"/proc/{supervisor}/fd").iterdir()
            if os.readlink(fd).startswith("socket:"))
        row["recovered_s"] = [round(r, 3) for r in recovered]
    finally:
        stopping.set()
        try:
            _cli(env, "dataplane", "teardown")
        finally:
            agent.close()
            _sweep(root)
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(state_dir, ignore_errors=True)
    row["probes"] = len(chosen)
    row["answers"] = sum(len(p.answers) for p in chosen)
    # Before its first answer the front may still be binding: that is start-up, not restart.
    row["refused"] = sum(1 for p in chosen for t in p.refused if p.answers and t > p.answers[0])
    row["cut"] = sum(p.cut for p in chosen)
    row["other"] = [o for p in chosen for o in p.other][:10]
    return row


def _wait(check: Callable[[], bool], what: str,
          why: Callable[[], object] = lambda: "", seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting until {what}: {why()}")
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.front_restart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100,
                        help="routers, and as many isolated networks (default 100)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the front")
    parser.add_argument("--probes", type=int, default=40,
                        help="namespaces with a client in them (default 40)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench.front_restart creates namespaces: run it as root")
    print(json.dumps(run(args.n, args.kills, args.probes)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
