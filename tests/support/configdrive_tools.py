"""The independent tools that check our images: xorriso, isoinfo, fsck.fat, mtools.

Tests skip (not fail) when a tool is not installed, and name the package.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

_PACKAGES = {
    "xorriso": "xorriso",
    "isoinfo": "genisoimage",
    "fsck.fat": "dosfstools",
    "mdir": "mtools",
    "mcopy": "mtools",
    "mlabel": "mtools",
}


def require_tools(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            pytest.skip(f"{name} is not installed (apt-get install {_PACKAGES.get(name, name)})")


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(
            f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def write_image(directory: Path, name: str, image: bytes) -> Path:
    path = directory / name
    path.write_bytes(image)
    return path


def extract_iso(image: Path, dest: Path) -> Path:
    """Everything in the ISO, by its Rock Ridge names, without mounting."""
    require_tools("xorriso")
    run("xorriso", "-osirrox", "on", "-indev", str(image), "-extract", "/", str(dest))
    _make_writable(dest)  # xorriso restores r-x modes; let tmp_path clean-up delete it
    return dest


def extract_vfat(image: Path, dest: Path) -> Path:
    """Everything in the FAT image, by its long names, without mounting."""
    require_tools("mcopy")
    dest.mkdir(parents=True, exist_ok=True)
    run("mcopy", "-s", "-n", "-i", str(image), "::/", str(dest) + "/")
    return dest


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
