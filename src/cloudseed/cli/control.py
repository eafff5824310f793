"""``cloudseed control``: the control API alone (``serve`` runs it as a tier)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from cloudseed.cli.context import CliError, load_cli_settings
from cloudseed.errors import CloudseedError
from cloudseed.log import configure_logging


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "control",
        help="run the control API (REST under /v1, token auth) on control.host:control.port",
        description="Run the control API: the inventory's REST interface that the "
        "`cloudseed` CLI talks to. Listens on control.host:control.port "
        "(default 127.0.0.1:8774); needs control.tokens. SIGHUP re-reads the settings "
        "and takes the new control.tokens and TLS certificate without a restart.",
    )
    parser.add_argument("--store-url", help="store URL (default: SQLite in the data dir)")
    parser.add_argument("--host", help="listen address (default: control.host)")
    parser.add_argument("--port", type=int, help="listen port (default: control.port)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_cli_settings(args, {"control.host": args.host, "control.port": args.port})
    from cloudseed.control.api import ControlApp, start_control
    from cloudseed.http.server import install_uvloop
    from cloudseed.store import open_store_from_settings

    configure_logging(args.log_level)
    install_uvloop()
    store = open_store_from_settings(settings.store)

    async def serve() -> None:
        server, app, (host, port) = await start_control(store, settings)
        scheme = "https" if settings.control.tls_cert_file else "http"
        print(f"cloudseed control: listening on {scheme}://{host}:{port}", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload, app)
        await stop.wait()
        await server.stop()
        app.close()

    def reload(app: ControlApp) -> None:
        # A bad new file keeps the old tokens and certificate, and says why.
        try:
            app.reload(load_cli_settings(args, {"control.host": args.host,
                                                "control.port": args.port}))
        except (CliError, CloudseedError) as exc:
            print(f"cloudseed control: reload refused: {exc}", file=sys.stderr)

    try:
        asyncio.run(serve())
    finally:
        store.close()
    return 0
