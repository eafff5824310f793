"""``cloudseed db …``: the store's schema, run directly against the configured store."""

from __future__ import annotations

import argparse

from cloudseed.cli.context import add_group, emit, load_cli_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "db", "The store's database schema")
    for name, func, help_text in (
        ("upgrade", upgrade, "Bring the store's schema to this version's (safe to repeat)"),
        ("current", current, "Show the store's schema revision and the one this code needs"),
    ):
        sub = group.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--store-url",
            metavar="URL",
            help="store URL (default: store.url from settings; SQLite in the data dir)",
        )
        sub.set_defaults(func=func)
    for name, func, help_text in (
        ("backup", backup, "Write every row of the store (passwords and EC2 ids included) "
         "to FILE, mode 0600; safe while cloudseed runs"),
        ("restore", restore, "Load a backup FILE into an empty store, then migrate it to "
         "this version's schema"),
    ):
        sub = group.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("file", metavar="FILE", help="the backup file")
        sub.add_argument(
            "--store-url",
            metavar="URL",
            help="store URL (default: store.url from settings; SQLite in the data dir)",
        )
        sub.set_defaults(func=func)


def upgrade(args: argparse.Namespace) -> int:
    from cloudseed.store import migrate

    url = load_cli_settings(args).store.resolved_url()
    migrate.upgrade(url)
    print(f"store schema is at {migrate.head_revision()}")
    return 0


def current(args: argparse.Namespace) -> int:
    from cloudseed.store import migrate
    from cloudseed.store.engine import create_store_engine, require_reachable

    url = load_cli_settings(args).store.resolved_url()
    engine = create_store_engine(url)
    try:
        require_reachable(engine)
        emit(
            {"current": migrate.current_revision(engine), "head": migrate.head_revision()},
            "table",
        )
    finally:
        engine.dispose()
    return 0


def backup(args: argparse.Namespace) -> int:
    from cloudseed.store.backup import backup as write_backup

    url = load_cli_settings(args).store.resolved_url()
    counts = write_backup(url, args.file)
    print(f"backed up {sum(counts.values())} rows of {len(counts)} tables to {args.file}")
    return 0


def restore(args: argparse.Namespace) -> int:
    from cloudseed.store import migrate
    from cloudseed.store.backup import restore as load_backup

    url = load_cli_settings(args).store.resolved_url()
    counts = load_backup(url, args.file)
    print(
        f"restored {sum(counts.values())} rows of {len(counts)} tables from {args.file}; "
        f"store schema is at {migrate.head_revision()}"
    )
    return 0
