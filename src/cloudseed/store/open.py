"""Opening a store: URL → engine → migrated (or checked) schema → SqlStore."""

from __future__ import annotations

from cloudseed.settings import StoreSettings
from cloudseed.store.engine import create_store_engine, require_reachable, secure_data_dir
from cloudseed.store.migrate import require_head, upgrade_engine
from cloudseed.store.sql import DEFAULT_POLL_INTERVAL_SECONDS, SqlStore


def open_store(
    url: str,
    *,
    upgrade: bool = True,
    poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS,
) -> SqlStore:
    engine = create_store_engine(url)
    try:
        require_reachable(engine)
        if upgrade:
            upgrade_engine(engine)
        else:
            require_head(engine)
    except BaseException:
        engine.dispose()
        raise
    return SqlStore(engine, poll_interval_seconds)


def open_store_from_settings(settings: StoreSettings, *, upgrade: bool = True) -> SqlStore:
    """The configured store; an empty url means SQLite in ``data_dir``, created if missing."""
    if not settings.url:
        secure_data_dir(settings.data_dir)
    return open_store(
        settings.resolved_url(),
        upgrade=upgrade,
        poll_interval_seconds=settings.poll_interval_seconds,
    )
