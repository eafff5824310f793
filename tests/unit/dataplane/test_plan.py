"""The pure plan: which namespaces, legs, rules, dnsmasq files and proxies a host needs."""

from __future__ import annotations

import pytest

from cloudseed.dataplane import dhcp
from cloudseed.dataplane.plan import (
    DesiredState,
    Inventory,
    NamespaceKind,
    PlanContext,
    ProcessKind,
    ProcessSpec,
    plan,
)
from cloudseed.errors import ConfigError
from cloudseed.model import (
    FixedIp,
    HostRoute,
    Ipv6Mode,
    Network,
    Port,
    Router,
    Server,
    Subnet,
)
from cloudseed.settings import load_settings
from cloudseed.store.rules import dhcp_address as reserved_dhcp_address

NET_ISOLATED = "11111111-1111-1111-1111-111111111111"
NET_ROUTED = "22222222-2222-2222-2222-222222222222"
SUB_ISOLATED = "aaaaaaaa-1111-1111-1111-111111111111"
SUB_ROUTED = "bbbbbbbb-2222-2222-2222-222222222222"
ROUTER = "rrrrrrrr-0000-0000-0000-000000000001"


def inventory(*, routed_gateway: bool = True, isolated_gateway: str | None = "10.1.0.1") -> Inventory:
    return Inventory(
        networks=(Network(NET_ISOLATED, "iso"), Network(NET_ROUTED, "routed", mtu=1450)),
        subnets=(
            Subnet(SUB_ISOLATED, NET_ISOLATED, "10.1.0.0/24", 4, gateway_ip=isolated_gateway),
            Subnet(SUB_ROUTED, NET_ROUTED, "10.2.0.0/24", 4,
                   gateway_ip="10.2.0.1" if routed_gateway else None),
        ),
        routers=(Router(ROUTER, "r1", subnet_ids=(SUB_ROUTED,)),),
        ports=(
            Port("p-iso", NET_ISOLATED, "fa:16:3e:00:00:01",
                 (FixedIp(SUB_ISOLATED, "10.1.0.5"),), server_id="s-iso"),
            Port("p-routed", NET_ROUTED, "fa:16:3e:00:00:02",
                 (FixedIp(SUB_ROUTED, "10.2.0.5"),), server_id="s-routed"),
        ),
        servers=(Server("s-iso", "iso-vm", "iso-vm.example", "proj"),
                 Server("s-routed", "routed-vm", "Routed_VM", "proj")),
    )


def context(**overrides: object) -> PlanContext:
    values: dict[str, object] = {"state_dir": "/state", "root_netns": "t1",
                                 "cloudseed_command": ("cloudseed",), "agent_socket": "/run/a.sock"}
    values.update(overrides)
    return PlanContext(**values)  # type: ignore[arg-type]


def proc(state: DesiredState, name: str) -> ProcessSpec:
    return next(p for p in state.processes if p.name == name)


def file_content(state: DesiredState, suffix: str) -> str:
    return next(f.content for f in state.files if f.path.endswith(suffix))


def test_every_network_gets_a_bridge_with_its_mtu() -> None:
    state = plan(inventory(), context())
    assert {(b.network_id, b.mtu) for b in state.bridges} == {(NET_ISOLATED, 1500),
                                                              (NET_ROUTED, 1450)}


def test_all_link_names_fit_ifnamsiz() -> None:
    state = plan(inventory(), context())
    names = [b.name for b in state.bridges]
    names += [n for leg in state.legs for n in (leg.inner, leg.outer)]
    assert all(len(n) <= 15 for n in names)
    assert len(set(names)) == len(names)


def test_router_gets_namespace_leg_with_gateway_redirect_and_proxy_on_9697() -> None:
    state = plan(inventory(), context())
    ns = f"t1-qrouter-{ROUTER}"
    assert any(n.name == ns and n.kind is NamespaceKind.ROUTER for n in state.namespaces)
    leg = next(leg for leg in state.legs if leg.namespace == ns)
    assert leg.addresses == ("10.2.0.1/24",)
    assert leg.inner.startswith("qr-")
    table = next(t for t in state.tables if t.namespace == ns)
    assert 'iifname "qr-*" ip daddr 169.254.169.254 tcp dport 80 counter redirect to :9697' in (
        table.script)
    assert "tcp dport 9697 ct status dnat counter accept" in table.script
    assert "tcp dport 9697 counter drop" in table.script
    proxy = proc(state, f"proxy-router-{ROUTER}")
    assert proxy.namespace == ns
    assert proxy.argv == ("cloudseed", "proxy", "--listen", "0.0.0.0:9697", "--router-id",
                          ROUTER, "--agent-socket", "/run/a.sock")


