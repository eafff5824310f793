"""Reading the shipped systemd units in tests."""

from __future__ import annotations

from cloudseed.systemd import render_units


def unit_settings(name: str) -> dict[str, list[str]]:
    """``Key`` → every value it is given in unit ``name`` (as installed for ``cloudseed``)."""
    found: dict[str, list[str]] = {}
    for line in render_units(("/usr/bin/cloudseed",))[name].splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def dataplane_capabilities() -> list[str]:
    (bounding,) = unit_settings("cloudseed-dataplane.service")["CapabilityBoundingSet"]
    return bounding.split()
