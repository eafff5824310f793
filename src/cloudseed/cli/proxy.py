"""``cloudseed proxy``: one namespace's metadata proxy (built-in or haproxy), or the shared
front for every namespace of a host (``--listeners-file``)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from cloudseed.cli.agent import _until_signalled
from cloudseed.cli.context import EXIT_USAGE, CliError, load_cli_settings
from cloudseed.errors import ConfigError
from cloudseed.log import configure_logging
from cloudseed.settings import FrontAnswers, ProxyImplementation, Settings


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
    scope.add_argument(
        "--listeners-file", metavar="FILE",
        help="the shared front: listen in every namespace FILE names, each with its own "
        "router or network id (written by `dataplane sync`); SIGHUP re-reads it")
    parser.add_argument(
        "--listen", action="append", metavar="ADDR:PORT",
        help="169.254.169.254:80, [fe80::a9fe:a9fe%%DEV]:80, 0.0.0.0:9697 (repeatable; "
        "required with --router-id/--network-id)",
    )
    parser.add_argument("--agent-socket", help="the agent's socket (default: proxy.agent_socket)")
    parser.add_argument("--netns", help="enter /run/netns/NAME before binding")
    parser.add_argument("--status-socket", help="serve /healthz and /metrics on this socket")
    parser.add_argument("--implementation", choices=[m.value for m in ProxyImplementation],
                        help="default: proxy.implementation")
    parser.add_argument(
        "--answers", choices=[m.value for m in FrontAnswers],
        help="with --listeners-file: relay to the agent (default), or answer in this process "
        "from the agent's address map and the metadata app (co-located: needs the store and "
        "api settings). `dataplane sync` passes dataplane.front_answers here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.listeners_file:
        # Until the loop takes SIGHUP as "reload", it must not kill us: the
        # data plane may signal a front that is still starting (it reads the
        # file at start anyway).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    overrides: dict[str, Any] = {
        "proxy.agent_socket": args.agent_socket,
        "proxy.implementation": args.implementation,
    }
    settings = load_cli_settings(args, overrides)
    configure_logging(getattr(args, "log_level", "info"))
    from cloudseed.proxy.listen import ListenAddress
    from cloudseed.proxy.relay import ProxyScope

    implementation = settings.proxy.implementation
    if args.listeners_file:
        if args.listen or args.netns or implementation == ProxyImplementation.HAPROXY:
            raise CliError("--listeners-file runs the shared front: it takes neither --listen "
                           "nor --netns, and haproxy cannot serve it", EXIT_USAGE)
        return _run_shared(settings, args)
    if args.answers:
        raise CliError("--answers chooses how the shared front answers: give it with "
                       "--listeners-file", EXIT_USAGE)
    if implementation == ProxyImplementation.SHARED:
        raise CliError("the shared front serves many namespaces: give --listeners-file FILE "
                       "(dataplane sync writes it), or --implementation builtin", EXIT_USAGE)
    if not args.listen:
        raise CliError("--listen ADDR:PORT is required with --router-id/--network-id",
                       EXIT_USAGE)
    try:
        scope = ProxyScope(router_id=args.router_id or "", network_id=args.network_id or "")
        listeners = [ListenAddress.parse(text) for text in args.listen]
    except ConfigError as exc:
        raise CliError(exc.message, EXIT_USAGE) from None
    if implementation == ProxyImplementation.HAPROXY:
        return _run_haproxy(settings, scope, listeners, args)
    return _run_builtin(settings, scope, listeners, args)


def _run_shared(settings: Settings, args: argparse.Namespace) -> int:
    from cloudseed.http.server import install_uvloop
    from cloudseed.proxy.front import run_front

    install_uvloop()
    if args.answers != FrontAnswers.CO_LOCATED.value:
        asyncio.run(_until_signalled(run_front(
            args.listeners_file, settings.proxy.agent_socket, settings.proxy,
            args.status_socket or "")))
        return 0
    from cloudseed.api.config import check_api_settings
    from cloudseed.proxy.colocated import ColocatedAnswers, colocated_settings
    from cloudseed.store import open_store_from_settings

    # Bad api settings refuse to start here, naming the setting, before any listener.
    check_api_settings(colocated_settings(settings))
    store = open_store_from_settings(settings.store)
    try:
        asyncio.run(_until_signalled(run_front(
            args.listeners_file, settings.proxy.agent_socket, settings.proxy,
            args.status_socket or "", colocated=lambda front: ColocatedAnswers(
                store, settings, front.registry, front.count_status))))
    finally:
        store.close()
    return 0


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
    from cloudseed.proxy.listen import bind_sockets, enter_netns

    # We supervise haproxy, so we hold its listeners: they stay open while it
    # restarts or is replaced (handed to us in turn when we are supervised).
    sockets = take("proxy")
    if not sockets:
        if args.netns:
            enter_netns(args.netns)
        sockets = bind_sockets(listeners)
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
