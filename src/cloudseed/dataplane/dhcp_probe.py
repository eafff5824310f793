"""Ask dnsmasq for a guest's address the way the guest would: one DHCPDISCOVER, one OFFER.

``doctor`` runs this from a throw-away namespace on the guest's bridge, with
the port's MAC as the client hardware address (``chaddr``, what dnsmasq
matches its hosts file on) but a frame source MAC of its own, so the
bridge never moves the guest's MAC to the probe; the broadcast flag makes
dnsmasq broadcast its answer. A DISCOVER commits nothing: dnsmasq keeps no
lease for an OFFER, and the real guest ignores an OFFER for another xid.
Tests use the same code through a tap (``--tap``), as a VM's NIC.

Run as ``python -m cloudseed.dataplane.dhcp_probe`` inside the namespace;
it prints one JSON object: ``{"offered": IP|null, "routes": [...]}``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence

from cloudseed.dataplane.desired import GUEST_OUTER_PREFIX, Names, derived_mac, short_hash
from cloudseed.dataplane.runner import Runner

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAGIC_COOKIE = b"\x63\x82\x53\x63"
OPTION_MESSAGE_TYPE = 53
OPTION_CLASSLESS_ROUTES = 121
OPTION_END = 255
DHCPDISCOVER, DHCPOFFER = 1, 2
PROBE_TIMEOUT_SECONDS = 5.0
RESEND_SECONDS = 0.5
PROBE_MODULE = "cloudseed.dataplane.dhcp_probe"


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def build_discover(xid: int, source_mac: str, client_mac: str) -> bytes:
    """An Ethernet frame: broadcast DHCPDISCOVER for ``client_mac``, sent from ``source_mac``."""
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4,
                        _mac_bytes(client_mac), b"", b"")
    options = (MAGIC_COOKIE + bytes([OPTION_MESSAGE_TYPE, 1, DHCPDISCOVER])
               + bytes([55, 3, 1, 3, OPTION_CLASSLESS_ROUTES, OPTION_END]))
    payload = bootp + options
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         b"\0" * 4, b"\xff" * 4)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    ethernet = b"\xff" * 6 + _mac_bytes(source_mac) + struct.pack("!H", ETH_P_IP)
    return ethernet + header + udp


def parse_offer(frame: bytes, xid: int) -> dict[str, object] | None:
    """The offered address and option-121 routes, if ``frame`` is our xid's DHCPOFFER."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != struct.pack("!H", ETH_P_IP):
        return None
    ip_start = 14
    ihl = (frame[ip_start] & 0x0F) * 4
    if frame[ip_start + 9] != 17:
        return None
    udp = ip_start + ihl
    if struct.unpack("!H", frame[udp + 2:udp + 4])[0] != 68:
        return None
    bootp = frame[udp + 8:]
    if bootp[0] != 2 or struct.unpack("!I", bootp[4:8])[0] != xid:
        return None
    options = _options(bootp[240:]) if bootp[236:240] == MAGIC_COOKIE else {}
    if options.get(OPTION_MESSAGE_TYPE) != bytes([DHCPOFFER]):
        return None
    return {"offered": socket.inet_ntoa(bootp[16:20]),
            "routes": _classless_routes(options.get(OPTION_CLASSLESS_ROUTES, b""))}


def _options(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    i = 0
    while i < len(data) and data[i] != OPTION_END:
        if data[i] == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        code, length = data[i], data[i + 1]
        found[code] = data[i + 2:i + 2 + length]
        i += 2 + length
    return found


def _classless_routes(data: bytes) -> list[str]:
    """RFC 3442: ["169.254.169.254/32 via 10.0.0.1", …]."""
    routes, i = [], 0
    while i < len(data):
        width = data[i]
        octets = (width + 7) // 8
        destination = data[i + 1:i + 1 + octets] + b"\0" * (4 - octets)
        router = data[i + 1 + octets:i + 5 + octets]
        routes.append(f"{socket.inet_ntoa(destination)}/{width} via {socket.inet_ntoa(router)}")
        i += 5 + octets
    return routes


def exchange(send: Callable[[bytes], object], receive: Callable[[float], bytes | None],
             client_mac: str, source_mac: str, timeout: float) -> dict[str, object]:
    xid = secrets.randbits(32)
    send(build_discover(xid, source_mac, client_mac))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        frame = receive(min(left, RESEND_SECONDS))
        if frame is None:  # a fresh link may drop the first frame: resend, as clients do
            send(build_discover(xid, source_mac, client_mac))
            continue
        offer = parse_offer(frame, xid)
        if offer is not None:
            return offer
    return {"offered": None, "routes": []}


def probe_bridge(runner: Runner, root: str, bridge: str, client_mac: str,
                 timeout: float = PROBE_TIMEOUT_SECONDS) -> dict[str, object]:
    """One DISCOVER for ``client_mac`` from a throw-away namespace on ``bridge``."""
    key = short_hash(f"probe/{bridge}")
    namespace = f"{Names(root).namespace_prefix}probe-{key}"
    outer = GUEST_OUTER_PREFIX + key  # teardown sweeps our prefixes if we die midway
    runner.delete_namespace(namespace)
    runner.run(["ip", *(["-n", root] if root else []), "link", "delete", outer], check=False)
    try:
        runner.add_namespace(namespace)
        runner.ip("link", "add", outer, "type", "veth", "peer", "name", "probe0", "netns",
                  namespace, netns=root)
        runner.ip("link", "set", "probe0", "address", derived_mac(namespace), netns=namespace)
        runner.ip("link", "set", outer, "master", bridge, netns=root)
        runner.ip("link", "set", outer, "up", netns=root)
        runner.ip("link", "set", "probe0", "up", netns=namespace)
        result = runner.query([sys.executable, "-m", PROBE_MODULE, "--interface", "probe0",
                               "--client-mac", client_mac, "--source-mac",
                               derived_mac(namespace), "--timeout", str(timeout)],
                              netns=namespace)
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            return {"offered": None, "routes": [], "error": result.stderr.strip()[-300:]}
        return answer if isinstance(answer, dict) else {"offered": None, "routes": []}
    finally:
        runner.run(["ip", *(["-n", root] if root else []), "link", "delete", outer],
                   check=False)
        runner.delete_namespace(namespace)


def _open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudseed.dataplane.dhcp_probe",
                                     description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--interface", help="send from this interface (a raw socket)")
    where.add_argument("--tap", help="send as the VM behind this tap would")
    parser.add_argument("--client-mac", required=True, help="the MAC to ask an address for")
    parser.add_argument("--source-mac", help="frame source MAC (default: --client-mac)")
    parser.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_SECONDS)
    args = parser.parse_args(argv)
    source = args.source_mac or args.client_mac
    if args.tap:
        fd = _open_tap(args.tap)
        try:
            result = exchange(lambda frame: os.write(fd, frame),
                              lambda t: os.read(fd, 65535) if _readable(fd, t) else None,
                              args.client_mac, source, args.timeout)
        finally:
            os.close(fd)
    else:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as raw:
            raw.bind((args.interface, 0))
            result = exchange(raw.send,
                              lambda t: raw.recv(65535) if _readable(raw.fileno(), t) else None,
                              args.client_mac, source, args.timeout)
    print(json.dumps(result))
    return 0 if result["offered"] else 1


if __name__ == "__main__":
    sys.exit(main())
