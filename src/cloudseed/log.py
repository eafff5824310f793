"""Structured logs: one JSON object per line on stderr.

Components log events with fields (``log.info("request", extra={"fields":
{...}})``); ``JsonFormatter`` flattens them. Secrets are wrapped in
``settings.Secret`` and print as asterisks, so even a careless field cannot
leak one; header values that carry secrets are never passed to the logger.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(
                {
                    k: v if isinstance(v, (int, float, bool)) or v is None else str(v)
                    for k, v in fields.items()
                }
            )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("cloudseed")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("cloudseed") else f"cloudseed.{name}")
