"""The real Nova and Neutron from PyPI, each in a venv of its own, cached.

The differential and drop-in tests run OpenStack's own code, which must not
share an environment with cloudseed (different pins, eventlet). Each package
is installed once per cache directory, pinned to the exact versions in
``tests/differential/<package>-<version>.constraints.txt``, and reused by
every later test run; a lock keeps parallel runs from installing twice.
The benchmark (``bench/anchors.py``) runs the same venvs, with extra pinned
packages it alone needs (a WSGI server for Nova) added on top.

The cache lives in ``~/.cache/cloudseed/openstack`` (``XDG_CACHE_HOME`` or
``CLOUDSEED_OPENSTACK_CACHE`` move it), outside the work tree, so CI's fresh
clone on the same machine reuses it. An install that fails raises
``OpenStackInstallError``, which makes the calling test FAIL, never skip: CI
must not go green without having compared against the real thing.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIFFERENTIAL = REPO / "tests" / "differential"
NOVA = ("nova", "34.0.0")
NEUTRON = ("neutron", "29.0.0")
INSTALL_TIMEOUT_SECONDS = 900


class OpenStackInstallError(RuntimeError):
    """Installing an OpenStack package from PyPI failed; the message names the fix."""


def cache_root() -> Path:
    configured = os.environ.get("CLOUDSEED_OPENSTACK_CACHE")
    if configured:
        return Path(configured)
    # Outside the work tree, so a fresh clone (CI) on the same machine reuses it.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cloudseed" / "openstack"


def openstack_python(package: tuple[str, str], extras: Sequence[str] = ()) -> Path:
    """The python of a venv holding ``package`` (name, version); installs it
    the first time, then each pinned requirement of ``extras`` not yet there.
    Raises ``OpenStackInstallError`` when an install fails."""
    name, version = package
    tag = f"{name}-{version}-py{sys.version_info.major}{sys.version_info.minor}"
    target = cache_root() / tag
    python = target / "bin" / "python"
    stamp = target / ".installed"
    constraints = DIFFERENTIAL / f"{name}-{version}.constraints.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text() == constraints.read_text()):
            started = time.monotonic()
            _run([sys.executable, "-m", "venv", "--clear", str(target)], name, constraints)
            _pip(python, constraints, [f"{name}=={version}"], name)
            # The stamp holds the pins it was installed with: new pins reinstall.
            stamp.write_text(constraints.read_text())
            sys.stderr.write(f"installed {name}=={version} in {time.monotonic() - started:.0f} s\n")
        for requirement in extras:
            # One stamp per pinned extra; a fresh base install (venv --clear) drops them all.
            extra_stamp = target / f".extra-{requirement}"
            if not extra_stamp.exists():
                _pip(python, constraints, [requirement], requirement)
                extra_stamp.write_text(requirement)
        return python


def _pip(python: Path, constraints: Path, requirements: list[str], name: str) -> None:
    _run(
        [
            str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "-c", str(constraints), *requirements,
        ],
        name,
        constraints,
    )  # fmt: skip


def _run(argv: list[str], name: str, constraints: Path) -> None:
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=INSTALL_TIMEOUT_SECONDS)
    except subprocess.CalledProcessError as exc:
        raise OpenStackInstallError(
            f"installing {name} from PyPI failed (the real thing is needed here; fix the "
            f"network or the pins in {constraints.name}):\n"
            + exc.stderr.decode(errors="replace")[-3000:]
        ) from None
    except subprocess.TimeoutExpired:
        raise OpenStackInstallError(
            f"installing {name} took over {INSTALL_TIMEOUT_SECONDS} s"
        ) from None
