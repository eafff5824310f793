"""A private PostgreSQL cluster a test may stop and start (never the shared one on 55432).

Tests that take the database away build their own cluster in their tmp dir
on a free port, with the same binaries ``scripts/start-test-postgres`` uses;
as root the cluster belongs to ``postgres``, which PostgreSQL insists on.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.ports import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                   key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()])
    return Path(found[-1]) if found else None


class PrivatePostgres:
    def __init__(self, bin_dir: Path) -> None:
        # Not under pytest's tmp_path: as root that is 0700 root's, and the
        # server runs as postgres. Removed by ``private_postgres``.
        self.dir = Path(tempfile.mkdtemp(prefix="cloudseed-test-pg-"))
        self.bin = bin_dir
        self.port = free_port()
        self.url = f"postgresql://cloudseed@127.0.0.1:{self.port}/postgres"
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir), "-U", "cloudseed", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.dir} -c fsync=off")
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(self.dir / "server.log"),
                  "-w", "-t", "60", "-o", options, "start")

    def stop(self) -> None:
        """Stop at once: sessions are cut, as in a crash or a restart for an upgrade."""
        self._run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.dir / "postmaster.pid").exists()


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster, stopped and removed afterwards; skips without PostgreSQL."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed; run: apt-get install -y postgresql")
    pg = PrivatePostgres(bin_dir)
    try:
        pg.start()
        yield pg
    finally:
        if pg.running():
            pg.stop()
        shutil.rmtree(pg.dir, ignore_errors=True)
