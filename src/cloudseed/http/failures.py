"""A bug in a tier's handler: logged with its traceback and counted, never silent.

``http.wire`` and ``http.server`` catch an exception from a tier's
``dispatch`` or handler so that one bad request cannot kill the server; the
catch hands it here. Each tier makes one ``HandlerFailures`` on its own
metrics registry, so ``/metrics`` shows ``cloudseed_handler_errors_total``
next to the tier's other counters.

The log line is structured JSON (``cloudseed.log``) with the method, the
path without its query string (a query may carry a token), and the
traceback; headers and bodies, which may hold secrets, are never logged.
"""

from __future__ import annotations

from cloudseed.http.metrics import Registry
from cloudseed.log import get_logger

_log = get_logger("cloudseed.http")

MAX_LOGGED_PATH = 256


class HandlerFailures:
    def __init__(self, tier: str, registry: Registry | None = None) -> None:
        self.tier = tier
        # The tier's registry: ``http.fairness`` counts there too.
        self.registry = registry or Registry()
        self.counter = self.registry.counter(
            "cloudseed_handler_errors_total",
            "Requests whose handler raised (a bug): logged with a traceback, answered 500.",
            ("tier",),
        )

    def record(self, exc: BaseException, method: bytes | str, target: bytes | str) -> None:
        if isinstance(method, bytes):
            method = method.decode("latin-1")
        if isinstance(target, bytes):
            target = target.decode("latin-1")
        self.counter.inc(self.tier)
        _log.error(
            "request handler failed",
            exc_info=exc,
            extra={"fields": {
                "tier": self.tier,
                "method": method[:16],
                "path": target.partition("?")[0][:MAX_LOGGED_PATH],
            }},
        )


__all__ = ["HandlerFailures"]
