"""Load the fleet into a fresh store through cloudseed's bulk import, and time it."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

from bench import fleet


@dataclass(frozen=True)
class Imported:
    store_url: str
    servers: int
    seconds: float


def bulk_available() -> bool:
    return importlib.util.find_spec("cloudseed.control.bulk") is not None


def import_fleet(run_dir: Path, count: int) -> Imported:
    from cloudseed.control.bodies import parse_body
    from cloudseed.control.bulk import apply_document
    from cloudseed.control.document import Document
    from cloudseed.store import open_store

    url = f"sqlite:///{run_dir / 'cloudseed.db'}"
    document = fleet.fleet_document(count)
    store = open_store(url)
    try:
        # Timed from the raw document: validation is part of an import.
        started = time.perf_counter()
        apply_document(store, parse_body(Document, document))
        seconds = time.perf_counter() - started
    finally:
        store.close()
    return Imported(url, count, seconds)
