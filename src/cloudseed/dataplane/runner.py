"""The one place that executes privileged commands (Neutron's ``privileged``).

Every ``ip``, ``nft``, netlink read and process start of the data plane goes
through a ``Runner``, so the set of things cloudseed does as root is this
file's public methods and nothing else. Commands are argv lists, never shell
strings. A failed command raises ``CommandFailed`` with its argv and stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudseed.dataplane import netlink
from cloudseed.dataplane.netlink import NamespaceRead
from cloudseed.errors import CloudseedError
from cloudseed.secret_files import without_secrets

# A single ip/nft call that takes longer than this is stuck (a wedged netlink
# socket), not slow; fail loudly instead of hanging `sync`.
COMMAND_TIMEOUT_SECONDS = 30.0


class CommandFailed(CloudseedError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"`{' '.join(argv)}` failed ({returncode}): {stderr.strip()[-500:]}")
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


def missing_tools(names: Sequence[str] = ("ip", "nft", "dnsmasq")) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


@dataclass
class Runner:
    """Runs privileged commands; ``log`` keeps every mutating argv (for tests and -v)."""

    log: list[tuple[str, ...]] = field(default_factory=list)

    # -- plain commands -------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        netns: str = "",
        stdin: str | None = None,
        check: bool = True,
        record: bool = True,
        timeout: float = COMMAND_TIMEOUT_SECONDS,
    ) -> subprocess.CompletedProcess[str]:
        full = [*in_netns(netns), *argv]
        if record:
            self.log.append(tuple(full))
        result = subprocess.run(
            full, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandFailed(full, result.returncode, result.stderr)
        return result

    def query(self, argv: Sequence[str], *, netns: str = "") -> subprocess.CompletedProcess[str]:
        """A read-only command: not logged, never raises on a non-zero exit."""
        return self.run(argv, netns=netns, check=False, record=False)

    # -- iproute2 -------------------------------------------------------------

    def ip(self, *args: str, netns: str = "") -> None:
        self.run(["ip", *(["-n", netns] if netns else []), *args])

    def ip_json(self, *args: str, netns: str = "") -> list[dict[str, Any]]:
        result = self.query(["ip", "-j", *(["-n", netns] if netns else []), *args])
        if result.returncode != 0 or not result.stdout.strip():
            return []
        data = json.loads(result.stdout)
        return [entry for entry in data if isinstance(entry, dict) and entry]

    def namespaces(self) -> set[str]:
        return {str(entry["name"]) for entry in self.ip_json("netns", "list")}

    def add_namespace(self, name: str) -> None:
        self.run(["ip", "netns", "add", name])
        self.ip("link", "set", "lo", "up", netns=name)

    def delete_namespace(self, name: str) -> None:
        self.run(["ip", "netns", "delete", name], check=False)

    def read_namespaces(
        self, namespaces: Sequence[str], table: tuple[str, str] = ("", ""),
        tables_in: Collection[str] = (),
    ) -> dict[str, NamespaceRead]:
        """Links and addresses of each namespace, and nft ``table`` in ``tables_in``.

        Over netlink and libnftables from one thread, no subprocess: the
        reconciler reads every namespace it manages on every sync. Namespaces
        that do not exist are left out.
        """
        return netlink.read_namespaces(namespaces, table, tables_in)

    def namespace_pids(self, name: str) -> list[int]:
        result = self.query(["ip", "netns", "pids", name])
        return [int(pid) for pid in result.stdout.split() if pid.isdigit()]

    # -- nftables -------------------------------------------------------------

    def nft(self, script: str, *, netns: str) -> None:
        self.run(["nft", "-f", "-"], netns=netns, stdin=script)

    def nft_text(self, *args: str, netns: str) -> str | None:
        result = self.query(["nft", *args], netns=netns)
        return result.stdout if result.returncode == 0 else None

    # -- processes ------------------------------------------------------------

    def spawn(
        self, argv: Sequence[str], *, netns: str = "", log_path: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own session (it outlives the caller)."""
        full = [*in_netns(netns), *argv]
        self.log.append(tuple(full))
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            return subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env=without_secrets(os.environ),
            )
        finally:
            if log_path and not isinstance(out, int):
                out.close()

    def signal(self, pid: int, signum: int) -> bool:
        """Send ``signum``; False when the process is gone."""
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False
        return True

    def kill_namespace_processes(self, name: str) -> None:
        for pid in self.namespace_pids(name):
            self.signal(pid, signal.SIGKILL)


def in_netns(netns: str) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []
