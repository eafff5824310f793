"""One /healthz answer for every server: 200 ok, or 200 degraded with the reasons."""

from __future__ import annotations

import json

from cloudseed.http.health import status_handler
from cloudseed.http.message import Request
from cloudseed.http.metrics import Registry


def _get(path: str, method: str = "GET") -> Request:
    return Request(method, path, "", [], b"", "127.0.0.1", "1.1", True)


def test_ok_degraded_and_metrics() -> None:
    problems: list[str] = []
    registry = Registry()
    handle = status_handler(registry, lambda: problems, lambda: {"revision": 7})
    ok = handle(_get("/healthz"))
    assert ok.status == 200  # type: ignore[union-attr]
    assert json.loads(ok.body) == {"status": "ok", "revision": 7}  # type: ignore[union-attr]
    assert b"cloudseed_degraded 0" in registry.render()
    problems.append("store unreachable since 2026-01-01T00:00:00Z: OperationalError: x")
    degraded = handle(_get("/healthz"))
    assert degraded.status == 200  # type: ignore[union-attr]
    assert json.loads(degraded.body) == {  # type: ignore[union-attr]
        "status": "degraded", "reasons": problems, "revision": 7}
    assert b"cloudseed_degraded 1" in registry.render()
    assert handle(_get("/healthz", "POST")).status == 405  # type: ignore[union-attr]
    assert handle(_get("/nope")).status == 404  # type: ignore[union-attr]
