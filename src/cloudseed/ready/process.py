"""The renderer's process: one per host, forked and watched by ``cloudseed api``'s master.

The map of a store lives in ``<api.ready_map_dir>/<store id>`` (``store_id``
is random per store, migration 0008), so two stores never share a map, even
two PostgreSQL databases with the same default data directory.

It holds an exclusive ``flock`` on ``<map>/renderer.lock`` while it writes,
so a second ``cloudseed api`` on the same map (a misconfiguration) or a
replacement started before the old one has exited waits instead of writing
alongside it. SIGTERM stops it after the current transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal

from cloudseed.api.config import ApiConfig
from cloudseed.log import get_logger
from cloudseed.ready.renderer import Renderer, Stopped, retrying
from cloudseed.ready.store import ReadyMap, map_path
from cloudseed.settings import Settings
from cloudseed.store import open_store_from_settings

_log = get_logger("cloudseed.ready")


async def run_renderer(settings: Settings, config: ApiConfig) -> None:
    """Render until SIGTERM or SIGINT, into ``<config.ready_map>/<store id>``."""
    assert config.ready_map is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    store = open_store_from_settings(settings.store)
    try:
        try:
            store_id = await retrying(
                lambda: loop.run_in_executor(None, store.store_id), stop)
        except Stopped:
            return
        path = map_path(config.ready_map, store_id)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(path / "renderer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            await _locked(lock, stop)
            if stop.is_set():
                return
            ready = ReadyMap.writer(path, config.ready_map_max_bytes)
            try:
                await Renderer(store, ready, config).run(stop)
            finally:
                ready.close()
        finally:
            os.close(lock)
    finally:
        store.close()


async def _locked(fd: int, stop: asyncio.Event) -> None:
    """Take the lock, polling so that SIGTERM still stops a renderer that waits for it."""
    noted = False
    while not stop.is_set():
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not noted:
                _log.warning("ready map: another renderer holds it; waiting")
                noted = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


__all__ = ["run_renderer"]