def test_isolated_network_dhcp_namespace_holds_metadata_address_and_proxy_on_80() -> None:
    state = plan(inventory(), context())
    ns = f"t1-qdhcp-{NET_ISOLATED}"
    leg = next(leg for leg in state.legs if leg.namespace == ns)
    assert leg.addresses == ("10.1.0.254/24", "169.254.169.254/32")
    proxy = proc(state, f"proxy-network-{NET_ISOLATED}")
    assert proxy.namespace == ns
    assert "--network-id" in proxy.argv
    assert proxy.listen == "169.254.169.254:80"


def test_isolated_option_121_routes_metadata_via_dhcp_port_and_keeps_default_route() -> None:
    opts = file_content(plan(inventory(), context()), f"{NET_ISOLATED}/opts")
    tag = f"tag:subnet-{SUB_ISOLATED}"
    assert (f"{tag},option:classless-static-route,169.254.169.254/32,10.1.0.254,"
            "0.0.0.0/0,10.1.0.1\n") in opts
    assert f"{tag},249,169.254.169.254/32,10.1.0.254,0.0.0.0/0,10.1.0.1\n" in opts
    assert f"{tag},option:router,10.1.0.1\n" in opts


def test_isolated_subnet_without_gateway_gets_no_default_route_and_no_router_option() -> None:
    opts = file_content(plan(inventory(isolated_gateway=None), context()), f"{NET_ISOLATED}/opts")
    tag = f"tag:subnet-{SUB_ISOLATED}"
    assert f"{tag},option:classless-static-route,169.254.169.254/32,10.1.0.254\n" in opts
    assert f"{tag},option:router\n" in opts
    assert "0.0.0.0/0" not in opts


def test_routed_network_gets_dhcp_with_router_as_metadata_hop_and_no_local_metadata() -> None:
    state = plan(inventory(), context())
    ns = f"t1-qdhcp-{NET_ROUTED}"
    leg = next(leg for leg in state.legs if leg.namespace == ns)
    assert "169.254.169.254/32" not in leg.addresses
    assert not any(p.name == f"proxy-network-{NET_ROUTED}" for p in state.processes)
    assert proc(state, f"dnsmasq-{NET_ROUTED}").namespace == ns
    opts = file_content(state, f"{NET_ROUTED}/opts")
    assert ",option:classless-static-route,169.254.169.254/32,10.2.0.1,0.0.0.0/0,10.2.0.1\n" in (
        opts)
    assert state.metadata_paths[NET_ROUTED].via == "router"
    assert state.metadata_paths[NET_ISOLATED].via == "dhcp"


def test_force_metadata_serves_routed_networks_from_the_dhcp_namespace_too() -> None:
    state = plan(inventory(), context(force_metadata=True))
    ns = f"t1-qdhcp-{NET_ROUTED}"
    leg = next(leg for leg in state.legs if leg.namespace == ns)
    assert "169.254.169.254/32" in leg.addresses
    assert proc(state, f"proxy-network-{NET_ROUTED}").listen == "169.254.169.254:80"
    opts = file_content(state, f"{NET_ROUTED}/opts")
    assert "169.254.169.254/32,10.2.0.254,0.0.0.0/0,10.2.0.1" in opts
    # The router keeps its own redirect and proxy.
    assert any(p.name == f"proxy-router-{ROUTER}" for p in state.processes)


def test_isolated_metadata_can_be_turned_off() -> None:
    state = plan(inventory(), context(enable_isolated_metadata=False))
    assert not any(p.name == f"proxy-network-{NET_ISOLATED}" for p in state.processes)
    opts = file_content(state, f"{NET_ISOLATED}/opts")
    assert "169.254.169.254" not in opts


def test_hosts_file_maps_mac_to_fixed_ip_and_sanitised_hostname() -> None:
    state = plan(inventory(), context())
    assert file_content(state, f"{NET_ISOLATED}/host") == "fa:16:3e:00:00:01,10.1.0.5,iso-vm\n"
    assert file_content(state, f"{NET_ROUTED}/host") == "fa:16:3e:00:00:02,10.2.0.5,routed-vm\n"


def test_dnsmasq_serves_only_registered_ports_and_forwards_no_dns() -> None:
    argv = proc(plan(inventory(), context()), f"dnsmasq-{NET_ISOLATED}").argv
    assert f"--dhcp-range=set:subnet-{SUB_ISOLATED},10.1.0.0,static,255.255.255.0,86400s" in argv
    assert "--no-resolv" in argv
    assert "--dhcp-hostsfile=/state/dhcp/" + NET_ISOLATED + "/host" in argv


