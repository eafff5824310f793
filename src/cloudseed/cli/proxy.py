"""``cloudseed proxy``: one namespace's metadata proxy, built-in or haproxy."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from cloudseed.cli.agent import _until_signalled
from cloudseed.cli.context import EXIT_USAGE, CliError, load_cli_settings
from cloudseed.errors import ConfigError
from cloudseed.log import configure_logging
from cloudseed.settings import ProxyImplementation, Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "proxy",
        help="run a namespace metadata proxy (built-in, or a supervised haproxy)",
        description="Listen where guests reach 169.254.169.254, remove every identity header "
        "a guest sends, add X-Forwarded-For and this router's or network's id, and forward "
        "to the agent's Unix socket.",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--router-id", help="serve a router namespace (X-Neutron-Router-ID)")
    scope.add_argument("--network-id", help="serve a network's DHCP namespace")
    parser.add_argument(
        "--listen", action="append", required=True, metavar="ADDR:PORT",
        help="169.254.169.254:80, [fe80::a9fe:a9fe%%DEV]:80, 0.0.0.0:9697 (repeatable)",
    )
    parser.add_argument("--agent-socket", help="the agent's socket (default: proxy.agent_socket)")
    parser.add_argument("--netns", help="enter /run/netns/NAME before binding")
    parser.add_argument("--status-socket", help="serve /healthz and /metrics on this socket")
    parser.add_argument("--implementation", choices=[m.value for m in ProxyImplementation],
                        help="default: proxy.implementation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        "proxy.agent_socket": args.agent_socket,
        "proxy.implementation": args.implementation,
    }
    settings = load_cli_settings(args, overrides)
    configure_logging(getattr(args, "log_level", "info"))
    from cloudseed.proxy.listen import ListenAddress
    from cloudseed.proxy.relay import ProxyScope

    try:
        scope = ProxyScope(router_id=args.router_id or "", network_id=args.network_id or "")
        listeners = [ListenAddress.parse(text) for text in args.listen]
    except ConfigError as exc:
        raise CliError(exc.message, EXIT_USAGE) from None
    if settings.proxy.implementation == ProxyImplementation.HAPROXY:
        return _run_haproxy(settings, scope, listeners, args)
    return _run_builtin(settings, scope, listeners, args)


def _run_builtin(settings: Settings, scope: Any, listeners: list[Any],
                 args: argparse.Namespace) -> int:
    from cloudseed.http.server import install_uvloop
    from cloudseed.proxy.listen import enter_netns
    from cloudseed.proxy.relay import run_relay

    if args.netns:
        enter_netns(args.netns)  # before the loop and its threads exist
    install_uvloop()
    asyncio.run(_until_signalled(run_relay(
        scope, settings.proxy.agent_socket, listeners, settings.proxy, args.status_socket or "")))
    return 0


def _run_haproxy(settings: Settings, scope: Any, listeners: list[Any],
                 args: argparse.Namespace) -> int:
    from cloudseed.http.inherit import LISTEN_FDS_START, take
    from cloudseed.proxy.haproxy import HaproxyProcess, config_for, render_config
    from cloudseed.proxy.listen import bind_socket, enter_netns

    # We supervise haproxy, so we hold its listeners: they stay open while it
    # restarts or is replaced (handed to us in turn when we are supervised).
    sockets = take("proxy")
    if not sockets:
        if args.netns:
            enter_netns(args.netns)
        sockets = [bind_socket(address) for address in listeners]
        for sock in sockets:
            sock.listen(1024)
    config_dir = Path(settings.proxy.haproxy_config_dir
                      or settings.data_dir / "ns-metadata-proxy")
    config = config_for(scope, listeners, settings.proxy.agent_socket, config_dir,
                        settings.proxy, status_socket=args.status_socket or "",
                        inherited_fds=range(LISTEN_FDS_START, LISTEN_FDS_START + len(sockets)))
    process = HaproxyProcess(config.uuid, config_dir, binary=settings.proxy.haproxy_binary,
                             sockets=[("proxy", sock) for sock in sockets])
    process.ensure(render_config(config))
    process.supervisor.run_forever()  # until SIGTERM/SIGINT/SIGHUP; then stops haproxy
    return 0
