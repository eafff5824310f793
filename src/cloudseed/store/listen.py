"""PostgreSQL LISTEN/NOTIFY: wake readers the moment a write commits.

Each write transaction runs ``pg_notify(CHANNEL, <revision>)``; PostgreSQL
delivers it at commit. A ``ChangeListener`` owns one dedicated autocommit
connection that LISTENs and is used for nothing else, so notifications wait
in its socket between waits and none is lost. Callers still re-read the
revision after every wake and on a short fallback period, so a dropped
connection costs latency, never correctness.
"""

from __future__ import annotations

import os
import threading

import psycopg
from sqlalchemy.engine import URL

CHANNEL = "cloudseed_changes"


class ChangeListener:
    def __init__(self, url: URL) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._pid = 0
        # One thread at a time owns the connection; the others poll.
        self.lock = threading.Lock()

    def start(self) -> None:
        """Connect and LISTEN, unless already done in this process."""
        if self._conn is not None and self._pid == os.getpid() and not self._conn.closed:
            return
        # A connection inherited over fork belongs to the parent: drop it unclosed.
        self._conn = None
        conn = psycopg.connect(self._conninfo, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        self._conn, self._pid = conn, os.getpid()

    def wait_beyond(self, revision: int, timeout_seconds: float) -> bool:
        """Wait until a notification announces a revision > ``revision``; False on timeout."""
        if self._conn is None:
            return False
        try:
            for notify in self._conn.notifies(timeout=timeout_seconds):
                if _as_int(notify.payload) > revision:
                    return True
        except psycopg.Error:
            self.stop()
        return False

    def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()


def _as_int(payload: str) -> int:
    try:
        return int(payload)
    except ValueError:
        return 0
