"""The one place that executes privileged commands (Neutron's ``privileged``).

Every ``ip``, ``nft``, netlink read and process start of the data plane goes
through a ``Runner``, so the set of things cloudseed does as root is this
file's public methods and nothing else. Commands are argv lists, never shell
strings. A failed command raises ``CommandFailed`` with its argv and stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudseed.dataplane import netlink, nftlib
from cloudseed.dataplane.netlink import NamespaceRead
from cloudseed.errors import CloudseedError, ConfigError
from cloudseed.proxy.listen import NETNS_DIR
from cloudseed.secret_files import without_secrets

# A single ip/nft call that takes longer than this is stuck (a wedged netlink
# socket), not slow; fail loudly instead of hanging `sync`.
COMMAND_TIMEOUT_SECONDS = 30.0
# ``ip -batch`` splits lines on blanks and reads quotes and "#": only words
# made of these characters are queued as batch lines; others run on their own.
_BATCH_SAFE = re.compile(r"[A-Za-z0-9_.:/@+%-]+")
# How ``ip -force -batch`` names a failed line on stderr.
_FAILED_LINE = re.compile(r"Command failed -:(\d+)")


class CommandFailed(CloudseedError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"`{' '.join(argv)}` failed ({returncode}): {stderr.strip()[-500:]}")
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


def missing_tools(names: Sequence[str] = ("ip", "nft", "dnsmasq")) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


# What one in-namespace step is, for the log and for errors, and its body.
Step = tuple[str, Callable[[], None]]


@dataclass
class _Pending:
    """Work queued inside ``Runner.batch``, in the order it will run."""

    namespace_lines: list[tuple[str, bool]] = field(default_factory=list)  # (line, check)
    ip_lines: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)  # by netns
    steps: dict[str, list[Step]] = field(default_factory=dict)  # by netns

    def __bool__(self) -> bool:
        return bool(self.namespace_lines or self.ip_lines or self.steps)


@dataclass
class Runner:
    """Runs privileged commands; ``log`` keeps every mutating argv (for tests and -v)."""

    log: list[tuple[str, ...]] = field(default_factory=list)
    _pending: _Pending | None = field(default=None, init=False, repr=False)

    # -- batching -------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Queue changes made in the block and make them together: a few ``ip`` starts, not one
        per change.

        Inside, ``ip``, ``add_namespace``, ``delete_namespace`` and ``in_netns``
        queue their work; anything else (a command, a read, a process start, a
        signal) and ``flush`` first make what is queued. Queued work runs as:
        namespaces added and deleted (one ``ip -batch``), then each
        namespace's ``ip`` commands (one ``ip -n NS -batch`` each), then the
        in-namespace steps (one thread entering each namespace once). Within
        each part the order is the order queued. That order is right for
        the reconciler's changes: ``ip`` commands after a namespace's creation
        (veth legs are created from the root, their inner end straight into
        the namespace), steps (link up, addresses, sysctls, nft) after the
        links they act on exist; no ``ip`` command needs a step's effect.
        """
        if self._pending is not None:
            yield
            return
        self._pending = _Pending()
        try:
            yield
        except BaseException:
            # What was queued before the failure is made, as it would have
            # been without a batch; the first failure is the one reported.
            with contextlib.suppress(CommandFailed):
                self.flush()
            raise
        else:
            self.flush()
        finally:
            self._pending = None

    def flush(self) -> None:
        """Make what the current batch has queued (nothing outside a batch)."""
        pending = self._pending
        if not pending:
            return
        self._pending = _Pending()
        if pending.namespace_lines:
            self._ip_batch("", pending.namespace_lines)
        for netns, lines in pending.ip_lines.items():
            self._ip_batch(netns, lines)
        if pending.steps:
            self._run_steps(list(pending.steps.items()))

    def in_netns(self, netns: str, description: str, body: Callable[[], None]) -> None:
        """Run ``body`` in-process inside ``netns`` ("" = ours): netlink, sysctl files, nft.

        A failure raises ``CommandFailed`` naming the step. Queued inside a batch.
        """
        self.log.append(("netns", netns, description))
        if self._pending is not None:
            self._pending.steps.setdefault(netns, []).append((description, body))
            return
        self._run_steps([(netns, [(description, body)])])

    def _run_steps(self, work: list[tuple[str, list[Step]]]) -> None:
        def guarded(netns: str, description: str, body: Callable[[], None]) -> Callable[[], None]:
            def call() -> None:
                try:
                    body()
                except (OSError, CloudseedError) as exc:
                    code = exc.errno if isinstance(exc, OSError) and exc.errno else 1
                    raise CommandFailed([f"in {netns or 'our namespace'}: {description}"],
                                        code, str(exc)) from exc
            return call

        try:
            netlink.run_in_namespaces(
                [(netns, [guarded(netns, d, b) for d, b in steps]) for netns, steps in work])
        except ConfigError as exc:  # the namespace itself is missing
            raise CommandFailed([f"enter namespace: {exc}"], 1, str(exc)) from exc

    def _ip_batch(self, netns: str, lines: list[tuple[str, bool]]) -> None:
        """``ip [-n NS] -force -batch -``; a failed line raises unless queued with check=False."""
        argv = ["ip", *(["-n", netns] if netns else []), "-force", "-batch", "-"]
        result = subprocess.run(argv, input="".join(f"{line}\n" for line, _ in lines),
                                capture_output=True, text=True, check=False,
                                timeout=COMMAND_TIMEOUT_SECONDS + len(lines))
        if result.returncode == 0:
            return
        failed = [int(n) for n in _FAILED_LINE.findall(result.stderr)]
        fatal = [n for n in failed if 0 < n <= len(lines) and lines[n - 1][1]]
        if fatal or not failed:
            line = lines[fatal[0] - 1][0] if fatal else "(batch)"
            raise CommandFailed([*argv[:-3], *line.split()], result.returncode, result.stderr)

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
        self.flush()
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

    def ip(self, *args: str, netns: str = "", check: bool = True) -> None:
        if self._pending is not None and all(_BATCH_SAFE.fullmatch(a) for a in args):
            self.log.append(("ip", *(["-n", netns] if netns else []), *args))
            self._pending.ip_lines.setdefault(netns, []).append((" ".join(args), check))
            return
        self.run(["ip", *(["-n", netns] if netns else []), *args], check=check)

    def ip_json(self, *args: str, netns: str = "") -> list[dict[str, Any]]:
        result = self.query(["ip", "-j", *(["-n", netns] if netns else []), *args])
        if result.returncode != 0 or not result.stdout.strip():
            return []
        data = json.loads(result.stdout)
        return [entry for entry in data if isinstance(entry, dict) and entry]

    def namespaces(self) -> set[str]:
        return {str(entry["name"]) for entry in self.ip_json("netns", "list")}

    def add_namespace(self, name: str) -> None:
        """Create ``name`` with its loopback up."""
        self._namespace_command("add", name, check=True)
        self.in_netns(name, "set lo up", lambda: netlink.set_link_up("lo"))

    def delete_namespace(self, name: str) -> None:
        self._namespace_command("delete", name, check=False)

    def _namespace_command(self, verb: str, name: str, *, check: bool) -> None:
        if self._pending is not None and _BATCH_SAFE.fullmatch(name):
            self.log.append(("ip", "netns", verb, name))
            self._pending.namespace_lines.append((f"netns {verb} {name}", check))
            return
        self.run(["ip", "netns", verb, name], check=check)

    def read_namespaces(
        self, namespaces: Sequence[str], table: tuple[str, str] = ("", ""),
        tables_in: Collection[str] = (),
    ) -> dict[str, NamespaceRead]:
        """Links and addresses of each namespace, and nft ``table`` in ``tables_in``.

        Over netlink and libnftables from one thread, no subprocess: the
        reconciler reads every namespace it manages on every sync. Namespaces
        that do not exist are left out.
        """
        self.flush()
        return netlink.read_namespaces(namespaces, table, tables_in)

    def namespace_pids(self, name: str) -> list[int]:
        """Processes in namespace ``name``, found as ``ip netns pids`` does, without starting it."""
        try:
            target = os.stat(os.path.join(NETNS_DIR, name))
        except OSError:
            return []
        pids: list[int] = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                here = os.stat(f"/proc/{entry.name}/ns/net")
            except OSError:
                continue  # exited meanwhile
            if os.path.samestat(here, target):
                pids.append(int(entry.name))
        return pids

    # -- nftables -------------------------------------------------------------

    def nft(self, script: str, *, netns: str) -> None:
        """``nft -f -`` in-process (libnftables) inside ``netns``; queued inside a batch."""
        def apply() -> None:
            nftlib.load().run(script)

        self.in_netns(netns, "nft -f -", apply)

    def nft_text(self, *args: str, netns: str) -> str | None:
        result = self.query(["nft", *args], netns=netns)
        return result.stdout if result.returncode == 0 else None

    # -- processes ------------------------------------------------------------

    def spawn(
        self, argv: Sequence[str], *, netns: str = "", log_path: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own session (it outlives the caller)."""
        self.flush()
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
        self.flush()
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False
        return True

    def kill_namespace_processes(self, name: str) -> None:
        """SIGKILL what runs in ``name`` (it is about to go): queued work need not come first."""
        for pid in self.namespace_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def in_netns(netns: str) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []
