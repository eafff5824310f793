"""The real Nova and Neutron from PyPI, each in a venv of its own, cached.

The differential and drop-in tests run OpenStack's own code, which must not
share an environment with cloudseed (different pins, eventlet). Each package
is installed once per cache directory, pinned to the exact versions in
``tests/differential/<package>-<version>.constraints.txt``, and reused by
every later test run; a lock keeps parallel runs from installing twice.

The cache lives in ``~/.cache/cloudseed/openstack`` (``XDG_CACHE_HOME`` or
``CLOUDSEED_OPENSTACK_CACHE`` move it), outside the work tree, so CI's fresh
clone on the same machine reuses it. An install that fails makes the calling test FAIL, never skip:
CI must not go green without having compared against the real thing.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIFFERENTIAL = REPO / "tests" / "differential"
NOVA = ("nova", "34.0.0")
NEUTRON = ("neutron", "29.0.0")
INSTALL_TIMEOUT_SECONDS = 900


def cache_root() -> Path:
    configured = os.environ.get("CLOUDSEED_OPENSTACK_CACHE")
    if configured:
        return Path(configured)
    # Outside the work tree, so a fresh clone (CI) on the same machine reuses it.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cloudseed" / "openstack"


def openstack_python(package: tuple[str, str]) -> Path:
    """The python of a venv holding ``package`` (name, version); installs it
    the first time. Fails the test (not skips) when the install fails."""
    name, version = package
    tag = f"{name}-{version}-py{sys.version_info.major}{sys.version_info.minor}"
    target = cache_root() / tag
    python = target / "bin" / "python"
    stamp = target / ".installed"
    constraints = DIFFERENTIAL / f"{name}-{version}.constraints.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == constraints.read_text():
            return python
        started = time.monotonic()
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(target)],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [
                    str(python), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "-c", str(constraints), f"{name}=={version}",
                ],
                check=True,
                capture_output=True,
                timeout=INSTALL_TIMEOUT_SECONDS,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            pytest.fail(
                f"installing {name}=={version} from PyPI failed (a real {name} is needed for "
                f"this test; fix the network or the pins in {constraints.name}):\n"
                + exc.stderr.decode(errors="replace")[-3000:]
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"installing {name}=={version} took over {INSTALL_TIMEOUT_SECONDS} s")
        # The stamp holds the pins it was installed with: new pins reinstall.
        stamp.write_text(constraints.read_text())
        sys.stderr.write(f"installed {name}=={version} in {time.monotonic() - started:.0f} s\n")
        return python
