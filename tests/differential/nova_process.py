"""Start Nova's real metadata app (``nova_side.py``) in its own venv."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.openstack_venv import NOVA, openstack_python

SIDE = Path(__file__).with_name("nova_side.py")
START_TIMEOUT_SECONDS = 120


def _write_specs(specs: list[dict[str, Any]], directory: Path) -> Path:
    path = directory / "nova-specs.json"
    path.write_text(json.dumps(specs))
    return path


@contextmanager
def running_nova(specs: list[dict[str, Any]], directory: Path) -> Iterator[int]:
    """Nova's ``MetadataRequestHandler`` on a loopback port, serving ``specs``."""
    python = openstack_python(NOVA)
    log = (directory / "nova.log").open("wb")
    process = subprocess.Popen(
        [str(python), "-W", "ignore", str(SIDE), "serve", str(_write_specs(specs, directory))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            process.kill()
            process.wait()
            raise AssertionError(
                "Nova's metadata app did not start:\n" + (directory / "nova.log").read_text()
            )
        yield int(line)
    finally:
        stop_child(process)
        log.close()


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """Close the child's stdin (its signal to stop), then wait, then kill."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def nova_config_drive(spec: dict[str, Any], directory: Path) -> dict[str, bytes]:
    """The files Nova's own ``ConfigDriveBuilder`` writes for ``spec``, by path."""
    python = openstack_python(NOVA)
    out = directory / "nova-drive"
    out.mkdir()
    subprocess.run(
        [
            str(python), "-W", "ignore", str(SIDE), "configdrive",
            str(_write_specs([spec], directory)), str(out),
        ],
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_SECONDS,
    )  # fmt: skip
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }
