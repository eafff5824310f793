"""The ``cloudseed`` command: global options, then one sub-command group per module.

Each module named in ``COMMAND_MODULES`` that exists as ``cloudseed.cli.<name>``
exposes ``register(subparsers)``; it adds its parsers and sets
``func=<callable(args) -> int>`` on each leaf. Modules that are not installed
(yet) are skipped, so command groups can be developed independently.

Expected failures (``CliError``, any ``CloudseedError``) print one line to
stderr and exit non-zero; only bugs produce tracebacks. A reader that closes
the pipe early (``cloudseed server list | head -1``) ends the command quietly
with 141, the status a shell reports for a tool stopped by SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
from collections.abc import Sequence

from cloudseed import __version__
from cloudseed.cli.context import EXIT_FAILURE, EXIT_USAGE, CliError
from cloudseed.errors import CloudseedError

COMMAND_MODULES: tuple[str, ...] = (
    "network",
    "router",
    "port",
    "keypair",
    "server",
    "phonehome",
    "identity",
    "bulk",
    "db",
    "serve",
    "control",
    "api",
    "agent",
    "proxy",
    "configdrive",
    "dataplane",
    "doctor",
    "demo",
    "libvirt",
    "config",
    "units",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudseed",
        description="Instance metadata for private clouds: OpenStack/EC2 metadata API, "
        "agent, namespace proxy, config drive, and the inventory behind them.",
    )
    parser.add_argument("--version", action="version", version=f"cloudseed {__version__}")
    parser.add_argument(
        "--config", metavar="FILE", help="TOML settings file (default: $CLOUDSEED_CONFIG)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level for long-running commands (default: info)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module_name = f"cloudseed.cli.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    func = getattr(args, "func", None)
    if func is None:
        # A group without its sub-command: show that group's help, not a traceback.
        helper = getattr(args, "print_help", None) or parser.print_help
        helper(sys.stderr)
        return EXIT_USAGE
    try:
        result = func(args)
        # Flush here, inside the handler, so a closed pipe is caught below.
        sys.stdout.flush()
    except BrokenPipeError:
        return _reader_went_away()
    except CliError as exc:
        print(f"cloudseed: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except CloudseedError as exc:
        print(f"cloudseed: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


def _reader_went_away() -> int:
    # Whatever is still buffered would fail again at interpreter exit and
    # print "Exception ignored …": point stdout at /dev/null first.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
