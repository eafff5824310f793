"""The desired data plane, computed from the inventory alone (pure, no I/O).

``plan(inventory, context)`` answers, for one host: which bridges,
namespaces, legs (veth pairs) and addresses must exist, which firewall
table each router namespace holds, which files dnsmasq reads and which
processes (dnsmasq, metadata proxies) must run with which command lines.
``reconcile`` compares that with what the kernel and the state directory
say, and applies the difference.

The decisions follow Neutron's agents:

- every network gets a bridge (its L2 segment);
- every router with a subnet gets ``<prefix>qrouter-<id>``: one leg per
  attached network holding the gateway IPs (and fe80::a9fe:a9fe on
  networks with IPv6, so guests' neighbour discovery finds it), the
  REDIRECT table, and a proxy on ``router_proxy_port`` that sets ``X-Neutron-Router-ID``;
- every network with a DHCP-enabled subnet gets ``<prefix>qdhcp-<id>``
  with dnsmasq (DHCPv4, and router advertisements + DHCPv6 for IPv6
  subnets); it also serves metadata (169.254.169.254/32 on its port,
  fe80::a9fe:a9fe with IPv6, a proxy on :80 setting ``X-Neutron-Network-ID``)
  when a subnet is isolated (no router) or ``force_metadata`` is set.

With ``proxy_implementation = shared`` no namespace gets a proxy process:
each namespace's listeners and scope go into one listener file, and one
front (``cloudseed proxy --listeners-file``) serves them all; a changed file
is a reload (SIGHUP), so adding a namespace restarts nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloudseed.dataplane import dhcp, firewall
from cloudseed.dataplane.desired import (
    OUTER_LINK_PREFIXES,
    Bridge,
    DesiredState,
    FileSpec,
    FirewallTable,
    Inventory,
    Leg,
    MetadataPath,
    Names,
    Namespace,
    NamespaceKind,
    PlanContext,
    ProcessKind,
    ProcessSpec,
    derived_mac,
)
from cloudseed.model import Ipv6Mode, Network, Port, Router, Subnet
from cloudseed.settings import FrontAnswers, ProxyImplementation
from cloudseed.store.rules import dhcp_address as reserved_dhcp_address

# Re-exported: callers may import the vocabulary from the plan.
__all__ = [
    "OUTER_LINK_PREFIXES", "Bridge", "DesiredState", "FileSpec", "FirewallTable", "Inventory",
    "Leg", "MetadataPath", "Names", "Namespace", "NamespaceKind", "PlanContext", "ProcessKind",
    "ProcessSpec", "plan",
]

METADATA_V4_ADDRESS = "169.254.169.254/32"
METADATA_V6_ADDRESS = "fe80::a9fe:a9fe/64"
METADATA_LISTEN_PORT = 80
ROUTER_LEG_GLOB = "qr-*"
# Ports named like this (and bound to no server) are the network's DHCP port,
# as Neutron's device_owner=network:dhcp: their IP and MAC are used as given.
DHCP_PORT_NAME_PREFIX = "dhcp"
SHARED_FRONT_PROCESS = "proxy-shared"
# -- planning -------------------------------------------------------------------


def plan(inventory: Inventory, context: PlanContext) -> DesiredState:
    names = Names(context.root_netns)
    subnets_by_network: dict[str, list[Subnet]] = {}
    for subnet in inventory.subnets:
        subnets_by_network.setdefault(subnet.network_id, []).append(subnet)
    routed_subnets = {sid for router in inventory.routers for sid in router.subnet_ids}
    bridges = [Bridge(names.bridge(n.id), n.id, n.mtu) for n in inventory.networks]
    network_ids = {n.id for n in inventory.networks}
    state = _Builder(names, bridges)
    for router in inventory.routers:
        _plan_router(state, router, inventory, context, network_ids)
    for network in inventory.networks:
        _plan_dhcp(
            state, network, subnets=subnets_by_network.get(network.id, []),
            routed_subnets=routed_subnets, inventory=inventory, context=context,
        )
    if state.front_listeners:
        _plan_front(state, context)
    return DesiredState(
        root_netns=context.root_netns,
        bridges=tuple(bridges),
        namespaces=tuple(state.namespaces),
        legs=tuple(state.legs),
        tables=tuple(state.tables),
        files=tuple(state.files),
        processes=tuple(state.processes),
        metadata_paths=state.metadata_paths,
    )


@dataclass
class _Builder:
    names: Names
    bridges: list[Bridge]
    namespaces: list[Namespace] = field(default_factory=list)
    legs: list[Leg] = field(default_factory=list)
    tables: list[FirewallTable] = field(default_factory=list)
    files: list[FileSpec] = field(default_factory=list)
    processes: list[ProcessSpec] = field(default_factory=list)
    metadata_paths: dict[str, MetadataPath] = field(default_factory=dict)
    # shared: (namespace, kind, owner id, listen addresses) for the front's file
    front_listeners: list[tuple[str, str, str, tuple[str, ...]]] = field(default_factory=list)


def _plan_router(
    state: _Builder,
    router: Router,
    inventory: Inventory,
    context: PlanContext,
    network_ids: set[str],
) -> None:
    attached = [s for s in inventory.subnets if s.id in router.subnet_ids
                and s.network_id in network_ids and s.gateway_ip]
    if not attached:
        return
    namespace = state.names.router_namespace(router.id)
    state.namespaces.append(Namespace(namespace, NamespaceKind.ROUTER, router.id))
    mtu_by_network = {n.id: n.mtu for n in inventory.networks}
    for network_id in sorted({s.network_id for s in attached}):
        on_network = [s for s in attached if s.network_id == network_id]
        outer, inner = state.names.router_leg(router.id, network_id)
        addresses = tuple(_with_prefix(str(s.gateway_ip), s.cidr) for s in on_network)
        if any(s.ip_version == 6 for s in on_network):
            # The router answers neighbour discovery for fe80::a9fe:a9fe on
            # this segment; the REDIRECT below takes it to the proxy.
            addresses = (*addresses, METADATA_V6_ADDRESS)
        gateway_ips = {str(s.gateway_ip) for s in on_network}
        mac = _port_mac(inventory.ports, network_id, gateway_ips) or derived_mac(inner + router.id)
        state.legs.append(Leg(namespace, inner, outer, state.names.bridge(network_id), mac,
                              addresses, mtu_by_network[network_id]))
    ipv6 = any(":" in s.cidr for s in attached)
    state.tables.append(FirewallTable(namespace, firewall.render_router_table(
        ROUTER_LEG_GLOB, context.router_proxy_port, ipv6)))
    # Neutron binds "::" when IPv6 is on: one dual-stack socket for both families.
    listen = f"{'[::]' if ipv6 else '0.0.0.0'}:{context.router_proxy_port}"  # noqa: S104
    _plan_proxy(state, context, namespace, listen, kind="router", owner_id=router.id)


def _plan_dhcp(
    state: _Builder,
    network: Network,
    *,
    subnets: Sequence[Subnet],
    routed_subnets: set[str],
    inventory: Inventory,
    context: PlanContext,
) -> None:
    v4 = [s for s in subnets if s.ip_version == 4]
    dhcp_subnets = [s for s in subnets if s.enable_dhcp]
    isolated = [s for s in subnets if s.id not in routed_subnets]
    serves_metadata = bool(subnets) and (
        context.force_metadata or (context.enable_isolated_metadata and bool(isolated))
    )
    if not dhcp_subnets and not serves_metadata:
        _record_router_path(state, network.id, subnets, inventory)
        return
    namespace = state.names.dhcp_namespace(network.id)
    state.namespaces.append(Namespace(namespace, NamespaceKind.DHCP, network.id))
    ports = [p for p in inventory.ports if p.network_id == network.id]
    dhcp_port = next((p for p in ports if p.server_id is None
                      and p.name.startswith(DHCP_PORT_NAME_PREFIX)), None)
    dhcp_ips: dict[str, str] = {}
    # IPv6 subnets need an address of their own on the leg: dnsmasq sends
    # advertisements and DHCPv6 only on a link holding an address in the prefix.
    for subnet in [*v4, *(s for s in dhcp_subnets if s.ip_version == 6)]:
        ip = _dhcp_address(subnet, dhcp_port)
        if ip:
            dhcp_ips[subnet.id] = ip
    addresses = [_with_prefix(dhcp_ips[s.id], s.cidr) for s in subnets if s.id in dhcp_ips]
    if serves_metadata:
        addresses.append(METADATA_V4_ADDRESS)
        if any(s.ip_version == 6 for s in subnets):
            addresses.append(METADATA_V6_ADDRESS)
    outer, inner = state.names.dhcp_leg(network.id)
    mac = dhcp_port.mac_address if dhcp_port else derived_mac(inner + network.id)
    state.legs.append(Leg(namespace, inner, outer, state.names.bridge(network.id), mac,
                          tuple(addresses), network.mtu))
    nexthops: dict[str, str] = {}
    for subnet in v4:
        if serves_metadata and (context.force_metadata or subnet.id not in routed_subnets):
            hop = dhcp_ips.get(subnet.id)
        elif subnet.id in routed_subnets and subnet.gateway_ip:
            hop = subnet.gateway_ip
        else:
            hop = None
        if hop:
            nexthops[subnet.id] = hop
    if serves_metadata:
        state.metadata_paths[network.id] = MetadataPath(
            network.id, namespace, "dhcp", network.id, nexthops)
        listen = f"{METADATA_V4_ADDRESS.split('/', maxsplit=1)[0]}:{METADATA_LISTEN_PORT}"
        extra: tuple[str, ...] = ()
        if any(s.ip_version == 6 for s in subnets):
            # Neutron's `bind [fe80::a9fe:a9fe]:80 interface <dev>`: a link-local
            # address needs its zone.
            v6 = METADATA_V6_ADDRESS.split("/", 1)[0]
            extra = (f"[{v6}%{inner}]:{METADATA_LISTEN_PORT}",)
        _plan_proxy(state, context, namespace, listen, kind="network", owner_id=network.id,
                    extra_listen=extra)
    else:
        _record_router_path(state, network.id, subnets, inventory)
    if dhcp_subnets:
        _plan_dnsmasq(state, network, dhcp_subnets=dhcp_subnets, v4=v4, nexthops=nexthops,
                      inventory=inventory, context=context, interface=inner,
                      namespace=namespace, dhcp_port=dhcp_port)


def _plan_dnsmasq(
    state: _Builder,
    network: Network,
    *,
    dhcp_subnets: Sequence[Subnet],
    v4: Sequence[Subnet],
    nexthops: dict[str, str],
    inventory: Inventory,
    context: PlanContext,
    interface: str,
    namespace: str,
    dhcp_port: Port | None,
) -> None:
    files = dhcp.files_for(context.state_dir, network.id)
    hosts_path, options_path = files.hosts, files.options
    servers = {s.id: s for s in inventory.servers}
    dhcp_cidrs = {s.id: s.cidr for s in dhcp_subnets}
    gateways = {str(s.gateway_ip) for s in dhcp_subnets if s.gateway_ip}
    # SLAAC guests build their own address; dnsmasq only advertises the prefix.
    slaac = {s.id for s in dhcp_subnets if s.ipv6_address_mode is Ipv6Mode.SLAAC}
    hosts: list[dhcp.DhcpHost] = []
    for port in inventory.ports:
        if port.network_id != network.id or port is dhcp_port:
            continue
        for fixed in port.fixed_ips:
            if (fixed.subnet_id not in dhcp_cidrs or fixed.ip_address in gateways
                    or fixed.subnet_id in slaac):
                continue
            server = servers.get(port.server_id or "")
            name = server.hostname if server else "host-" + fixed.ip_address.replace(
                ".", "-").replace(":", "-")
            hosts.append(dhcp.DhcpHost(port.mac_address, fixed.ip_address,
                                       dhcp.hostname_label(name)))
    options = [
        dhcp.SubnetOptions(
            subnet, nexthops.get(subnet.id),
            tuple(other.cidr for other in v4 if other.id != subnet.id),
        ) if subnet.ip_version == 4 else dhcp.SubnetOptions(subnet, None)
        for subnet in dhcp_subnets
    ]
    state.files.append(FileSpec(hosts_path, dhcp.render_hosts(hosts)))
    state.files.append(FileSpec(options_path, dhcp.render_options(options)))
    argv = dhcp.dnsmasq_argv(
        interface=interface, subnets=dhcp_subnets, hosts_path=hosts_path,
        options_path=options_path, domain=context.dns_domain,
        lease_seconds=context.dhcp_lease_seconds, user=context.dnsmasq_user,
        log_path=files.log,
    )
    state.processes.append(ProcessSpec(
        f"dnsmasq-{network.id}", ProcessKind.DNSMASQ, namespace, tuple(argv),
        reload_files=(hosts_path, options_path),
    ))


def _record_router_path(
    state: _Builder, network_id: str, subnets: Sequence[Subnet], inventory: Inventory
) -> None:
    for router in inventory.routers:
        hops = {s.id: str(s.gateway_ip) for s in subnets
                if s.id in router.subnet_ids and s.gateway_ip}
        if hops:
            state.metadata_paths[network_id] = MetadataPath(
                network_id, state.names.router_namespace(router.id), "router", router.id, hops)
            return


def _plan_proxy(
    state: _Builder, context: PlanContext, namespace: str, listen: str, *, kind: str,
    owner_id: str, extra_listen: tuple[str, ...] = (),
) -> None:
    name = f"proxy-{kind}-{owner_id}"
    # Its supervisor holds the listeners, whichever implementation serves them.
    sockets = (listen, *extra_listen)
    if context.proxy_implementation == ProxyImplementation.SHARED:
        state.front_listeners.append((namespace, kind, owner_id, sockets))
        return
    if context.proxy_implementation == ProxyImplementation.HAPROXY:
        path = f"{context.state_dir}/haproxy/{owner_id}.conf"
        config = _haproxy_config(context, sockets, kind, owner_id)
        state.files.append(FileSpec(path, config))
        argv: tuple[str, ...] = (context.proxy_settings.haproxy_binary, "-db", "-f", path)
        state.processes.append(ProcessSpec(name, ProcessKind.PROXY, namespace, argv,
                                           restart_files=(path,), listen=listen,
                                           sockets=sockets))
        return
    listens = tuple(arg for address in sockets for arg in ("--listen", address))
    argv = (*context.cloudseed_command, "proxy", *listens,
            f"--{kind}-id", owner_id, "--agent-socket", context.agent_socket)
    state.processes.append(ProcessSpec(name, ProcessKind.PROXY, namespace, argv, listen=listen,
                                       sockets=sockets))


def front_files(state_dir: str) -> tuple[str, str]:
    """The shared front's listener file and status socket."""
    return f"{state_dir}/front/listeners.json", f"{state_dir}/front/status.sock"


