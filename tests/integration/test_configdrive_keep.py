"""``cloudseed configdrive keep`` as a real process, following changes made through the control API.

The keeper and the control API share one store (a SQLite file, or PostgreSQL
when configured); the test polls the image directory with a generous
deadline, never timing anything.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.configdrive_tools import extract_iso, read_tree, require_tools
from tests.support.control import RunningControl, running_control

from cloudseed.store import open_store

SEED_KEY = "configdrive-seed-key-for-tests-0123456789"
# Generous: a loaded CI machine starts Python, opens the store and builds.
DEADLINE_SECONDS = 60.0


def _keep_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSEED_")}
    env.update(CLOUDSEED_STORE_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


@pytest.fixture
def control(store_url: str) -> Iterator[RunningControl]:
    with open_store(store_url) as store, running_control(store) as running:
        yield running


@pytest.fixture
def keeper(
    control: RunningControl, store_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    directory = tmp_path / "drives"
    argv = [sys.executable, "-m", "cloudseed", "configdrive", "keep"]
    argv += ["--store-url", store_url, "--directory", str(directory)]
    env = _keep_env(tmp_path, CLOUDSEED_CONFIGDRIVE_SEED_KEY=SEED_KEY)
    process = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        yield process, directory
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def _ok(reply: Any, status: int = 200) -> Any:
    assert reply.status == status, (reply.status, reply.body[:500])
    return reply.json() if reply.body else None


def _wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_SECONDS} s: {what}")
        time.sleep(0.1)


def _meta_data(image: Path, out: Path) -> dict[str, Any]:
    files = read_tree(extract_iso(image, out))
    meta: dict[str, Any] = json.loads(files["openstack/latest/meta_data.json"])
    return meta


def test_keeper_rebuilds_the_image_after_a_metadata_change(
    control: RunningControl, keeper: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    require_tools("xorriso")
    process, directory = keeper
    _ok(control.call("POST", "/v1/networks", {"name": "net1", "subnets": [
        {"cidr": "10.0.0.0/24"}]}), 201)  # fmt: skip
    body = {
        "name": "web1",
        "user_data": base64.b64encode(b"#cloud-config\n").decode(),
        "metadata": {"role": "web"},
        "config_drive": True,
        "networks": [{"network": "net1"}],
    }
    server = _ok(control.call("POST", "/v1/servers", body), 201)
    _ok(control.call("POST", "/v1/servers", {"name": "plain"}), 201)  # no drive wanted
    image = directory / f"{server['id']}.iso"
    _wait_for("the first image", image.exists)
    assert sorted(p.name for p in directory.iterdir()) == [image.name]
    first = image.read_bytes()
    assert _meta_data(image, tmp_path / "x1")["meta"] == {"role": "web"}

    _ok(control.call("PUT", "/v1/servers/web1/metadata/role", {"meta": {"role": "db"}}))
    _wait_for("the rebuilt image", lambda: image.read_bytes() != first)
    assert _meta_data(image, tmp_path / "x2")["meta"] == {"role": "db"}

    _ok(control.call("PATCH", "/v1/servers/web1", {"config_drive": False}))
    _wait_for("the image to go", lambda: not image.exists())
    assert process.poll() is None

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_keeper_without_a_seed_key_exits_naming_the_setting(tmp_path: Path, store_url: str) -> None:
    with open_store(store_url):
        pass  # migrated, so only the key is missing
    argv = [sys.executable, "-m", "cloudseed", "configdrive", "keep", "--store-url", store_url]
    result = subprocess.run(
        argv, env=_keep_env(tmp_path), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "configdrive.seed_key" in result.stderr
    assert result.stderr.count("\n") == 1
