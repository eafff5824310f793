"""Per-server token buckets: fair, family-blind rate limiting.

Neutron limits per source address in haproxy stick-tables, one address
family at a time (anchors §2.1, §12.5). The agent knows which *server* asks,
so it keys the bucket by server id: a guest gets one allowance whether it
asks over IPv4 or IPv6, from one address or several.

A bucket holds ``burst`` tokens and refills at ``rate_per_second``. The
burst is sized for boot: cloud-init reads ~30 paths in a few seconds, and
may do so twice (local and network stages) plus retries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

# Buckets that have refilled completely carry no state worth keeping; they
# are swept once this many exist, so memory follows active servers only.
SWEEP_THRESHOLD_BUCKETS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate_per_second must be > 0 and burst >= 1")
        self.rate = rate_per_second
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> int:
        """Take one token. Returns 0 when allowed, else the seconds to wait (≥ 1)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= SWEEP_THRESHOLD_BUCKETS:
                self._sweep(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            elapsed = now - bucket.updated
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        # Retry-After is whole seconds (RFC 9110); round up so that a client
        # that obeys it finds a token waiting.
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))

    def __len__(self) -> int:
        return len(self._buckets)

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if now - bucket.updated < full_after
        }
