"""Reading libvirt XML: what is taken, and bad input refused naming the element."""

from __future__ import annotations

import pytest
from tests.support.libvirt_node import NETWORK_XML, WEB_MAC, WEB_UUID, WEB_XML, domain_xml

from cloudseed.errors import Invalid
from cloudseed.libvirt.plan import config_drive_disk
from cloudseed.libvirt.xml import MAX_XML_BYTES, parse_domain, parse_network


def test_a_domain_gives_uuid_name_and_its_network_interfaces() -> None:
    xml = domain_xml("web1", WEB_UUID, f"""
    <interface type='network'><mac address='{WEB_MAC.upper()}'/><source network='default'/>
    </interface>
    <interface type='bridge'><mac address='52:54:00:00:00:09'/><source bridge='br0'/>
    </interface>
    <interface type='user'><mac address='52:54:00:00:00:0a'/></interface>""")
    domain = parse_domain(xml)
    assert (domain.uuid, domain.name) == (WEB_UUID, "web1")
    assert [(n.mac_address, n.kind, n.source) for n in domain.interfaces] == [
        (WEB_MAC, "network", "default"), ("52:54:00:00:00:09", "bridge", "br0")]


def test_dhcp_hosts_pin_addresses_by_mac_and_ipv6_by_name() -> None:
    network = parse_network(NETWORK_XML)
    domain = parse_domain(WEB_XML)
    assert network.addresses_for(domain, WEB_MAC) == ["192.168.122.11", "fd00:122::11"]
    assert network.addresses_for(domain, "52:54:00:00:00:99") == ["fd00:122::11"]
    assert [s.cidr for s in network.subnets] == ["192.168.122.0/24", "fd00:122::/64"]


@pytest.mark.parametrize(
    ("xml", "field", "reason"),
    [
        ("<domain><name>a</name></domain>", "domain: uuid", "has no <uuid>"),
        ("<network/>", "domain", "expected a <domain> document"),
        ("<domain", "domain", "not well-formed"),
        (domain_xml("a", "u", "<interface type='network'><mac address='zz'/>"
                    "<source network='n'/></interface>"),
         "domain: devices/interface[1]/mac", "not a MAC address"),
        (domain_xml("a", "u", "<interface type='network'><mac address='52:54:00:00:00:01'/>"
                    "</interface>"),
         "domain: devices/interface[1]/source", "needs source network"),
    ],
)
def test_bad_domain_xml_is_refused_naming_the_element(xml: str, field: str, reason: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_domain(xml)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_a_dhcp_host_outside_its_subnet_is_refused() -> None:
    xml = NETWORK_XML.replace("ip='192.168.122.11'", "ip='10.9.9.9'")
    with pytest.raises(Invalid, match=r"ip\[1\]/dhcp/host\[1\]/@ip: 10.9.9.9 is outside"):
        parse_network(xml)


def test_oversized_xml_is_refused_before_parsing() -> None:
    with pytest.raises(Invalid, match="more than"):
        parse_domain(b" " * (MAX_XML_BYTES + 1))


def test_the_disk_element_escapes_the_path() -> None:
    disk = config_drive_disk("/srv/it's <here>.iso", "iso9660")
    assert "<source file='/srv/it&apos;s &lt;here&gt;.iso'/>" in disk
    assert "device='cdrom'" in disk
    assert "bus='virtio'" in config_drive_disk("/x.img", "vfat")


def test_an_entity_expansion_bomb_is_refused_not_expanded() -> None:
    entities = "".join(
        f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10)
    )
    bomb = f'<!DOCTYPE d [<!ENTITY e0 "lol">{entities}]><domain><name>&e9;</name></domain>'
    with pytest.raises(Invalid, match="not well-formed XML"):
        parse_domain(bomb)
