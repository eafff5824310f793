"""Run Debian's real cloud-init as a guest would: a separate process under the
system python3 that the `cloud-init` package belongs to.

Conformance tests hand it a short script that imports cloud-init's own
readers and prints JSON; they compare that JSON with what was registered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

GUEST_PYTHON = "/usr/bin/python3"


def cloudinit_missing_reason() -> str | None:
    """Why cloud-init cannot run here, or None when it can."""
    if not Path(GUEST_PYTHON).exists():
        return f"{GUEST_PYTHON} (Debian's python3) is not installed"
    probe = subprocess.run(
        [GUEST_PYTHON, "-c", "import cloudinit.sources.helpers.openstack"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return "Debian's cloud-init package is not installed (apt-get install cloud-init)"
    return None


def require_cloudinit() -> None:
    reason = cloudinit_missing_reason()
    if reason:
        pytest.skip(reason)


def run_guest_python(script: str, *args: str, timeout: float = 60, netns: str | None = None) -> Any:
    """Run ``script`` under the guest python with ``args`` as argv; return stdout as JSON."""
    command = [GUEST_PYTHON, "-c", script, *args]
    if netns:
        command = [shutil.which("ip") or "ip", "netns", "exec", netns, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"guest script failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout)
