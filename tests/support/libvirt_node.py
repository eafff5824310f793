"""A libvirt host for tests: libvirt's own test driver, fed a node XML file.

``test:///PATH`` makes libvirt (the real library, through libvirt-python or
virsh) serve the domains and networks described in PATH, in process, with no
daemon. Each connection re-reads the file, so a test and a ``cloudseed``
child process see the same host. Every MAC is given: libvirt would otherwise
pick a random one per connection.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NETWORK_UUID = "dd8fe884-6c02-601e-7551-cca97df1c5df"
WEB_UUID = "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
DB_UUID = "4dea22b3-1d52-d8f3-2516-782e98ab3fa1"
WEB_MAC = "52:54:00:aa:00:01"
WEB_MAC2 = "52:54:00:aa:00:02"
DB_MAC = "52:54:00:bb:00:01"
WEB_IP = "192.168.122.11"
WEB_IP6 = "fd00:122::11"

NETWORK_XML = f"""<network>
  <name>default</name>
  <uuid>{NETWORK_UUID}</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mtu size='1450'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.100' end='192.168.122.254'/>
      <host mac='{WEB_MAC}' name='web1' ip='{WEB_IP}'/>
    </dhcp>
  </ip>
  <ip family='ipv6' address='fd00:122::1' prefix='64'>
    <dhcp>
      <host name='web1' ip='{WEB_IP6}'/>
    </dhcp>
  </ip>
</network>"""


def domain_xml(name: str, uuid: str, *interfaces: str) -> str:
    return f"""<domain type='test'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory>1048576</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>{''.join(interfaces)}
  </devices>
</domain>"""


def nic(mac: str, network: str = "default") -> str:
    return f"""
    <interface type='network'>
      <mac address='{mac}'/>
      <source network='{network}'/>
    </interface>"""


WEB_XML = domain_xml("web1", WEB_UUID, nic(WEB_MAC))
DB_XML = domain_xml("db1", DB_UUID, nic(DB_MAC))


def write_node(directory: Path, *domains: str, network: str = NETWORK_XML) -> str:
    """A node file with ``network`` and ``domains``; returns its test:// URI."""
    path = directory / "node.xml"
    path.write_text(f"<node>\n{network}\n{''.join(domains)}\n</node>\n")
    return f"test://{path}"


def virsh(uri: str, *args: str) -> str:
    """What the real ``virsh`` prints (dumpxml, net-dumpxml, …)."""
    if shutil.which("virsh") is None:
        pytest.fail("virsh is not installed (apt-get install libvirt-clients; scripts/bootstrap)")
    result = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True,
                            check=True, timeout=60)
    return result.stdout
