"""The sdist and the wheel work without the repository.

The sdist is built from a copy of the tree, the wheel from the sdist (as
``python -m build`` does, so a file missing from the sdist fails here), and the
wheel is installed into a fresh venv outside the repository. Its dependencies
come from the test venv's site-packages through a ``.pth`` line: they are not
what is being tested, and fetching them again would cost minutes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
from pathlib import Path

import pytest

from cloudseed import __version__
from cloudseed.store.migrate import head_revision

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/ holding cloudseed-<version>.tar.gz and the wheel built from it."""
    root = tmp_path_factory.mktemp("packaging")
    tree = root / "tree"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    out = root / "dist"
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(tree)],
                   check=True, capture_output=True, timeout=600)
    return out


def _one(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def test_sdist_carries_the_files_read_at_run_time(dist: Path) -> None:
    sdist = _one(dist, f"cloudseed-{__version__}.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    migrations = sorted(p.relative_to(REPO).as_posix()
                        for p in (REPO / "src/cloudseed/store/migrations").rglob("*.py"))
    assert migrations
    assert set(migrations) <= names
    assert {"README.md", "pyproject.toml", "src/cloudseed/py.typed"} <= names
    shipped_units = {p.relative_to(REPO).as_posix()
                     for p in (REPO / "src/cloudseed/systemd").iterdir() if p.suffix != ".py"}
    assert shipped_units
    assert shipped_units <= names


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed (dependencies borrowed, see above)."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(path / "bin" / "python"),
                    "install", "-q", "--no-deps", "--no-index",
                    str(_one(dist, f"cloudseed-{__version__}-py3-none-any.whl"))],
                   check=True, capture_output=True, timeout=300)
    purelib = subprocess.run(
        [str(path / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return path


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDSEED_", "PYTHON"))}
    env["HOME"] = str(cwd)
    return subprocess.run([str(venv / "bin" / "cloudseed"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_installed_wheel_runs_outside_the_repository(venv: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import cloudseed; print(cloudseed.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where  # the wheel's copy, not the repository's

    version = _run(venv, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"cloudseed {__version__}"

    example = _run(venv, "config", "example", cwd=tmp_path)
    assert example.returncode == 0, example.stderr
    assert "proxy_implementation" in tomllib.loads(example.stdout)["dataplane"]
    (tmp_path / "cloudseed.toml").write_text(example.stdout)
    checked = _run(venv, "config", "check", str(tmp_path / "cloudseed.toml"), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr

    database = tmp_path / "store.db"
    upgraded = _run(venv, "db", "upgrade", "--store-url", f"sqlite:///{database}", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    with sqlite3.connect(database) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == head_revision()

    installed = _run(venv, "install-units", "--root", str(tmp_path / "root"), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    unit_dir = tmp_path / "root/etc/systemd/system"
    assert f"ExecStart={venv}/bin/cloudseed --config /etc/cloudseed.toml serve" in (
        (unit_dir / "cloudseed.service").read_text())
    units = sorted(unit_dir.iterdir())
    assert len(units) == 7  # five services, two sockets
    verified = subprocess.run(["systemd-analyze", "verify", *map(str, units)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
    assert (verified.returncode, verified.stderr) == (0, "")
