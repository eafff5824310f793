"""Start, probe and stop the processes a benchmark row talks to.

Every server runs in the foreground as our child, logging to a file in the
run directory, and is stopped by its own pid (SIGTERM, then SIGKILL). A
service is ready when it answers an HTTP request on its listening address.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.probe import http_get

# Python tiers import a lot on start; a loaded 2-core machine can take a while.
READY_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 5.0


@dataclass
class Service:
    name: str
    argv: Sequence[str]
    target: str  # tcp:HOST:PORT or unix:PATH, what it serves on
    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    # Headers for the readiness probe (tiers that refuse unidentified requests
    # still answer them, with 400, which is enough to know they are up).
    # Where ``GET /healthz`` says 200 once the tier serves what it should (a
    # cloudseed tier answers while it still builds its map, then says "starting").
    health: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_after_s: float = 0.0

    def start(self) -> None:
        if self.target.startswith("unix:"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.target[5:])
        log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            list(self.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**inherited_environment(), **self.env},
            start_new_session=True,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = self.started_at + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} on start: "
                    f"{self.log_tail()}"
                )
            try:
                http_get(self.target, "/", timeout=1.0)
                if any(http_get(h, "/healthz", timeout=1.0).status != 200 for h in self.health):
                    raise ConnectionError("not ready yet")
            except OSError:
                time.sleep(0.05)
                continue
            self.ready_after_s = time.monotonic() - self.started_at
            return
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.target} within "
                           f"{READY_TIMEOUT_SECONDS:.0f} s")

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = (self.log_dir / f"{self.name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        # The service leads its own session: signal its group, so workers it
        # forked stop with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def inherited_environment() -> dict[str, str]:
    """Our environment minus CLOUDSEED_*: cloudseed reads every such variable as a
    setting and refuses unknown ones (CI exports CLOUDSEED_TEST_POSTGRES_DSN)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSEED_")}