def test_registered_dhcp_port_gives_its_ip_and_mac() -> None:
    inv = inventory()
    dhcp_port = Port("p-dhcp", NET_ISOLATED, "fa:16:3e:dd:dd:dd",
                     (FixedIp(SUB_ISOLATED, "10.1.0.2"),), name="dhcp-iso")
    inv = Inventory(inv.networks, inv.subnets, inv.routers, (*inv.ports, dhcp_port), inv.servers)
    state = plan(inv, context())
    leg = next(leg for leg in state.legs if leg.namespace == f"t1-qdhcp-{NET_ISOLATED}")
    assert leg.mac == "fa:16:3e:dd:dd:dd"
    assert leg.addresses[0] == "10.1.0.2/24"
    assert "fa:16:3e:dd:dd:dd" not in file_content(state, f"{NET_ISOLATED}/host")


def test_dhcp_address_is_the_reserved_one_even_if_legacy_data_squats_it() -> None:
    # The store refuses .254 to any other port now; a squatter left by older data must
    # not move the DHCP port (and its option-121 next hop) under every running guest.
    inv = inventory()
    squatter = Port("p-254", NET_ISOLATED, "fa:16:3e:00:00:fe", (FixedIp(SUB_ISOLATED,
                                                                          "10.1.0.254"),))
    inv = Inventory(inv.networks, inv.subnets, inv.routers, (*inv.ports, squatter), inv.servers)
    leg = next(leg for leg in plan(inv, context()).legs
               if leg.namespace == f"t1-qdhcp-{NET_ISOLATED}")
    subnet = next(s for s in inv.subnets if s.id == SUB_ISOLATED)
    assert leg.addresses[0] == f"{reserved_dhcp_address(subnet)}/24" == "10.1.0.254/24"


def test_dhcp_address_steps_below_a_gateway_on_the_last_address() -> None:
    nets = (Network("n-g", "g"),)
    subs = (Subnet("s-g", "n-g", "10.9.0.0/24", 4, gateway_ip="10.9.0.254"),)
    state = plan(Inventory(nets, subs, (), ()), context())
    leg = next(leg for leg in state.legs if leg.namespace == "t1-qdhcp-n-g")
    assert leg.addresses[0] == "10.9.0.253/24"


def test_two_routers_with_overlapping_subnets_get_separate_namespaces_and_legs() -> None:
    nets = (Network("n-a", "a"), Network("n-b", "b"))
    subs = (Subnet("s-a", "n-a", "10.0.0.0/24", 4, gateway_ip="10.0.0.1"),
            Subnet("s-b", "n-b", "10.0.0.0/24", 4, gateway_ip="10.0.0.1"))
    routers = (Router("r-a", "a", ("s-a",)), Router("r-b", "b", ("s-b",)))
    ports = (Port("p-a", "n-a", "fa:16:3e:00:00:0a", (FixedIp("s-a", "10.0.0.5"),)),
             Port("p-b", "n-b", "fa:16:3e:00:00:0b", (FixedIp("s-b", "10.0.0.5"),)))
    state = plan(Inventory(nets, subs, routers, ports), context())
    router_legs = [leg for leg in state.legs if "qrouter" in leg.namespace]
    assert {leg.namespace for leg in router_legs} == {"t1-qrouter-r-a", "t1-qrouter-r-b"}
    assert {leg.bridge for leg in router_legs} == {b.name for b in state.bridges}
    assert {p.argv[5] for p in state.processes if p.kind is ProcessKind.PROXY} == {"r-a", "r-b"}


def _dual_stack_plan() -> DesiredState:
    """One network with an IPv4 and an IPv6 subnet, both on a router, metadata forced."""
    nets = (Network("n6", "six"),)
    subs = (Subnet("s4", "n6", "10.6.0.0/24", 4, gateway_ip="10.6.0.1"),
            Subnet("s6", "n6", "fd00:6::/64", 6, gateway_ip="fd00:6::1"))
    return plan(Inventory(nets, subs, (Router("r6", "r", ("s4", "s6")),)),
                context(force_metadata=True))


def test_ipv6_network_adds_fe80_metadata_address_and_v6_redirect() -> None:
    state = _dual_stack_plan()
    dhcp_leg = next(leg for leg in state.legs if "qdhcp" in leg.namespace)
    assert "fe80::a9fe:a9fe/64" in dhcp_leg.addresses
    router_leg = next(leg for leg in state.legs if "qrouter" in leg.namespace)
    # The router's leg holds fe80::a9fe:a9fe too: without it nothing on a routed
    # segment answers the guest's neighbour solicitation.
    assert router_leg.addresses == ("10.6.0.1/24", "fd00:6::1/64", "fe80::a9fe:a9fe/64")
    assert "ip6 daddr fe80::a9fe:a9fe tcp dport 80" in state.tables[0].script


