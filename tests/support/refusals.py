"""Asserting that the control API refused a request and changed nothing."""

from __future__ import annotations

from typing import Any

from tests.support.control import Reply, RunningControl


def ok(reply: Reply, status: int = 200) -> Any:
    """The JSON body of a reply that must have ``status``."""
    assert reply.status == status, reply.body
    return reply.json() if reply.body else None


def refused(api: RunningControl, method: str, path: str, body: Any) -> dict[str, Any]:
    """Send a request that must be refused: a JSON 4xx, and ``/v1/export`` unchanged.

    Returns the error body with its ``status`` added.
    """
    before = api.call("GET", "/v1/export")
    assert before.status == 200
    reply = api.call(method, path, body)
    assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
    assert reply.headers["Content-Type"] == "application/json", reply.headers
    error = reply.json()
    assert isinstance(error, dict)
    assert error["message"]
    assert api.call("GET", "/v1/export").body == before.body, "a refused request changed the store"
    return {"status": reply.status, **error}
