"""GC pauses of a benchmarked tier, for ``bench/run --gc-log`` (explains p99.9 outliers).

``bench/run --gc-log`` puts this directory first on the tiers' PYTHONPATH, so
Python imports this module at start-up in every cloudseed process (workers
forked later inherit the callback). Each collection that takes 1 ms or more
is appended to ``$BENCH_GC_LOG`` as ``pid generation milliseconds
end-monotonic``; the harness keeps the ones inside a row's measured window
(CLOCK_MONOTONIC is the same clock in every process).
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

_LOG = os.environ.get("BENCH_GC_LOG", "")
# Collections shorter than this cannot explain a millisecond-scale tail.
_REPORT_SECONDS = 0.001
_started = [0.0]


def _watch(phase: str, info: dict[str, Any]) -> None:
    now = time.monotonic()
    if phase == "start":
        _started[0] = now
        return
    took = now - _started[0]
    if took >= _REPORT_SECONDS:
        with open(_LOG, "a") as log:
            log.write(f"{os.getpid()} {info['generation']} {took * 1000:.2f} {now:.6f}\n")


if _LOG:
    gc.callbacks.append(_watch)
