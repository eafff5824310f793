"""A store wrapper that records which thread calls what, and can hold the address map's build."""

from __future__ import annotations

import threading
from typing import Any

from cloudseed.store import SqlStore


class CountingStore:
    """The store, recording which thread calls what; ``hold`` blocks the map's build."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.calls: list[tuple[str, str]] = []
        self.hold = threading.Event()
        self.hold.set()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not callable(value):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, threading.current_thread().name))
            if name == "scan_resolution":
                self.hold.wait(10)
            return value(*args, **kwargs)

        return counted