def test_ipv4_only_router_leg_holds_no_ipv6_metadata_address() -> None:
    state = plan(inventory(), context())
    router_leg = next(leg for leg in state.legs if "qrouter" in leg.namespace)
    assert not any(":" in address for address in router_leg.addresses)


def _v6_network(mode: Ipv6Mode | None, *, routed: bool) -> DesiredState:
    nets = (Network("n6", "six"),)
    subs = (Subnet("s6", "n6", "fd00:6::/64", 6, gateway_ip="fd00:6::1",
                   ipv6_address_mode=mode, dns_nameservers=("fd00:6::53",)),)
    routers = (Router("r6", "r", ("s6",)),) if routed else ()
    ports = (Port("p6", "n6", "fa:16:3e:00:06:05", (FixedIp("s6", "fd00:6::5"),),
                  server_id="vm6"),)
    servers = (Server("vm6", "vm6", "vm6.example", "proj"),)
    return plan(Inventory(nets, subs, routers, ports, servers), context())


def test_ipv6_only_subnets_get_router_advertisements_with_neutron_mode_flags() -> None:
    keywords = {Ipv6Mode.SLAAC: "ra-only", Ipv6Mode.DHCPV6_STATELESS: "ra-stateless",
                Ipv6Mode.DHCPV6_STATEFUL: "static", None: "static"}
    for mode, keyword in keywords.items():
        for routed in (False, True):
            state = _v6_network(mode, routed=routed)
            argv = proc(state, "dnsmasq-n6").argv
            assert f"--dhcp-range=set:subnet-s6,fd00:6::,{keyword},64,86400s" in argv
            assert "--enable-ra" in argv
            leg = next(leg for leg in state.legs if "qdhcp" in leg.namespace)
            assert f"--ra-param={leg.inner},{dhcp.RA_INTERVAL_SECONDS},0" in argv
            # dnsmasq advertises only on a link that holds an address in the prefix.
            assert any(a.startswith("fd00:6::") for a in leg.addresses)
            hosts = file_content(state, "n6/host")
            assert hosts == ("" if mode is Ipv6Mode.SLAAC else "fa:16:3e:00:06:05,[fd00:6::5],vm6\n")
            assert "option6:dns-server,[fd00:6::53]" in file_content(state, "n6/opts")
            if routed:
                assert state.metadata_paths["n6"].via == "router"
                router_leg = next(leg for leg in state.legs if "qrouter" in leg.namespace)
                assert "fe80::a9fe:a9fe/64" in router_leg.addresses
            else:
                assert state.metadata_paths["n6"].via == "dhcp"
                assert "fe80::a9fe:a9fe/64" in leg.addresses


def test_dnsmasq_runs_as_the_files_owner_and_logs_to_a_file() -> None:
    argv = proc(plan(inventory(), context(dnsmasq_user="cloudseed")),
                f"dnsmasq-{NET_ISOLATED}").argv
    assert "--user=cloudseed" in argv
    assert f"--log-facility=/state/dhcp/{NET_ISOLATED}/{dhcp.LOG_NAME}" in argv
    assert not any(arg in {"--log-facility=-", "--log-facility=/dev/null"} for arg in argv)


def test_haproxy_implementation_writes_a_config_and_runs_haproxy_in_foreground() -> None:
    # Through the settings object, as `dataplane sync` builds it: proxy.haproxy_binary counts.
    settings = load_settings(environ={}, overrides={
        "dataplane.proxy_implementation": "haproxy", "dataplane.state_dir": "/state",
        "proxy.haproxy_binary": "/opt/haproxy/sbin/haproxy", "agent.socket_path": "/run/a.sock"})
    state = plan(inventory(), PlanContext.from_settings(settings))
    proxy = proc(state, f"proxy-router-{ROUTER}")
    path = f"/state/haproxy/{ROUTER}.conf"
    assert proxy.argv == ("/opt/haproxy/sbin/haproxy", "-db", "-f", path)
    assert proxy.restart_files == (path,)
    config = file_content(state, f"{ROUTER}.conf")
    assert "X-Neutron-Router-ID" in config
    assert "unix@/run/a.sock" in config


def test_network_without_subnets_gets_only_a_bridge() -> None:
    state = plan(Inventory(networks=(Network("lonely", "l"),)), context())
    assert len(state.bridges) == 1
    assert not state.namespaces
    assert not state.processes


