"""cloudseed.store — persistence, migrations and the change feed.

    store = open_store("sqlite:////var/lib/cloudseed/cloudseed.db")
    store = open_store("postgresql://cloudseed@db/cloudseed")
    store = open_store_from_settings(settings.store)

``open_store`` migrates the database to the newest schema first (pass
``upgrade=False`` to refuse an out-of-date schema instead). Open a store in
each process after ``fork()``; never hand one across.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudseed.store.migrate import upgrade
    from cloudseed.store.open import open_store, open_store_from_settings
    from cloudseed.store.sql import SqlStore

__all__ = ["SqlStore", "open_store", "open_store_from_settings", "upgrade"]

# Resolved on first use: importing the package (e.g. for store.protocol) must
# not pull in SQLAlchemy and Alembic, which cost seconds at CLI start-up.
_HOMES = {
    "open_store": "cloudseed.store.open",
    "open_store_from_settings": "cloudseed.store.open",
    "upgrade": "cloudseed.store.migrate",
    "SqlStore": "cloudseed.store.sql",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cloudseed.store' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
