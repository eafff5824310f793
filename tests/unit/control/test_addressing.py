import pytest

from cloudseed.control import addressing
from cloudseed.control.ports import IpRequest, Taken, build_port
from cloudseed.errors import Conflict, Invalid
from cloudseed.model import Ipv6Mode, Network, Subnet

NET = Network("net-1", "net1")
V4 = Subnet("sub-4", "net-1", "10.0.0.0/29", 4, gateway_ip="10.0.0.1")
V6 = Subnet(
    "sub-6", "net-1", "fd00::/64", 6, gateway_ip="fd00::1", ipv6_address_mode=Ipv6Mode.SLAAC
)


def test_allocation_skips_network_gateway_and_taken_addresses() -> None:
    assert addressing.allocate_ip(V4, {"10.0.0.2"}, "fa:16:3e:00:00:01", "f") == "10.0.0.3"


def test_allocation_never_hands_out_broadcast_and_reports_exhaustion() -> None:
    taken = {f"10.0.0.{i}" for i in range(2, 7)}
    with pytest.raises(Conflict, match="no free address"):
        addressing.allocate_ip(V4, taken, "fa:16:3e:00:00:01", "f")


def test_slaac_subnet_gives_the_eui64_address_of_the_mac() -> None:
    # RFC 4291 appendix A: flip the U/L bit, insert ff:fe.
    ip = addressing.allocate_ip(V6, set(), "fa:16:3e:12:34:56", "f")
    assert ip == "fd00::f816:3eff:fe12:3456"


@pytest.mark.parametrize(
    ("ip", "error", "message"),
    [
        ("10.0.1.5", Invalid, "not inside subnet"),
        ("10.0.0.0", Invalid, "network address"),
        ("10.0.0.7", Invalid, "broadcast address"),
        ("10.0.0.6", Conflict, "DHCP port's address"),
        ("10.0.0.1", Conflict, "gateway"),
        ("10.0.0.4", Conflict, "already in use"),
        ("10.0.0.x", Invalid, "not an IP address"),
    ],
)
def test_fixed_ip_must_be_a_free_host_address_of_its_subnet(
    ip: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        addressing.check_fixed_ip(V4, ip, {"10.0.0.4"}, "fixed_ip")


def test_cidr_with_host_bits_suggests_the_network() -> None:
    with pytest.raises(Invalid, match=r"did you mean 10\.0\.0\.0/24"):
        addressing.parse_network("10.0.0.5/24", "cidr")


@pytest.mark.parametrize("mac", ["FA:16:3E:AA:BB:CC", "fa-16-3e-aa-bb-cc"])
def test_macs_are_normalised_to_lower_case_colons(mac: str) -> None:
    assert addressing.normalise_mac(mac, "mac") == "fa:16:3e:aa:bb:cc"


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:01", "00:00:00:00:00:00", "fa:16:3e:aa:bb", "zz"])
def test_multicast_zero_and_malformed_macs_are_refused(mac: str) -> None:
    with pytest.raises(Invalid):
        addressing.normalise_mac(mac, "mac")


def test_generated_macs_use_the_openstack_prefix_and_avoid_taken_ones() -> None:
    mac = addressing.generate_mac(set())
    assert mac.startswith("fa:16:3e:")
    assert addressing.normalise_mac(mac, "mac") == mac


def test_new_port_gets_one_address_per_family_and_records_them() -> None:
    taken = Taken()
    port = build_port("p1", NET, [V4, V6], taken, where="port", mac="fa:16:3e:00:00:02")
    assert [f.ip_address for f in port.fixed_ips] == ["10.0.0.2", "fd00::f816:3eff:fe00:2"]
    assert "fa:16:3e:00:00:02" in taken.macs
    second = build_port("p2", NET, [V4], taken, where="port")
    assert second.fixed_ips[0].ip_address == "10.0.0.3"


def test_port_with_a_taken_mac_is_a_conflict_naming_the_field() -> None:
    taken = Taken(macs={"fa:16:3e:00:00:02"})
    with pytest.raises(Conflict) as err:
        build_port("p1", NET, [V4], taken, where="networks[0]", mac="fa:16:3e:00:00:02")
    assert err.value.field == "networks[0].mac_address"


def test_requested_ip_outside_every_subnet_names_the_subnets() -> None:
    with pytest.raises(Invalid, match=r"10\.0\.0\.0/29"):
        build_port("p1", NET, [V4], Taken(), where="port", ips=[IpRequest(None, "192.0.2.1")])
