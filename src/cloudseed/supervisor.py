"""Keep a set of child processes running: start, restart on crash, stop cleanly.

Used by ``cloudseed serve`` to run each tier as its own process (so the tiers
use both cores and one crash does not take the others down). A child that
exits is restarted after a back-off that doubles up to ``MAX_BACKOFF_SECONDS``
and resets once the child has stayed up for ``STABLE_AFTER_SECONDS``. Stop is
SIGTERM, then SIGKILL after a grace period, as Neutron's ProcessMonitor does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cloudseed.log import get_logger

log = get_logger("supervisor")

MAX_BACKOFF_SECONDS = 8.0
STABLE_AFTER_SECONDS = 10.0
STOP_GRACE_SECONDS = 5.0


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 0.5
    restart_at: float = 0.0
    restarts: int = 0


class Supervisor:
    def __init__(self, children: Sequence[Child]) -> None:
        self.children = list(children)
        self._stopping = False

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        env = {**os.environ, **child.env}
        child.process = subprocess.Popen(child.argv, env=env)
        child.started_at = time.monotonic()
        log.info("started", extra={"fields": {"child": child.name, "pid": child.process.pid}})

    def poll(self) -> None:
        """Restart children that exited, honouring their back-off."""
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                uptime = now - child.started_at
                if uptime >= STABLE_AFTER_SECONDS:
                    child.backoff = 0.5
                log.warning(
                    "exited",
                    extra={
                        "fields": {
                            "child": child.name,
                            "code": process.returncode,
                            "restart_in_s": child.backoff,
                        }
                    },
                )
                child.process = None
                child.restart_at = now + child.backoff
                child.backoff = min(child.backoff * 2, MAX_BACKOFF_SECONDS)
            if child.process is None and not self._stopping and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)

    def run_forever(self, interval_seconds: float = 0.2) -> None:
        """Supervise until SIGTERM or SIGINT, then stop every child."""

        def request_stop(signum: int, frame: object) -> None:
            self._stopping = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            while not self._stopping:
                self.poll()
                time.sleep(interval_seconds)
        finally:
            self.stop()

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        self._stopping = True
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in self.children:
            child.process = None
