"""The README's main command: `cloudseed demo` builds a sample cloud and each
guest reads its own metadata through the whole chain. `--check` makes it
verify that itself and exit non-zero otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def run_demo(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSEED_")}
    return subprocess.run(
        [sys.executable, "-m", "cloudseed", "demo", "--check", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )


def test_loopback_demo_guest_reads_its_own_metadata(tmp_path: Path) -> None:
    result = run_demo("--loopback", data_dir=tmp_path / "demo")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "✓ demo-vm-1: uuid" in result.stdout
    assert "curl --interface 127.0.90.11" in result.stdout


def test_namespace_demo_both_guests_read_their_own_metadata() -> None:
    if os.geteuid() != 0:
        pytest.skip("the namespace demo needs root (namespaces, nftables, dnsmasq)")
    missing = [t for t in ("ip", "nft", "dnsmasq", "dhclient") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")
    # dnsmasq re-reads its files as `nobody`: the state must not sit under pytest's 0700 tmp.
    data_dir = Path("/run/cloudseed-test/demo")
    shutil.rmtree(data_dir, ignore_errors=True)
    try:
        result = run_demo(data_dir=data_dir)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        assert "✓ demo-vm-1: uuid" in result.stdout
        assert "✓ demo-vm-2: uuid" in result.stdout
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                    check=True).stdout
        assert "cloudseed-demo" not in namespaces  # torn down
    finally:
        subprocess.run([sys.executable, "-m", "cloudseed", "demo", "--down", "--data-dir",
                        str(data_dir)], capture_output=True, check=False, timeout=120)
