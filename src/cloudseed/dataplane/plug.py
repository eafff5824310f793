"""Attach a guest to its network's bridge: a fresh namespace with a veth, or a tap.

A tap is created (``--create``, owned by ``--tap-user`` so an unprivileged
QEMU may open it), or an existing one is taken from whichever namespace it is
in (``--tap-netns``) into the namespace that holds the bridges;
docs/GUESTS.md shows the QEMU and libvirt command lines.

A namespace guest (tests, demos) gets ``eth0`` with its port's MAC, so the
DHCP server recognises it and the agent resolves its address; the outer end
(``csg-…``) joins the bridge. A tap (a real VM's NIC) joins the bridge as
it is; like libvirt, the host side takes the port's MAC with ``fe`` as first
octet so the bridge never mistakes it for the guest.

Plugs are recorded under ``<state_dir>/plugs/`` so ``unplug`` and
``teardown`` (and ``doctor``, which runs a request from inside a namespace
guest) know them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from cloudseed.dataplane import netns
from cloudseed.dataplane.desired import Names
from cloudseed.dataplane.runner import Runner
from cloudseed.errors import Conflict, NotFound
from cloudseed.model import Port

GUEST_INTERFACE = "eth0"
# `ip netns exec` bind-mounts /etc/netns/<name>/* over /etc, so a DHCP client
# in the guest writes this resolv.conf, not the host's.
NETNS_ETC = Path("/etc/netns")


class PlugContext(Protocol):
    @property
    def state_dir(self) -> str: ...
    @property
    def root_netns(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PlugRecord:
    server_id: str
    port_id: str
    mode: str  # "netns" or "tap"
    netns: str  # the guest namespace (mode netns)
    device: str  # the link on the bridge: csg-… or the tap
    bridge: str
    mac: str
    created: bool = False  # a tap `plug --create` made (unplug deletes it)

    @property
    def is_namespace(self) -> bool:
        return self.mode == "netns"


def _plug_dir(state_dir: str) -> Path:
    return Path(state_dir) / "plugs"


def read_plugs(state_dir: str) -> dict[str, PlugRecord]:
    plugs: dict[str, PlugRecord] = {}
    directory = _plug_dir(state_dir)
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            try:
                record = PlugRecord(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            plugs[record.server_id] = record
    return plugs


def _save(state_dir: str, record: PlugRecord) -> None:
    directory = _plug_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{record.server_id}.json").write_text(json.dumps(asdict(record)))


def _require_bridge(runner: Runner, context: PlugContext, port: Port) -> str:
    bridge = Names.bridge(port.network_id)
    root = context.root_netns
    if root and root not in runner.namespaces():
        raise NotFound("namespace", root, f"parent namespace {root} does not exist; "
                       "run `cloudseed dataplane sync` first")
    if bridge not in netns.observe_links(runner, root):
        raise NotFound("bridge", bridge, f"bridge {bridge} for network {port.network_id} is "
                       "missing; run `cloudseed dataplane sync` first")
    return bridge


def plug_namespace(
    runner: Runner, context: PlugContext, server_id: str, port: Port, name: str, *,
    mtu: int = 1500
) -> PlugRecord:
    existing = read_plugs(context.state_dir).get(server_id)
    if existing is not None:
        if existing.netns == name and existing.port_id == port.id:
            return existing
        raise Conflict("server", f"already plugged ({existing.mode} "
                       f"{existing.netns or existing.device}); unplug it first")
    if name in runner.namespaces():
        raise Conflict("netns", f"namespace {name} already exists; plug needs a fresh one")
    bridge = _require_bridge(runner, context, port)
    root = context.root_netns
    outer = Names.guest_leg(port.id)
    record = PlugRecord(server_id, port.id, "netns", name, outer, bridge, port.mac_address)
    _save(context.state_dir, record)
    netns.ensure_namespace(runner, name)
    etc = NETNS_ETC / name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("# resolv.conf of cloudseed guest namespace\n")
    netns.delete_link(runner, root, outer)
    runner.ip("link", "add", outer, "mtu", str(mtu), "type", "veth", "peer", "name",
              GUEST_INTERFACE, "mtu", str(mtu), "netns", name, netns=root)
    netns.set_mac(runner, name, GUEST_INTERFACE, port.mac_address)
    netns.attach(runner, root, outer, bridge)
    netns.set_link_up(runner, name, GUEST_INTERFACE)
    return record


def plug_tap(
    runner: Runner, context: PlugContext, server_id: str, port: Port, device: str, *,
    create: bool = False, device_netns: str | None = None, owner: str = "",
) -> PlugRecord:
    """Attach tap ``device`` to the port's bridge: create it (``create``), or take it
    from ``device_netns`` (default: the host's namespace) into the bridges' namespace."""
    bridge = _require_bridge(runner, context, port)
    root = context.root_netns
    present = device in netns.observe_links(runner, root)
    if create:
        if present:
            raise Conflict("link", f"{device} already exists in "
                           f"{root or 'the host namespace'}; plug it without --create")
        runner.ip("tuntap", "add", "dev", device, "mode", "tap",
                  *(["user", owner] if owner else []), netns=root)
    elif not present:
        source = device_netns or ""
        if source == root or device not in netns.observe_links(runner, source):
            raise NotFound("link", device, f"tap {device} does not exist in "
                           f"{source or 'the host namespace'}; create it with --create, or "
                           "name the namespace it is in with --tap-netns")
        # The VM keeps its file descriptor: a tap works from any namespace once moved.
        target = ["netns", root] if root else ["netns", "1"]
        runner.ip("link", "set", device, *target, netns=source)
    host_mac = "fe" + port.mac_address[2:]
    record = PlugRecord(server_id, port.id, "tap", "", device, bridge, port.mac_address,
                        created=create)
    _save(context.state_dir, record)
    netns.set_mac(runner, root, device, host_mac)
    netns.attach(runner, root, device, bridge)
    return record


def unplug(runner: Runner, context: PlugContext, server_id: str) -> PlugRecord:
    record = read_plugs(context.state_dir).get(server_id)
    if record is None:
        raise NotFound("plug", server_id, f"server {server_id} is not plugged")
    _unplug(runner, context, record)
    return record


def _unplug(runner: Runner, context: PlugContext, record: PlugRecord) -> None:
    root = context.root_netns
    if record.is_namespace:
        netns.delete_link(runner, root, record.device)
        if record.netns in runner.namespaces():
            netns.delete_namespace(runner, record.netns)
        shutil.rmtree(NETNS_ETC / record.netns, ignore_errors=True)
        with contextlib.suppress(OSError):
            NETNS_ETC.rmdir()  # only when no other namespace keeps files there
    elif record.created:
        netns.delete_link(runner, root, record.device)
    else:
        runner.run(["ip", *(["-n", root] if root else []), "link", "set", record.device,
                    "nomaster"], check=False)
    (_plug_dir(context.state_dir) / f"{record.server_id}.json").unlink(missing_ok=True)


def unplug_all(runner: Runner, context: PlugContext) -> list[str]:
    done = []
    for record in read_plugs(context.state_dir).values():
        _unplug(runner, context, record)
        done.append(f"guest {record.netns or record.device} ({record.server_id})")
    return done
