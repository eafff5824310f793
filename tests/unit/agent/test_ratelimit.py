"""Token buckets per server, on an explicit clock."""

from __future__ import annotations

import pytest

from cloudseed.agent.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=2.0, burst=30, clock=clock)
    assert [limiter.acquire("srv") for _ in range(30)] == [0] * 30
    assert limiter.acquire("srv") == 1


def test_tokens_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=0.5, burst=1, clock=clock)
    assert limiter.acquire("srv") == 0
    assert limiter.acquire("srv") == 2  # one token takes two seconds
    clock.now += 2
    assert limiter.acquire("srv") == 0


def test_servers_have_separate_buckets() -> None:
    limiter = RateLimiter(rate_per_second=1.0, burst=1, clock=Clock())
    assert limiter.acquire("a") == 0
    assert limiter.acquire("a") >= 1
    assert limiter.acquire("b") == 0


def test_full_buckets_are_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cloudseed.agent.ratelimit.SWEEP_THRESHOLD_BUCKETS", 10)
    clock = Clock()
    limiter = RateLimiter(rate_per_second=10.0, burst=10, clock=clock)
    for i in range(10):
        limiter.acquire(f"s{i}")
    clock.now += 5  # every bucket is full again
    limiter.acquire("new")
    assert len(limiter) == 1


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate_per_second"):
        RateLimiter(0, 10)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1, 0)
