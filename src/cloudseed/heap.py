"""Keep the garbage collector's full passes off the guest path's tail latency.

A full (generation 2) collection walks every container object the process
holds. A tier that has just loaded its state (the API's store, settings and
start-up caches; the agent's address map over the whole fleet) holds
millions of them, and the benchmark saw single passes of 200–580 ms inside
a storm: every request in flight waited, which was the whole p99.9
(bench/README.md, "p99.9 outliers"). What is alive right after start-up
lives as long as the process, so it is collected once and moved into the
permanent generation (``gc.freeze``), which later collections never walk.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Collect once, then exempt every object alive now from later collections."""
    gc.collect()
    gc.freeze()