def test_host_routes_and_other_subnets_are_in_option_121() -> None:
    subnet = Subnet("s1", "n", "10.0.0.0/24", 4, gateway_ip="10.0.0.1",
                    host_routes=(HostRoute("192.168.0.0/16", "10.0.0.9"),))
    routes = dhcp.classless_routes(dhcp.SubnetOptions(subnet, "10.0.0.2", ("10.9.0.0/24",)))
    assert routes == [("169.254.169.254/32", "10.0.0.2"), ("10.9.0.0/24", "0.0.0.0"),
                      ("192.168.0.0/16", "10.0.0.9"), ("0.0.0.0/0", "10.0.0.1")]


def test_ipv6_networks_proxy_listens_on_fe80_metadata_address_with_its_zone() -> None:
    state = _dual_stack_plan()
    dhcp_leg = next(leg for leg in state.legs if "qdhcp" in leg.namespace)
    network_proxy = proc(state, "proxy-network-n6")
    assert f"[fe80::a9fe:a9fe%{dhcp_leg.inner}]:80" in network_proxy.argv
    assert proc(state, "proxy-router-r6").listen == "[::]:9697"


def test_shared_front_replaces_every_namespace_proxy_with_one_reloaded_process() -> None:
    from cloudseed.proxy.listener_set import parse_listener_set
    from cloudseed.proxy.relay import ProxyScope

    settings = load_settings(environ={}, overrides={
        "dataplane.proxy_implementation": "shared", "dataplane.state_dir": "/state",
        "dataplane.root_netns": "t1", "agent.socket_path": "/run/a.sock",
        "dataplane.cloudseed_command": ("cloudseed",)})
    state = plan(inventory(), PlanContext.from_settings(settings))
    proxies = [p for p in state.processes if p.kind is ProcessKind.PROXY]
    assert [p.name for p in proxies] == ["proxy-shared"]
    front = proxies[0]
    path = "/state/front/listeners.json"
    assert front.argv == ("cloudseed", "proxy", "--listeners-file", path, "--agent-socket",
                          "/run/a.sock", "--status-socket", "/state/front/status.sock")
    assert front.namespace == ""
    # A changed set is a SIGHUP (reload), never a restart.
    assert front.reload_files == (path,)
    assert front.restart_files == ()
    entries = {e.namespace: e for e in parse_listener_set(file_content(state, "listeners.json"))}
    assert entries == {
        f"t1-qrouter-{ROUTER}": entries[f"t1-qrouter-{ROUTER}"],
        f"t1-qdhcp-{NET_ISOLATED}": entries[f"t1-qdhcp-{NET_ISOLATED}"],
    }
    assert entries[f"t1-qrouter-{ROUTER}"].scope == ProxyScope(router_id=ROUTER)
    assert entries[f"t1-qrouter-{ROUTER}"].listen == ("0.0.0.0:9697",)
    assert entries[f"t1-qdhcp-{NET_ISOLATED}"].scope == ProxyScope(network_id=NET_ISOLATED)
    assert entries[f"t1-qdhcp-{NET_ISOLATED}"].listen == ("169.254.169.254:80",)
    # The same inventory writes the same bytes: a second sync has nothing to reload.
    assert plan(inventory(), PlanContext.from_settings(settings)).files == state.files


def test_shared_front_is_not_planned_without_a_namespace_to_serve() -> None:
    state = plan(Inventory(networks=(Network(NET_ISOLATED, "iso"),)),
                 context(proxy_implementation="shared"))
    assert state.processes == ()
    assert state.files == ()


def test_a_colocated_front_is_told_so_and_needs_the_shared_front() -> None:
    base = {"dataplane.proxy_implementation": "shared", "dataplane.state_dir": "/state",
            "agent.socket_path": "/run/a.sock", "dataplane.cloudseed_command": ("cloudseed",)}
    settings = load_settings(environ={}, overrides={
        **base, "dataplane.front_answers": "co-located"})
    state = plan(inventory(), PlanContext.from_settings(settings))
    front = proc(state, "proxy-shared")
    assert front.argv[-2:] == ("--answers", "co-located")
    # A value outside the enum refuses to load, naming the setting and the choices.
    with pytest.raises(ConfigError, match=r"front_answers.*relay.*co-located"):
        load_settings(environ={}, overrides={**base, "dataplane.front_answers": "inline"})
    # Co-located without the shared front: refused, naming both settings.
    per_namespace = load_settings(environ={}, overrides={
        **base, "dataplane.proxy_implementation": "builtin",
        "dataplane.front_answers": "co-located"})
    with pytest.raises(ConfigError, match="proxy_implementation = 'shared'"):
        PlanContext.from_settings(per_namespace)
