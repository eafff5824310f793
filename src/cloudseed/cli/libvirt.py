"""``cloudseed libvirt import|hook|sync``: servers from libvirt domains.

Every path ends in the control API's import (``POST /v1/import``), so the
inventory rules, the matching by id and MAC, and the one-transaction apply
are the import's. See ``cloudseed.libvirt.plan`` for what a domain becomes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloudseed.cli.context import (
    CliError,
    ControlClient,
    add_client_options,
    add_format_option,
    add_group,
    load_cli_settings,
    output,
    quote,
    read_bytes,
)
from cloudseed.errors import CloudseedError

# libvirt passes "-" where an argument does not apply.
HOOK_NO_ARGUMENT = "-"
# qemu hook operations after which the domain is about to run with this XML:
# prepare (before start), migrate (incoming migration), restore (from a save
# file). libvirt's hooks documentation lists them; every other one is ignored.
HOOK_REGISTERS_ON = frozenset({"prepare", "migrate", "restore"})
# libvirt 6.5+ runs every executable in qemu.d; the single qemu file may be someone else's.
HOOK_PATH = "/etc/libvirt/hooks/qemu.d/cloudseed"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "libvirt", "Servers from libvirt domains (import, hook, sync)")

    importer = group.add_parser(
        "import",
        help="Register or update servers from domain XML files (virsh dumpxml)",
        description="Register or update one server per domain XML file (as `virsh dumpxml` "
        "prints it): id = the domain's uuid, name, one port per interface with its MAC on "
        "the network it plugs into, fixed IPs from the libvirt network's DHCP host entries. "
        "Networks cloudseed does not know are created from their libvirt XML "
        "(--network-xml, else <libvirt.network_dir>/NAME.xml).",
    )
    importer.add_argument("domains", nargs="+", metavar="DOMAIN.xml", help="domain XML files")
    importer.add_argument("--network-xml", action="append", default=[], metavar="NET.xml",
                          help="a libvirt network's XML (virsh net-dumpxml); repeatable")
    _add_drive_options(importer)
    add_client_options(importer)
    add_format_option(importer)
    importer.set_defaults(func=import_files)

    hook = group.add_parser(
        "hook",
        help="libvirt's qemu hook: /etc/libvirt/hooks/qemu runs `cloudseed libvirt hook \"$@\"`",
        description="The qemu hook entry point. libvirtd runs /etc/libvirt/hooks/qemu as "
        "`qemu DOMAIN OPERATION SUB-OPERATION EXTRA` with the domain XML on stdin; on "
        "prepare, migrate and restore this registers or updates the server (and, with "
        "libvirt.hook_config_drive, writes its config drive). It never calls libvirtd, "
        "which waits for it. Failures are printed and exit 0 unless "
        "libvirt.hook_failure_blocks_start is set.",
    )
    hook.add_argument("domain", metavar="DOMAIN", help="the domain's name")
    hook.add_argument("operation", metavar="OPERATION", help="prepare, start, stopped, …")
    hook.add_argument("sub_operation", metavar="SUB-OPERATION", help="begin, end or -")
    hook.add_argument("extra", metavar="EXTRA", nargs="?", default=HOOK_NO_ARGUMENT,
                      help="extra argument, or -")
    add_client_options(hook)
    hook.set_defaults(func=run_hook)

    installer = group.add_parser(
        "install-hook",
        help="Install the qemu hook as <root>/etc/libvirt/hooks/qemu.d/cloudseed",
        description="Write <root>/etc/libvirt/hooks/qemu.d/cloudseed (mode 0755), a script "
        "that runs this cloudseed's `libvirt hook` with the settings file given by "
        "--config. libvirt 6.5 and later run every script in qemu.d, so other hooks stay. "
        "Restart libvirtd if it had no qemu hooks before.",
    )
    installer.add_argument("--root", default="/", metavar="DIR",
                           help="install under DIR (default: /)")
    installer.set_defaults(func=install_hook)

    sync = group.add_parser(
        "sync",
        help="Register or update every defined domain, read through the libvirt API",
        description="Read every defined domain (running or not) and the networks they use "
        "through libvirt (read-only), and register or update their servers in one import. "
        "Nothing is deleted.",
    )
    sync.add_argument("--uri", help="libvirt connection URI (default: libvirt.uri, "
                      "qemu:///system)")
    _add_drive_options(sync)
    add_client_options(sync)
    add_format_option(sync)
    sync.set_defaults(func=sync_domains)


def _add_drive_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-drive", action="store_true",
        help="also write each server's config drive to <configdrive.directory>/<uuid>.iso "
        "and print the <disk> element that attaches it (virsh attach-device --config)",
    )


# -- commands -------------------------------------------------------------------


def import_files(args: argparse.Namespace) -> int:
    from cloudseed.libvirt.xml import parse_domain, parse_network

    settings = load_cli_settings(args)
    domains = [parse_domain(read_bytes(path, "domain XML"), path) for path in args.domains]
    networks = {
        n.name: n
        for n in (parse_network(read_bytes(p, "--network-xml"), p) for p in args.network_xml)
    }
    networks.update(_networks_from_dir(settings.libvirt.network_dir, domains, networks))
    client = ControlClient.from_args(args)
    result = _register(client, domains, networks, args.config_drive, args)
    output(args, result)
    return 0


def run_hook(args: argparse.Namespace) -> int:
    # Always drain stdin: libvirtd writes the whole XML and must not see a broken pipe.
    from cloudseed.libvirt.xml import MAX_XML_BYTES

    xml = sys.stdin.buffer.read(MAX_XML_BYTES + 1)
    if args.operation not in HOOK_REGISTERS_ON:
        return 0
    try:
        settings = load_cli_settings(args)
    except CliError as exc:
        # Without settings there is no hook_failure_blocks_start: fail open.
        print(f"cloudseed libvirt hook: {args.domain}: {exc.message}", file=sys.stderr)
        return 0
    try:
        from cloudseed.libvirt.xml import parse_domain

        domain = parse_domain(xml, f"domain {args.domain} (stdin)")
        networks = _networks_from_dir(settings.libvirt.network_dir, [domain], {})
        client = ControlClient.from_args(args, timeout=settings.libvirt.hook_timeout_seconds)
        _register(client, [domain], networks, settings.libvirt.hook_config_drive, args)
    except (CliError, CloudseedError) as exc:
        message = exc.message
        print(f"cloudseed libvirt hook: {args.domain}: {message}", file=sys.stderr)
        return 1 if settings.libvirt.hook_failure_blocks_start else 0
    return 0


def sync_domains(args: argparse.Namespace) -> int:
    from cloudseed.libvirt.connection import LibvirtReader

    settings = load_cli_settings(args)
    with LibvirtReader(args.uri or settings.libvirt.uri) as reader:
        domains = reader.domains()
        networks = reader.all_networks()
    client = ControlClient.from_args(args)
    result = _register(client, domains, networks, args.config_drive, args)
    output(args, result)
    return 0


def install_hook(args: argparse.Namespace) -> int:
    import shlex

    from cloudseed.configdrive.atomic import write_atomically

    command = [sys.executable, "-m", "cloudseed"]
    config = getattr(args, "config", None) or os.environ.get("CLOUDSEED_CONFIG")
    if config:
        command += ["--config", str(Path(config).resolve())]
    script = (
        "#!/bin/sh\n"
        "# Installed by `cloudseed libvirt install-hook`. libvirtd runs it as\n"
        "# NAME DOMAIN OPERATION SUB-OPERATION EXTRA, with the domain XML on stdin.\n"
        f"exec {shlex.join(command)} libvirt hook \"$@\"\n"
    )
    path = Path(args.root) / HOOK_PATH.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, script.encode(), 0o755)
    path.chmod(0o755)  # whatever the umask: libvirtd must be able to run it
    print(f"installed {path}; restart libvirtd if it had no qemu hooks before")
    return 0


# -- shared ---------------------------------------------------------------------


def _register(
    client: ControlClient,
    domains: Sequence[Any],
    networks: dict[str, Any],
    config_drive: bool,
    args: argparse.Namespace,
) -> dict[str, Any]:
    from cloudseed.libvirt.plan import plan_import

    if not domains:
        return {"changed": False, "servers": 0}
    known = {n["name"] for n in client.get("/v1/networks")["networks"]}
    wanted = {d.uuid for d in domains}
    stored = {s["id"]: s for s in client.get("/v1/servers")["servers"] if s["id"] in wanted}
    plan = plan_import(domains, networks, known, stored)
    if config_drive:
        for server in plan.document["servers"]:
            server["config_drive"] = True
    result: dict[str, Any] = client.post("/v1/import", plan.document)
    for warning in plan.warnings:
        print(f"cloudseed libvirt: warning: {warning}", file=sys.stderr)
    if config_drive:
        _write_drives(client, [d.uuid for d in domains], args)
    return result


def _write_drives(
    client: ControlClient, server_ids: Sequence[str], args: argparse.Namespace
) -> None:
    from cloudseed.configdrive.atomic import write_atomically
    from cloudseed.configdrive.build import IMAGE_SUFFIX, parse_format
    from cloudseed.configdrive.config import drive_directory
    from cloudseed.libvirt.plan import config_drive_disk

    settings = load_cli_settings(args)
    fmt = parse_format(settings.configdrive.format, "configdrive.format")
    directory = drive_directory(settings)
    directory.mkdir(parents=True, exist_ok=True)
    for server_id in server_ids:
        image = client.get_bytes(f"/v1/servers/{quote(server_id)}/configdrive?format={fmt}")
        path = directory / f"{server_id}{IMAGE_SUFFIX[fmt]}"
        # 0644: qemu runs as its own user and must read the image.
        write_atomically(path, image, 0o644)
        print(f"<!-- {server_id}: attach with virsh attach-device DOMAIN FILE --config -->")
        print(config_drive_disk(str(path), fmt), end="")


def _networks_from_dir(
    directory: str, domains: Sequence[Any], given: dict[str, Any]
) -> dict[str, Any]:
    """libvirt networks the domains use, from ``NAME.xml`` files libvirt keeps."""
    from cloudseed.libvirt.xml import parse_network

    found: dict[str, Any] = {}
    for domain in domains:
        for nic in domain.interfaces:
            if nic.kind != "network" or nic.source in given or nic.source in found:
                continue
            path = Path(directory) / f"{nic.source}.xml"
            if path.is_file():
                found[nic.source] = parse_network(
                    read_bytes(str(path), "libvirt.network_dir"), str(path)
                )
    return found


