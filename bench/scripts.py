"""Request scripts for the C load generator (format in ``loadgen.c``).

Each kind of client sends what the tier in front of its target would send:

- ``api``: the agent's request to the API: X-Forwarded-For plus the signed
  X-Instance-ID / X-Tenant-ID / X-Instance-ID-Signature (Nova's proxy mode);
- ``agent``: the proxy's request to the agent over its Unix socket:
  X-Forwarded-For plus X-Neutron-Network-ID;
- ``guest``: the guest itself, no identity headers, from its own source
  address (proxy and full-chain rows).

Reference servers serve one server's files, so their scripts give every VM
the sample VM's MAC (``same_mac``); the identity headers stay per VM, so
request sizes match the cloudseed rows they are compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench import fleet
from cloudseed.auth.signing import sign_instance_id

KINDS = ("api", "agent", "guest")
# What python-requests (cloud-init's HTTP client) sends on every request.
COMMON_HEADERS = (
    "Host: 169.254.169.254",
    "User-Agent: Cloud-Init/23.1.1",
    "Accept-Encoding: gzip, deflate",
    "Accept: */*",
)


def write_script(
    target: Path,
    kind: str,
    vms: Sequence[fleet.Vm],
    paths: Sequence[str],
    secret: bytes,
    *,
    same_mac: bool = False,
) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown script kind {kind}")
    lines = [f"H {h}" for h in COMMON_HEADERS] + [f"path {p}" for p in paths]
    sample_mac = fleet.vm(0).mac
    for v in vms:
        mac = sample_mac if same_mac else v.mac
        if kind == "guest":
            lines.append(f"vm {v.ip} {mac}")
            continue
        lines.append(f"vm - {mac}")
        lines.append(f"h X-Forwarded-For: {v.ip}")
        if kind == "agent":
            lines.append(f"h X-Neutron-Network-ID: {fleet.NETWORK_ID}")
        else:
            lines.append(f"h X-Instance-ID: {v.server_id}")
            lines.append(f"h X-Tenant-ID: {fleet.PROJECT_ID}")
            lines.append(f"h X-Instance-ID-Signature: {sign_instance_id(secret, v.server_id)}")
    target.write_text("\n".join(lines) + "\n")
    return target
