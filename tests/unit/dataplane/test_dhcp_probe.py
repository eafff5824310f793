"""The DHCP probe's frames: a DISCOVER dnsmasq accepts, an OFFER read back (RFC 2131/3442)."""

from __future__ import annotations

import socket
import struct

from cloudseed.dataplane import dhcp_probe


def _offer_from(discover: bytes, ip: str, routes: bytes) -> bytes:
    """The server's answer to ``discover``: op 2, yiaddr, message type 2, option 121."""
    frame = bytearray(discover)
    udp = 14 + 20
    frame[udp:udp + 4] = struct.pack("!HH", 67, 68)
    bootp = udp + 8
    frame[bootp] = 2
    frame[bootp + 16:bootp + 20] = socket.inet_aton(ip)
    options = (dhcp_probe.MAGIC_COOKIE + bytes([53, 1, 2, 121, len(routes)]) + routes
               + bytes([255]))
    return bytes(frame[:bootp + 236]) + options


def test_discover_asks_for_the_client_mac_from_its_own_source_mac() -> None:
    frame = dhcp_probe.build_discover(0x1234, "02:00:00:00:00:01", "fa:16:3e:00:00:05")
    assert frame[:6] == b"\xff" * 6  # broadcast
    assert frame[6:12] == bytes.fromhex("020000000001")  # the probe's MAC, not the guest's
    bootp = frame[14 + 20 + 8:]
    assert bootp[0] == 1  # BOOTREQUEST
    assert struct.unpack("!I", bootp[4:8])[0] == 0x1234
    assert struct.unpack("!H", bootp[10:12])[0] == 0x8000  # broadcast flag: answer to all
    assert bootp[28:34] == bytes.fromhex("fa163e000005")  # chaddr: what dnsmasq matches
    assert dhcp_probe._checksum(frame[14:34]) == 0  # a valid IPv4 header
    # A DISCOVER is not an OFFER.
    assert dhcp_probe.parse_offer(frame, 0x1234) is None


def test_offer_for_our_xid_gives_the_address_and_option_121() -> None:
    discover = dhcp_probe.build_discover(7, "02:00:00:00:00:01", "fa:16:3e:00:00:05")
    routes = bytes([32, 169, 254, 169, 254, 10, 0, 0, 254, 0, 10, 0, 0, 1])
    offer = _offer_from(discover, "10.0.0.5", routes)
    assert dhcp_probe.parse_offer(offer, 7) == {
        "offered": "10.0.0.5",
        "routes": ["169.254.169.254/32 via 10.0.0.254", "0.0.0.0/0 via 10.0.0.1"],
    }
    assert dhcp_probe.parse_offer(offer, 8) is None  # another client's exchange


def test_exchange_resends_until_an_offer_arrives() -> None:
    sent: list[bytes] = []
    answers: list[bytes | None] = [None, None]

    def receive(_timeout: float) -> bytes | None:
        if answers:
            return answers.pop(0)
        xid = struct.unpack("!I", sent[-1][14 + 20 + 8 + 4:14 + 20 + 8 + 8])[0]
        return _offer_from(dhcp_probe.build_discover(xid, "02:00:00:00:00:01", "fa:16:3e:00:00:05"),
                           "10.0.0.5", b"")

    result = dhcp_probe.exchange(sent.append, receive, "fa:16:3e:00:00:05",
                                 "02:00:00:00:00:01", timeout=30)
    assert result["offered"] == "10.0.0.5"
    assert len(sent) == 3  # the first DISCOVER and one resend per silent wait
