"""``cloudseed serve``: the whole stack on one machine, each tier its own process.

It prepares what the tiers share — the data directory, the store's schema,
generated secrets, the agent's socket path — then starts the control API, the
metadata API, the agent and the config drive keeper (and, with ``--proxy``,
loopback proxies) under a supervisor that restarts any tier that crashes.
The embedded SQLite store is the default; point ``store.url`` at PostgreSQL
to share the inventory with other hosts.

SIGHUP reloads: the control API and the metadata API re-read their settings
in place; the agent, the config drive keeper and the loopback proxies are
replaced by fresh processes on the same sockets. SIGTERM or SIGINT stops
every tier.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from cloudseed.cli.context import CliError, load_cli_settings
from cloudseed.errors import ConfigError
from cloudseed.log import configure_logging
from cloudseed.secret_files import secret_environment
from cloudseed.settings import Settings
from cloudseed.supervisor import (
    Child,
    InstanceRunning,
    Supervisor,
    become_subreaper,
    hold_instance_lock,
)

TIERS = ("control", "api", "agent", "configdrive")
# Tiers that re-read their settings on SIGHUP in place (the API master replaces
# its workers, the control API swaps tokens and TLS). The others have no reload
# of their own, so serve replaces them: the new process starts on the same
# inherited sockets before the old one is asked to stop, so no client is refused.
RELOAD_IN_PLACE = frozenset({"control", "api"})
# The command each tier runs, where it is not just the tier's name.
TIER_COMMANDS: dict[str, tuple[str, ...]] = {"configdrive": ("configdrive", "keep")}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the whole stack on this machine "
        "(control API, metadata API, agent, config drive keeper)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--tiers",
        default=",".join(TIERS),
        help=f"comma-separated tiers to run (default: {','.join(TIERS)})",
    )
    parser.add_argument(
        "--proxy",
        action="append",
        default=[],
        metavar="NETWORK_ID=ADDR:PORT",
        help="also run a metadata proxy on ADDR:PORT for a network (repeatable); "
        "the data plane starts the real per-namespace proxies",
    )
    parser.add_argument("--store-url", help="store URL (default: SQLite in the data dir)")
    parser.set_defaults(func=run)


def stack_environment(settings: Settings) -> dict[str, str]:
    """Environment shared by every tier: store, secrets, agent socket."""
    env = {
        "CLOUDSEED_STORE_DATA_DIR": str(settings.data_dir),
        # The store URL too, when it carries a password: by file, never by value.
        **secret_environment(settings, os.environ),
    }
    # /run is root's; a non-root stack keeps its socket in the data dir, unless
    # its directory is there and ours (systemd's RuntimeDirectory=cloudseed).
    socket_path = settings.agent.socket_path
    if os.geteuid() != 0 and not _can_create_in(Path(socket_path).parent):
        socket_path = str(settings.data_dir / "run" / "metadata_proxy")
    env["CLOUDSEED_AGENT_SOCKET_PATH"] = socket_path
    env["CLOUDSEED_PROXY_AGENT_SOCKET"] = socket_path
    return env


def _can_create_in(directory: Path) -> bool:
    if directory.is_dir():
        return os.access(directory, os.W_OK | os.X_OK)
    return os.access(directory.parent, os.W_OK | os.X_OK)


def build_children(args: argparse.Namespace, env: dict[str, str]) -> list[Child]:
    base = [sys.executable, "-m", "cloudseed"]
    if args.config:
        base += ["--config", args.config]
    base += ["--log-level", args.log_level]
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = sorted(set(tiers) - set(TIERS))
    if unknown:
        raise CliError(f"unknown tier(s) {', '.join(unknown)}; choose from {', '.join(TIERS)}")
    children = [Child(tier, [*base, *TIER_COMMANDS.get(tier, (tier,))], env) for tier in tiers]
    for spec in args.proxy:
        network_id, sep, listen = spec.partition("=")
        if not sep or not listen:
            raise CliError(f"--proxy {spec!r}: use NETWORK_ID=ADDR:PORT")
        argv = [
            *base,
            "proxy",
            "--listen",
            listen,
            "--network-id",
            network_id,
            "--agent-socket",
            env["CLOUDSEED_AGENT_SOCKET_PATH"],
        ]
        children.append(Child(f"proxy {listen}", argv, env))
    return children


def prepare(settings: Settings) -> dict[str, str]:
    """Data dir, schema and secrets; returns the environment for the tiers."""
    from cloudseed.store.engine import secure_data_dir

    secure_data_dir(settings.data_dir)
    from cloudseed.store import upgrade

    upgrade(settings.store.resolved_url())
    return stack_environment(settings)


def open_sockets(settings: Settings, tiers: list[Child],
                 env: dict[str, str]) -> None:
    """Open every tier's listening sockets here, once, and hand them to the tier.

    They outlive the tier's process: while a tier restarts, its clients wait
    in the backlog instead of being refused (``http.inherit``).
    """
    from cloudseed.api.service import open_sockets as api_sockets
    from cloudseed.http.inherit import open_tcp, open_unix
    from cloudseed.proxy.listen import ListenAddress, bind_socket

    for child in tiers:
        if child.name == "control":
            child.sockets = [("control", open_tcp(settings.control.host, settings.control.port))]
        elif child.name == "api":
            child.sockets = api_sockets(settings.api)
        elif child.name == "agent":
            agent = settings.agent
            child.sockets = [("agent", open_unix(
                env["CLOUDSEED_AGENT_SOCKET_PATH"], mode=agent.socket_mode,
                backlog=agent.socket_backlog, setting="agent.socket_path"))]
        elif child.name.startswith("proxy "):
            sock = bind_socket(ListenAddress.parse(child.name.removeprefix("proxy ")))
            sock.listen(1024)
            child.sockets = [("proxy", sock)]


def run(args: argparse.Namespace) -> int:
    from cloudseed.store.engine import redacted_url, secure_data_dir

    settings = load_cli_settings(args)
    configure_logging(args.log_level)
    secure_data_dir(settings.data_dir)
    lock = settings.data_dir / "serve.pid"
    try:
        hold_instance_lock(lock, f"cloudseed serve for {settings.data_dir}",
                           "kill {pid}; it stops every tier it runs")
    except InstanceRunning as exc:
        raise CliError(str(exc)) from None
    env = prepare(settings)
    children = build_children(args, env)
    try:
        open_sockets(settings, children, env)
    except (ConfigError, OSError) as exc:
        message = exc.message if isinstance(exc, ConfigError) else str(exc)
        raise CliError(f"cannot listen: {message}") from None
    print(
        f"cloudseed serve: store {redacted_url(settings.store.resolved_url())}; "
        f"tiers {', '.join(c.name for c in children)}; Ctrl-C stops, SIGHUP reloads",
        file=sys.stderr,
    )
    become_subreaper()  # an API worker whose master died is ours to stop
    supervisor = Supervisor(children, adopt_orphans=True)
    supervisor.run_forever(handlers={signal.SIGHUP: lambda: reload(supervisor)})
    return 0


def reload(supervisor: Supervisor) -> None:
    """SIGHUP (``systemctl reload cloudseed``): every tier takes fresh settings."""
    for child in list(supervisor.children):
        if child.name in RELOAD_IN_PLACE:
            if child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGHUP)
        else:
            supervisor.replace(child, Child(child.name, child.argv, child.env))
