"""Capture cloudseed's structured (JSON) log lines in a test, as operators would read them."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cloudseed.log import JsonFormatter


class JsonLines(logging.Handler):
    """Every record under the ``cloudseed`` logger, formatted by the real formatter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self.format(record))
        with self._guard:
            self.lines.append(line)

    def events(self, event: str) -> list[dict[str, Any]]:
        with self._guard:
            return [line for line in self.lines if line["event"] == event]


@contextmanager
def json_logs() -> Iterator[JsonLines]:
    logger = logging.getLogger("cloudseed")
    handler = JsonLines()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
