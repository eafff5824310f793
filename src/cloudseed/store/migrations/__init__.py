"""Alembic migrations for the store; run through ``cloudseed.store.migrate``."""
