"""``GET /v1/servers/{server}/audit``: a server's access audit, newest first."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from cloudseed.errors import Invalid
from cloudseed.store.protocol import Store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _positive_int(query: Mapping[str, str], name: str, default: int | None,
                  most: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= (most or 2**62):
        bound = f"1 and {most}" if most else "1 and 2^62"
        raise Invalid(name, f"must be a whole number between {bound}")
    return int(raw)


def server_audit(store: Store, ref: str, query: Mapping[str, str]) -> dict[str, Any]:
    """``limit`` records (default 100, at most 1000) older than record ``before``;
    ``next_before`` pages further back (null at the end)."""
    limit = _positive_int(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    assert limit is not None
    before = _positive_int(query, "before", None)
    server_id = store.get_server(ref).id
    records = store.list_audit(server_id, limit, before)
    return {
        "records": [dataclasses.asdict(record) for record in records],
        "next_before": records[-1].id if len(records) == limit else None,
    }
