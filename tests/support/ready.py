"""A real renderer (ready/renderer.py) in its own process, for tests.

It writes a real LMDB map from a real store, as ``cloudseed api``'s renderer
process does. It must be another process: LMDB opens an environment once per
process (its locks belong to the process), and the test and the in-process
apps read the map here. ``python -m tests.support.ready URL SETTINGS_JSON`` is
the child.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudseed.api.config import check_api_settings
from cloudseed.ready.renderer import Renderer
from cloudseed.ready.store import ReadyMap, map_path
from cloudseed.settings import Settings
from cloudseed.store import SqlStore, open_store
from tests.support.api import api_settings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningRenderer:
    process: subprocess.Popen[bytes]
    path: Path
    store: SqlStore
    _ready: ReadyMap | None = None

    @property
    def ready(self) -> ReadyMap:
        """The map, read-only, shared with the apps of this process."""
        if self._ready is None:
            self._ready = ReadyMap.reader(self.path)
            assert self._ready is not None, f"no map at {self.path}"
        return self._ready

    def caught_up(self, seconds: float = 90.0) -> None:
        """Wait until the map holds every change the store has."""
        deadline = time.monotonic() + seconds
        while not self._holds(self.store.revision()):
            if self.process.poll() is not None:
                raise AssertionError(f"the renderer exited: {self.process.stderr}")
            if time.monotonic() > deadline:
                raise AssertionError(f"map not caught up with the store at {self.store.revision()}")
            time.sleep(0.02)

    def _holds(self, revision: int) -> bool:
        if self._ready is None:
            # None until the renderer has made the map (and while it initialises it).
            self._ready = ReadyMap.reader(self.path)
        return self._ready is not None and self._ready.built_from()[1] >= revision

    def close(self) -> None:
        if self._ready is not None:
            self._ready.close()
            self._ready = None


def ready_map_of(settings: Settings, store: SqlStore) -> Path:
    base = check_api_settings(settings).ready_map
    assert base is not None
    return map_path(base, store.store_id())


@contextmanager
def running_renderer(store: SqlStore, **api: Any) -> Iterator[RunningRenderer]:
    """A renderer for ``store`` with ``api_settings(**api)`` (give ``ready_map_dir``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.ready", store.url, json.dumps(api)],
        cwd=REPO, stderr=subprocess.PIPE)
    running = RunningRenderer(process, ready_map_of(api_settings(**api), store), store)
    try:
        yield running
    finally:
        running.close()
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
        if process.returncode != 0:
            raise AssertionError(f"renderer exited {process.returncode}: {err.decode()[-3000:]}")


def _child(url: str, api: dict[str, Any]) -> None:
    settings = api_settings(**api)
    config = check_api_settings(settings)
    store = open_store(url)
    ready = ReadyMap.writer(ready_map_of(settings, store), config.ready_map_max_bytes)
    renderer = Renderer(store, ready, config)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await renderer.run(stop)

    try:
        asyncio.run(main())
    finally:
        ready.close()
        store.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _child(sys.argv[1], json.loads(sys.argv[2]))