def _plan_front(state: _Builder, context: PlanContext) -> None:
    """One front for every namespace: its listener file, and the process that re-reads it."""
    from cloudseed.proxy.listener_set import ScopedListeners, render_listener_set
    from cloudseed.proxy.relay import ProxyScope

    entries = [ScopedListeners(namespace, ProxyScope(router_id=owner_id) if kind == "router"
                               else ProxyScope(network_id=owner_id), listen)
               for namespace, kind, owner_id, listen in state.front_listeners]
    path, status = front_files(context.state_dir)
    state.files.append(FileSpec(path, render_listener_set(entries)))
    argv = (*context.cloudseed_command, "proxy", "--listeners-file", path,
            "--agent-socket", context.agent_socket, "--status-socket", status)
    if context.front_answers is not FrontAnswers.RELAY:
        # Only then: a relaying front's command (and so its process) stays as it was.
        argv = (*argv, "--answers", context.front_answers.value)
    # The front runs in the data plane's own namespace; its sockets live in the others,
    # and a copy of each stays with its supervisor while the front restarts.
    state.processes.append(ProcessSpec(SHARED_FRONT_PROCESS, ProcessKind.PROXY, "", argv,
                                       reload_files=(path,), keep_sockets=True))


def _haproxy_config(
    context: PlanContext, listens: tuple[str, ...], kind: str, owner_id: str
) -> str:
    """cloudseed.proxy.haproxy's config for this namespace (rendering only, no process)."""
    from cloudseed.proxy import haproxy
    from cloudseed.proxy.listen import ListenAddress
    from cloudseed.proxy.relay import ProxyScope

    scope = ProxyScope(router_id=owner_id) if kind == "router" else ProxyScope(
        network_id=owner_id)
    config = haproxy.config_for(scope, [ListenAddress.parse(a) for a in listens],
                                context.agent_socket,
                                f"{context.state_dir}/haproxy", context.proxy_settings,
                                inherited_fds=range(3, 3 + len(listens)))
    return haproxy.render_config(config)


def _with_prefix(ip: str, cidr: str) -> str:
    return f"{ip}/{ipaddress.ip_network(cidr, strict=False).prefixlen}"


def _port_mac(ports: Sequence[Port], network_id: str, ips: set[str]) -> str | None:
    for port in ports:
        if port.network_id == network_id and any(f.ip_address in ips for f in port.fixed_ips):
            return port.mac_address
    return None


def _dhcp_address(subnet: Subnet, dhcp_port: Port | None) -> str | None:
    """The DHCP port's IP: the registered DHCP port's, else the one the inventory reserves.

    ``store.rules`` owns the fallback address and refuses it to every other port, so
    the DHCP port never moves under running guests.
    """
    if dhcp_port:
        for fixed in dhcp_port.fixed_ips:
            if fixed.subnet_id == subnet.id:
                return fixed.ip_address
    return reserved_dhcp_address(subnet)
