"""``/healthz`` and ``/metrics``: one handler and one answer format for every server.

``/healthz`` answers ``200`` with a JSON object whose ``status`` is ``ok`` or
``degraded``; a degraded answer lists ``reasons`` (for example "store
unreachable since 2026-01-01T10:00:00Z: OperationalError: ..."). The tier
adds its own details (revision, cache size, connections).

Degraded is still ``200`` on purpose: it means "serving what it can" (warm
servers from the cache, 503 with ``Retry-After`` for the rest), and a load
balancer that took every degraded instance out of rotation during a store
outage would turn partial service into none, since every instance of a tier
sees the same outage. So ``/healthz`` is a liveness-and-serving check, not a
"fully healthy" readiness gate: alert on ``status`` / the
``cloudseed_degraded`` gauge, route on the status code. A server that cannot
serve at all does not answer. See docs/DECISIONS.md.

A tier that is still loading what it answers from (the agent building its
address map) is not serving yet: ``/healthz`` says ``starting`` with ``503``
until it is, so a readiness probe waits for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from cloudseed.http.message import Handler, Request, Response, json_response
from cloudseed.http.metrics import CONTENT_TYPE, Registry

# Reasons the tier is degraded right now (empty when all is well).
Problems = Callable[[], Iterable[str]]
Details = Callable[[], dict[str, object]]
# False while the tier is starting (not serving yet).
Ready = Callable[[], bool]

GET_HEAD = ("GET", "HEAD")


def health_response(
    problems: Iterable[str], details: dict[str, object] | None = None, ready: bool = True
) -> Response:
    reasons = [p for p in problems if p]
    status = "degraded" if reasons else "ok"
    body: dict[str, object] = {"status": status if ready else "starting"}
    if reasons:
        body["reasons"] = reasons
    body.update(details or {})
    return json_response(200 if ready else 503, json.dumps(body).encode())


def status_handler(
    registry: Registry, problems: Problems, details: Details | None = None,
    ready: Ready | None = None,
) -> Handler:
    """``/healthz`` (JSON, see above) and ``/metrics`` (Prometheus text) for any of our servers."""
    registry.gauge(
        "cloudseed_degraded", "1 while /healthz says degraded, else 0.",
        read=lambda: float(any(problems())),
    )

    def handle(request: Request) -> Response:
        if request.method not in GET_HEAD:
            return Response(405, b"use GET\n", [("Allow", ", ".join(GET_HEAD))])
        if request.path == "/healthz":
            return health_response(problems(), details() if details else None,
                                   ready() if ready else True)
        if request.path == "/metrics":
            return Response(200, registry.render(), content_type=CONTENT_TYPE)
        return Response(404, b"try /healthz or /metrics\n")

    return handle


def no_problems() -> list[str]:
    return []


__all__ = ["Problems", "Ready", "health_response", "no_problems", "status_handler"]
