"""dnsmasq's log and the bridge's FDB, parsed (the lines are dnsmasq 2.90's own wording)."""

from __future__ import annotations

import json

from cloudseed.dataplane import evidence

LOG = """\
Dec  4 16:11:17 dnsmasq-dhcp[7]: read /s/dhcp/n/host
Dec  4 16:11:17 dnsmasq-dhcp[7]: read /s/dhcp/n/opts
Dec  4 16:12:00 dnsmasq[7]: cannot read /s/dhcp/n/host: Permission denied
Dec  4 16:12:00 dnsmasq-dhcp[7]: read /s/dhcp/n/opts
Dec  4 16:12:01 dnsmasq-dhcp[7]: DHCPDISCOVER(ns-1) 52:54:00:12:34:56 no address available
Dec  4 16:12:02 dnsmasq-dhcp[7]: DHCPREQUEST(ns-1) 10.0.0.5 fa:16:3e:00:00:05
Dec  4 16:12:02 dnsmasq-dhcp[7]: DHCPACK(ns-1) 10.0.0.5 fa:16:3e:00:00:05 vm1
"""


def test_the_latest_read_of_each_file_decides() -> None:
    assert evidence.unreadable(LOG, ["/s/dhcp/n/host", "/s/dhcp/n/opts"]) == {
        "/s/dhcp/n/host": "Permission denied"}
    healed = LOG + "Dec  4 16:13:00 dnsmasq-dhcp[7]: read /s/dhcp/n/host\n"
    assert evidence.unreadable(healed, ["/s/dhcp/n/host"]) == {}


def test_dhcp_exchanges_by_mac() -> None:
    events = evidence.dhcp_events(LOG)
    reply = evidence.last_reply(events, "FA:16:3E:00:00:05")
    assert reply is not None
    assert (reply.message, reply.ip, reply.rest) == ("DHCPACK", "10.0.0.5", "vm1")
    assert evidence.last_reply(events, "fa:16:3e:00:00:06") is None
    assert evidence.refused_macs(events) == ["52:54:00:12:34:56"]


def test_fdb_keeps_learned_entries_only() -> None:
    fdb = json.dumps([
        {"mac": "33:33:00:00:00:01", "ifname": "br0", "flags": ["self"], "state": "permanent"},
        {"mac": "FA:16:3E:00:00:05", "ifname": "csg-1", "updated": 3, "flags": [],
         "master": "br0", "state": ""},
        {"mac": "fe:16:3e:00:00:05", "ifname": "tap0", "flags": [], "master": "br0",
         "state": "permanent"},
    ])
    assert evidence.parse_fdb(fdb) == {"fa:16:3e:00:00:05": evidence.Learned("csg-1", 3)}
    assert evidence.parse_fdb("not json") == {}
