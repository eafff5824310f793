from __future__ import annotations

import asyncio

import pytest

from cloudseed.api.cache import MISSING, LoadOnceCache


class Source:
    """A loader whose answers the test releases one by one."""

    def __init__(self) -> None:
        self.version = 1
        self.calls = 0
        self.gate = asyncio.Event()

    async def load(self, key: str) -> str:
        self.calls += 1
        seen = self.version
        await self.gate.wait()
        return f"{key}@{seen}"


def test_concurrent_gets_for_a_cold_key_load_once() -> None:
    async def scenario() -> None:
        source = Source()
        cache: LoadOnceCache[str, str] = LoadOnceCache(source.load, 10)
        waiters = [asyncio.ensure_future(cache.get_or_load("a")) for _ in range(20)]
        await asyncio.sleep(0)
        source.gate.set()
        assert await asyncio.gather(*waiters) == ["a@1"] * 20
        assert source.calls == 1
        assert cache.entries["a"] == "a@1"

    asyncio.run(scenario())


def test_a_drop_during_a_load_makes_it_load_again() -> None:
    async def scenario() -> None:
        source = Source()
        cache: LoadOnceCache[str, str] = LoadOnceCache(source.load, 10)
        waiter = asyncio.ensure_future(cache.get_or_load("a"))
        while source.calls == 0:
            await asyncio.sleep(0)
        source.version = 2  # the store changed while the first read was in flight...
        cache.drop(["a"])  # ...and the feed said so
        source.gate.set()
        assert await waiter == "a@2"
        assert source.calls == 2

    asyncio.run(scenario())


def test_drop_removes_only_the_named_keys() -> None:
    async def scenario() -> None:
        source = Source()
        source.gate.set()
        cache: LoadOnceCache[str, str] = LoadOnceCache(source.load, 10)
        for key in "abc":
            await cache.get_or_load(key)
        cache.drop(["b"])
        assert set(cache.entries) == {"a", "c"}
        assert cache.entries.get("b", MISSING) is MISSING

    asyncio.run(scenario())


def test_the_cache_is_bounded_oldest_first() -> None:
    async def scenario() -> None:
        source = Source()
        source.gate.set()
        cache: LoadOnceCache[str, str] = LoadOnceCache(source.load, 3)
        for key in "abcde":
            await cache.get_or_load(key)
        assert list(cache.entries) == ["c", "d", "e"]

    asyncio.run(scenario())


def test_a_failed_load_is_not_cached_and_reaches_every_waiter() -> None:
    async def scenario() -> None:
        calls = 0

        async def broken(key: str) -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            raise RuntimeError("database down")

        cache: LoadOnceCache[str, str] = LoadOnceCache(broken, 3)
        results = await asyncio.gather(
            cache.get_or_load("a"), cache.get_or_load("a"), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        assert calls == 1
        assert "a" not in cache.entries
        with pytest.raises(RuntimeError):
            await cache.get_or_load("a")

    asyncio.run(scenario())
