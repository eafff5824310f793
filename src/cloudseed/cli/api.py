"""``cloudseed api``: run the guest-facing metadata API (pre-forked workers)."""

from __future__ import annotations

import argparse
from typing import Any

from cloudseed.cli.context import load_cli_settings
from cloudseed.log import configure_logging
from cloudseed.settings import ApiMode


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = "run the metadata API that guests read (EC2 and OpenStack trees)"
    parser = subparsers.add_parser(
        "api",
        help=help_text,
        description=help_text
        + ". SIGHUP re-reads the settings and replaces the workers gracefully; "
        "SIGTERM lets in-flight requests finish, then stops.",
    )
    parser.add_argument("--host", help="address to listen on (default: api.host, 0.0.0.0)")
    parser.add_argument("--port", type=int, help="TCP port (default: api.port, 8775)")
    parser.add_argument("--unix-socket", metavar="PATH", help="also listen on this Unix socket")
    parser.add_argument("--workers", type=int, help="worker processes (default: api.workers, 1)")
    parser.add_argument(
        "--mode", choices=[m.value for m in ApiMode],
        help="how guests are identified (default: proxy)",
    )
    parser.add_argument("--admin-port", type=int, help="first /healthz + /metrics port")
    parser.add_argument("--store-url", help="store URL (default: store.url, SQLite in data_dir)")
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "api.host": args.host,
        "api.port": args.port,
        "api.unix_socket": args.unix_socket,
        "api.workers": args.workers,
        "api.mode": args.mode,
        "api.admin_port": args.admin_port,
    }


def run(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    settings = load_cli_settings(args, overrides)
    configure_logging(getattr(args, "log_level", "info"))
    from cloudseed.api.service import run_api

    return run_api(settings, reload_settings=lambda: load_cli_settings(args, overrides))
