"""What the metadata API counts and logs.

Metrics are per worker process (each has its own registry and admin port).
The access log is one JSON line per guest request, buffered and written a
few times a second so that logging costs the hot path a string format, not
a syscall. It carries the server id, never a signature, token or secret.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import time
from collections.abc import Callable

from cloudseed.http.metrics import Registry

# Flush the access log at least this often, and whenever this many lines wait.
ACCESS_LOG_FLUSH_SECONDS = 0.2
ACCESS_LOG_MAX_LINES = 256
# Raw paths in the log are cut here; a junk path is evidence, not a payload.
ACCESS_LOG_MAX_PATH_CHARS = 256


class ApiMetrics:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.requests = registry.counter(
            "cloudseed_api_requests_total",
            "Guest requests by path family and status.",
            ("family", "status"),
        )
        self.latency = registry.histogram(
            "cloudseed_api_request_duration_seconds",
            "Time from parsed request to response, by path family.",
            ("family",),
        )
        self.cache_hits = registry.counter(
            "cloudseed_api_cache_hits_total", "Requests answered from a rendered server."
        )
        self.cache_misses = registry.counter(
            "cloudseed_api_cache_misses_total", "Requests that had to load and render a server."
        )
        self.renders = registry.counter(
            "cloudseed_api_renders_total", "Servers loaded for rendering (one per load)."
        )
        self.prefetched = registry.counter(
            "cloudseed_api_prefetched_servers_total",
            "Servers read in bulk (at start or from the change feed) before a guest asked.",
        )
        self.prefetch_failures = registry.counter(
            "cloudseed_api_prefetch_failures_total",
            "Bulk reads that failed; their servers take the lazy path.",
        )
        self.ready_map = registry.counter(
            "cloudseed_api_ready_map_total", "Lookups of servers not held by the worker in the "
            "per-host ready map, by outcome: hit (served from it), stale (older than a change "
            "this worker has seen, or other options), absent (not in it, or no map yet).",
            ("outcome",))
        self.section_renders = registry.counter(
            "cloudseed_api_section_renders_total",
            "Sections (a version directory of one server) rendered on first request.",
        )
        self.tokenless = registry.counter(
            "cloudseed_api_tokenless_requests_total",
            "Metadata reads without a session token (IMDSv1 style).",
        )
        self.token_rejections = registry.counter(
            "cloudseed_api_token_rejections_total",
            "Metadata reads refused for a missing, invalid or expired token.",
            ("reason",),
        )
        self.signature_failures = registry.counter(
            "cloudseed_api_signature_failures_total",
            "Proxied requests whose X-Instance-ID-Signature did not verify.",
        )
        self.vendordata_failures = registry.counter(
            "cloudseed_api_vendordata_failures_total",
            "Dynamic vendordata targets left out of a render, by reason.",
            ("target", "reason"),
        )
        self.phone_home_mismatches = registry.counter(
            "cloudseed_api_phone_home_mismatches_total",
            "Phone-home POSTs refused because instance_id named another server.",
        )
        self.invalidations = registry.counter(
            "cloudseed_api_invalidations_total",
            "Servers dropped from the cache by the change feed.",
        )

    def served(self, family: str, status: int, seconds: float) -> None:
        """Count one answered request: ``requests`` and ``latency`` at once.

        The hot path's whole metrics cost, so it updates the two series in
        place (``Counter.values``; ``Histogram.series``: bucket counts, then
        sum, then count) instead of going through ``inc`` and ``observe``.
        """
        key = (family, status_label(status))
        values = self.requests.values
        values[key] = values.get(key, 0.0) + 1.0
        latency = self.latency
        series = latency.series.get(key[:1])
        if series is None:
            latency.observe(seconds, family)
            return
        index = bisect.bisect_left(latency.buckets, seconds)
        if index < len(latency.buckets):
            series[index] += 1
        series[-2] += seconds
        series[-1] += 1

    def hit(self) -> None:
        """A request found its server in the cache (``cache_hits.inc()``, in place)."""
        values = self.cache_hits.values
        values[()] = values.get((), 0.0) + 1.0

    def read_without_token(self) -> None:
        """``tokenless.inc()``, in place."""
        values = self.tokenless.values
        values[()] = values.get((), 0.0) + 1.0


_STATUS_LABELS: dict[int, str] = {}


def status_label(status: int) -> str:
    label = _STATUS_LABELS.get(status)
    if label is None:
        label = _STATUS_LABELS[status] = str(status)
    return label


class AccessLog:
    """Buffered JSON access lines on a file descriptor (stderr by default)."""

    __slots__ = ("_clock", "_fd", "_lines", "_loop", "_second", "_stamp", "_timer")

    def __init__(self, fd: int = 2, clock: Callable[[], float] = time.time) -> None:
        self._fd = fd
        self._clock = clock
        self._lines: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""

    def record(  # noqa: PLR0917 - one positional per log field, on the hot path
        self, method: str, path: str, status: int, server_id: str, peer: str, seconds: float
    ) -> None:
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        millis = int((now - second) * 1000)
        self._lines.append(
            f'{{"ts":"{self._stamp}.{millis:03d}Z","level":"info","logger":"cloudseed.api.access",'
            f'"event":"request","method":{json.dumps(method[:16])},'
            f'"path":{json.dumps(path[:ACCESS_LOG_MAX_PATH_CHARS])},"status":{status},'
            f'"server_id":{json.dumps(server_id)},"peer":{json.dumps(peer)},'
            f'"duration_ms":{seconds * 1000:.3f}}}\n'
        )
        if len(self._lines) >= ACCESS_LOG_MAX_LINES:
            self.flush()
        elif self._timer is None:
            try:
                loop = self._loop or asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._loop = loop
            self._timer = loop.call_later(ACCESS_LOG_FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        data = "".join(self._lines).encode("utf-8", "replace")
        self._lines.clear()
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except BlockingIOError:
            pass  # a stalled log reader must not stall guests; drop the rest
        except OSError:
            pass
