"""``cloudseed agent``: the metadata agent on its Unix socket."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from cloudseed.cli.context import load_cli_settings
from cloudseed.log import configure_logging


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="run the metadata agent (Unix socket between namespace proxies and the API)",
        description="Resolve (router|network, guest IP) to a server, sign its identity and "
        "forward guest requests to the metadata API. Settings: [agent] and shared_secret.",
    )
    parser.add_argument("--store-url", help="store URL (default: store.url / SQLite in data_dir)")
    parser.add_argument("--socket", dest="socket_path", help="agent Unix socket path")
    parser.add_argument("--socket-mode", type=lambda s: int(s, 8), help="socket mode, octal")
    parser.add_argument("--socket-owner", help="socket owner, USER or USER:GROUP")
    parser.add_argument("--api-url", help="metadata API: http(s)://HOST:PORT or unix:/PATH")
    parser.add_argument("--metrics-socket", help="serve /healthz and /metrics on this socket")
    parser.add_argument("--metrics-port", type=int, help="TCP port for /healthz and /metrics")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        f"agent.{name}": getattr(args, name)
        for name in ("socket_path", "socket_mode", "socket_owner", "api_url",
                     "metrics_socket", "metrics_port")
    }
    settings = load_cli_settings(args, overrides)
    configure_logging(getattr(args, "log_level", "info"))
    from cloudseed.agent.server import run_agent
    from cloudseed.http.server import install_uvloop
    from cloudseed.store import open_store_from_settings

    # The agent only reads; migrating is `cloudseed serve`'s or `cloudseed db`'s job.
    store = open_store_from_settings(settings.store, upgrade=False)
    install_uvloop()
    try:
        asyncio.run(_until_signalled(run_agent(store, settings.agent,
                                               settings.shared_secret.reveal().encode())))
    finally:
        store.close()
    return 0


async def _until_signalled(main: Any) -> None:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
