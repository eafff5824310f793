"""``--nic`` as ``openstack server create`` takes it, and its shorthands.

``--nic net-id=NET[,v4-fixed-ip=IP][,v6-fixed-ip=IP][,mac=MAC][,tag=TAG]``,
``--nic port-id=PORT[,tag=TAG][,move=true]`` and ``--nic none``; ``--network NET`` and
``--port PORT`` are shorthands. All three append to one list, so the NICs
keep the order they were given in — the guest's eth0, eth1 … — and each
option makes exactly one port.

Each NIC becomes one entry of the control API's ``networks`` list. The
control API validates the addresses against their subnets; here only what
the option's own grammar says is checked (a known key, a v4 address under
``v4-fixed-ip``), so the message can name the option as typed.

``move=true`` is the caller saying explicitly that a port another server owns
moves to this one (the store refuses the move otherwise, on every entry point).
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Sequence
from typing import Any

# ``--nic none``: a server without NICs (Nova's networks="none").
NO_NIC: dict[str, Any] = {"none": True}
NIC_KEYS = ("net-id", "port-id", "v4-fixed-ip", "v6-fixed-ip", "mac", "tag", "move")
# Keys that describe a new port, so they make no sense with port-id.
NEW_PORT_KEYS = ("v4-fixed-ip", "v6-fixed-ip", "mac")


def parse_nic(text: str) -> dict[str, Any]:
    """One ``--nic`` value → one entry of the request's ``networks`` (raises ValueError)."""
    if text.strip().lower() == "none":
        return dict(NO_NIC)
    if text.strip().lower() == "auto":
        raise ValueError("'auto' needs Neutron's auto-allocated topology; name a network")
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if key not in NIC_KEYS or not sep:
            raise ValueError(f"unknown part {part!r}; the keys are {', '.join(NIC_KEYS)}")
        if not value:
            raise ValueError(f"{key} needs a value")
        if key in fields:
            raise ValueError(f"{key} given twice; use one --nic per port")
        fields[key] = value
    if ("net-id" in fields) == ("port-id" in fields):
        raise ValueError("give exactly one of net-id=NETWORK or port-id=PORT")
    if "port-id" in fields:
        extra = [key for key in NEW_PORT_KEYS if key in fields]
        if extra:
            raise ValueError(f"{', '.join(extra)} describe a new port; drop them with port-id")
        nic: dict[str, Any] = {"port": fields["port-id"]}
        if "move" in fields:
            nic["move"] = _move(fields["move"])
    else:
        if "move" in fields:
            raise ValueError("move= moves an existing port; it goes with port-id")
        nic = {"network": fields["net-id"]}
        fixed = [
            {"ip_address": _address(fields[key], key, version)}
            for key, version in (("v4-fixed-ip", 4), ("v6-fixed-ip", 6))
            if key in fields
        ]
        if fixed:
            nic["fixed_ips"] = fixed
        if "mac" in fields:
            nic["mac_address"] = fields["mac"]
    if "tag" in fields:
        nic["tag"] = fields["tag"]
    return nic


def _move(text: str) -> bool:
    value = text.lower()
    if value not in {"true", "false"}:
        raise ValueError(f"move={text}: use move=true or move=false")
    return value == "true"


def _address(text: str, key: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{key}={text} is not an IP address") from None
    if address.version != version:
        raise ValueError(f"{key}={text} is not an IPv{version} address")
    return text


class NicAction(argparse.Action):
    """Append one NIC per ``--nic``/``--network``/``--port`` to a shared list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        text = str(values)
        if option_string == "--network":
            text = f"net-id={text}"
        elif option_string == "--port":
            text = f"port-id={text}"
        try:
            nic = parse_nic(text)
        except ValueError as exc:
            parser.error(f"{option_string} {values}: {exc}")
        nics = list(getattr(namespace, self.dest, None) or [])
        nics.append(nic)
        setattr(namespace, self.dest, nics)
