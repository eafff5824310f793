"""Clients asking in a loop while a server is killed: what was refused, what was cut.

``hammering`` runs one ``HAMMER`` process per client (inside a guest
namespace via ``ip netns exec``, or on the host), each asking for one URL
until told to stop and checking every answer is its own (the body contains
its token: a guest's instance uuid, a scope's router id). Each failure comes
back with when it happened and when its connection was established.

``kills`` records when each SIGKILL was sent and when the process was seen
gone; ``only_cut_in_flight`` then tells the failures a listening socket that
outlives its process cannot prevent (a request the killed process had
already accepted dies with it) from everything else: a refused or timed-out
connect, a wrong answer, or a connection cut that was established after the
process was gone (it waited in the backlog, so it must be answered).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from tests.support.processes import alive, wait_until

HAMMER = """
import http.client, json, signal, sys, time
host, port, path, token, pause = (sys.argv[1], int(sys.argv[2]), sys.argv[3],
                                  sys.argv[4].encode(), float(sys.argv[5]))
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
ok, problems = 0, []
while not stopping:
    conn = http.client.HTTPConnection(host, port, timeout=20)
    connected = None
    try:
        conn.connect()
        connected = time.time()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or token not in body:
            problems.append({"at": time.time(), "connected": connected,
                             "error": f"not its own answer: {resp.status} {body[:200]!r}"})
        else:
            ok += 1
            print("ok", file=sys.stderr, flush=True)
    except (OSError, http.client.HTTPException) as exc:
        problems.append({"at": time.time(), "connected": connected,
                         "error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()
    time.sleep(pause)
print(json.dumps({"ok": ok, "problems": problems}))
"""

# A request cut by the death of the process serving it ends like one of these.
CUT = ("RemoteDisconnected", "ConnectionResetError", "BrokenPipeError", "IncompleteRead",
       "BadStatusLine")


@dataclass(frozen=True)
class Client:
    name: str
    host: str  # as the socket module spells it: 169.254.169.254, fe80::a9fe:a9fe%eth0
    port: int
    path: str
    token: str
    netns: str = ""  # "" = the host's own namespace


@dataclass
class Kill:
    sent: float  # wall clock (time.time), comparable across namespaces
    gone: float


@dataclass
class Outcome:
    client: str
    ok: int
    problems: list[dict[str, object]] = field(default_factory=list)


@dataclass
class Hammering:
    answered: dict[str, int]  # live: answers so far, per client
    outcomes: list[Outcome] = field(default_factory=list)  # filled when the block ends

    def each_answered_again(self, times: int = 5, seconds: float = 30.0) -> bool:
        """Wait until every client has had ``times`` more answers (from whoever serves now)."""
        before = dict(self.answered)
        return wait_until(lambda: all(self.answered[c] >= n + times
                                      for c, n in before.items()), seconds)


@contextlib.contextmanager
def hammering(clients: Sequence[Client], pause: float = 0.05) -> Iterator[Hammering]:
    """Every client asks in a loop while the block runs (each answered once before it starts)."""
    run = Hammering(dict.fromkeys((c.name for c in clients), 0))
    processes = []
    for client in clients:
        prefix = ["ip", "netns", "exec", client.netns] if client.netns else []
        processes.append(subprocess.Popen(
            [*prefix, sys.executable, "-c", HAMMER, client.host, str(client.port), client.path,
             client.token, str(pause)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))

    def count(name: str, stream: IO[str]) -> None:
        for line in stream:
            if line.strip() == "ok":
                run.answered[name] += 1

    readers = [threading.Thread(target=count, args=(c.name, p.stderr), daemon=True)
               for c, p in zip(clients, processes, strict=True)]
    for reader in readers:
        reader.start()
    try:
        assert wait_until(lambda: all(run.answered.values()), 30), run.answered
        yield run
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for client, process in zip(clients, processes, strict=True):
            assert process.stdout is not None
            out = process.stdout.read()
            process.wait(60)
            if out.strip():
                result = json.loads(out)
                run.outcomes.append(Outcome(client.name, int(result["ok"]),
                                            list(result["problems"])))
            else:
                run.outcomes.append(Outcome(client.name, 0, [
                    {"error": f"client exited {process.returncode}"}]))
        for reader in readers:
            reader.join(10)


def kill(pid: int, successor: Callable[[], int]) -> Kill:
    """SIGKILL ``pid``; return when it was sent and gone, once ``successor()`` names another."""
    sent = time.time()
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not alive(pid), 10)
    gone = time.time()
    assert wait_until(lambda: successor() not in (0, pid), 30), "no successor started"
    return Kill(sent, gone)


def cut_in_flight(problem: dict[str, object], kills: Sequence[Kill]) -> bool:
    """Whether ``problem`` is a request the killed process had accepted: connected before
    it was gone, cut after the kill was sent."""
    connected, at = problem.get("connected"), problem.get("at")
    error = str(problem.get("error", ""))
    if not isinstance(connected, float) or not isinstance(at, float):
        return False
    return error.startswith(CUT) and any(
        connected <= k.gone and at >= k.sent for k in kills)


def only_cut_in_flight(outcomes: Sequence[Outcome], kills: Sequence[Kill]) -> int:
    """Assert every client was answered and every failure was a request in flight at a
    kill (at most one per client and kill); return how many were cut."""
    cut = 0
    for outcome in outcomes:
        assert outcome.ok > 0, outcome
        other = [p for p in outcome.problems if not cut_in_flight(p, kills)]
        assert other == [], (outcome.client, other[:5])
        assert len(outcome.problems) <= len(kills), outcome
        cut += len(outcome.problems)
    return cut
