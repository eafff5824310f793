"""The README's commands escalate the same way for root, a sudo user and a user without sudo.

``scripts/demo`` and ``scripts/test`` source ``scripts/as-root``; a stand-in
script does the same here, run as root and (through ``setpriv``) as nobody,
with a recording ``sudo`` on PATH or none at all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are 0700, and nobody must reach the script.
    path = Path(tempfile.mkdtemp(prefix="cloudseed-scripts-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    # A copy of as-root next to the stand-in: the clone itself may sit under a 0700 home.
    shutil.copy(REPO / "scripts" / "as-root", tmp_path / "as-root")
    path = tmp_path / "standin"
    path.write_text(f'#!/bin/bash\n. {tmp_path}/as-root\necho "ran as $(id -u): $*"\n')
    path.chmod(0o755)
    (tmp_path / "as-root").chmod(0o644)
    return path


def _bin(tmp_path: Path, *, with_sudo: bool) -> Path:
    """A PATH directory with only what the script needs, and maybe a recording sudo."""
    directory = tmp_path / ("with-sudo" if with_sudo else "without-sudo")
    directory.mkdir(mode=0o755)
    for tool in ("id", "bash"):
        found = shutil.which(tool)
        assert found
        (directory / tool).symlink_to(found)
    if with_sudo:
        (directory / "sudo").write_text('#!/bin/bash\necho "sudo $*"\n')
        (directory / "sudo").chmod(0o755)
    return directory


def _run(script: Path, path: Path, *, as_nobody: bool, **env: str) -> str:
    argv = [str(script), "--check", "two words"]
    if as_nobody:
        setpriv = shutil.which("setpriv")
        assert setpriv
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    result = subprocess.run(argv, env={"PATH": str(path), **env}, capture_output=True,
                            text=True, timeout=30, check=True)
    return result.stdout.strip()


@needs_root
def test_root_runs_directly_even_where_sudo_exists(script: Path, tmp_path: Path) -> None:
    assert _run(script, _bin(tmp_path, with_sudo=True), as_nobody=False) == (
        "ran as 0: --check two words")


@needs_root
def test_a_user_is_re_run_through_sudo_with_the_same_arguments(
    script: Path, tmp_path: Path
) -> None:
    assert _run(script, _bin(tmp_path, with_sudo=True), as_nobody=True) == (
        f"sudo -- {script} --check two words")


@needs_root
def test_a_user_without_sudo_goes_on_unprivileged(script: Path, tmp_path: Path) -> None:
    assert _run(script, _bin(tmp_path, with_sudo=False), as_nobody=True) == (
        "ran as 65534: --check two words")


@needs_root
def test_cloudseed_no_sudo_keeps_a_user_unprivileged(script: Path, tmp_path: Path) -> None:
    assert _run(script, _bin(tmp_path, with_sudo=True), as_nobody=True,
                CLOUDSEED_NO_SUDO="1") == "ran as 65534: --check two words"


def _runtime_debs() -> set[str]:
    text = (REPO / "scripts" / "bootstrap").read_text()
    match = re.search(r"^RUNTIME_DEBS=\(([^)]*)\)", text, re.MULTILINE)
    assert match
    return set(match.group(1).split())


def _commands_cloudseed_runs() -> set[str]:
    """Every program the source starts by name (the data plane's runner, doctor, the demo)."""
    called = re.compile(r'(?:run|query|Popen|check_output)\(\s*\[\s*"([a-z][\w.-]*)"')
    found = {"dnsmasq"}  # started from the plan's argv (dataplane/dhcp.py)
    for path in (REPO / "src" / "cloudseed").rglob("*.py"):
        found |= set(called.findall(path.read_text()))
    return found


def _package_of(tool: str) -> set[str]:
    listed = subprocess.run(["dpkg-query", "-S", tool], capture_output=True, text=True,
                            check=False).stdout
    return {line.split(":")[0] for line in listed.splitlines()
            if re.search(rf"/s?bin/{re.escape(tool)}$", line)}


def test_the_demo_installs_every_program_cloudseed_runs() -> None:
    commands = _commands_cloudseed_runs()
    # The scan sees the runner (sysctls are written in-process now, not run).
    assert {"ip", "nft", "dhclient"} <= commands
    runtime = _runtime_debs()
    for tool in sorted(commands):
        packages = _package_of(tool)
        assert packages, f"{tool}: no Debian package provides it here"
        assert packages & runtime, f"{tool} comes from {packages}, not in RUNTIME_DEBS"
