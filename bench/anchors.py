"""The real Nova 34 and Neutron 29 beside cloudseed in the same run.

Installed from PyPI into their own cached venvs by the installer the
differential tests use (``tests/support/openstack_venv.py``) and started by
the same runners (``tests/differential/nova_process.py``,
``neutron_process.py``), which answer Nova's database and Neutron's RPC from
memory the way their own functional tests do. Nothing of them is copied here:
this module only says what the benchmark runs.

- ``nova``: Nova's ``MetadataRequestHandler`` under uwsgi with the same number
  of workers as ``cloudseed api``, its default 15 s metadata cache, the whole
  fleet as instances (each built on its first read, which stands in for
  Nova's database query at a fraction of its cost: Nova's figures are a
  ceiling, so the ratios are floors).
- ``neutron_agent``: Neutron's metadata agent (2 threads, as
  ``metadata_workers`` on a 2-core host) in front of the static upstream the
  cloudseed agent row uses; its port query answered from an index.
- ``neutron_chain``: haproxy with the config Neutron's metadata driver
  generates → Neutron's agent → Nova under uwsgi.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import fleet
from bench.services import Service

# Nova's default ``[api] metadata_cache_expiration``.
NOVA_METADATA_CACHE_SECONDS = 15

Opener = Callable[[], AbstractContextManager[subprocess.Popen[bytes]]]


@dataclass
class HeldService(Service):
    """A service started by one of the differential tests' context managers,
    which also wait until it is ready."""

    opener: Opener | None = None
    _held: ExitStack | None = None

    def start(self) -> None:
        from tests.support.openstack_venv import OpenStackInstallError

        assert self.opener is not None
        self.started_at = time.monotonic()
        held = ExitStack()
        try:
            self.process = held.enter_context(self.opener())
        except (AssertionError, OSError, subprocess.SubprocessError, OpenStackInstallError) as exc:
            held.close()
            raise RuntimeError(f"{self.name} did not start: {exc}") from None
        self._held = held
        # The runner waited for its own sign of readiness (Neutron's agent
        # drops a probe without X-Forwarded-For without answering it).
        self.ready_after_s = time.monotonic() - self.started_at

    def stop(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(OSError, ProcessLookupError):
                held.close()


def nova_specs(count: int, secret: str) -> list[dict[str, Any]]:
    from tests.differential.spec import nova_spec

    specs = [nova_spec(fleet.sample_view(i), secret) for i in range(count)]
    for spec in specs:
        spec["static_vendordata"] = fleet.VENDOR_DATA
        spec["metadata_cache_seconds"] = NOVA_METADATA_CACHE_SECONDS
    return specs


def nova(run_dir: Path, count: int, secret: str, port: int, workers: int) -> HeldService:
    from tests.differential.nova_process import running_nova_uwsgi

    directory = run_dir / "nova"
    directory.mkdir(exist_ok=True)
    specs = nova_specs(count, secret)
    return HeldService("nova", [], f"tcp:127.0.0.1:{port}", run_dir,
                       opener=lambda: running_nova_uwsgi(specs, directory, port, workers))


def neutron_agent(run_dir: Path, name: str, count: int, secret: str, upstream_port: int
                  ) -> HeldService:
    """Neutron's agent on ``<run>/<name>.sock``, forwarding to 127.0.0.1:upstream_port."""
    from tests.differential.neutron_process import neutron_ports, running_neutron_agent

    directory = run_dir / name
    directory.mkdir(exist_ok=True)
    sock = run_dir / f"{name}.sock"
    spec = {"socket": str(sock), "nova_port": upstream_port, "secret": secret,
            "ports": neutron_ports(fleet.sample_view(i) for i in range(count))}
    return HeldService(name, [], f"unix:{sock}", run_dir,
                       opener=lambda: running_neutron_agent(spec, directory))


def neutron_haproxy(run_dir: Path, name: str, secret: str, port: int, agent_socket: str
                    ) -> HeldService:
    """haproxy with the config Neutron's metadata driver writes, to ``agent_socket``."""
    from tests.differential.neutron_process import neutron_haproxy_config, running_haproxy

    directory = run_dir / name
    directory.mkdir(exist_ok=True)
    spec = {"socket": agent_socket, "secret": secret, "network_id": fleet.NETWORK_ID,
            "port": port, "state_path": str(directory)}

    def opener() -> AbstractContextManager[subprocess.Popen[bytes]]:
        return running_haproxy(neutron_haproxy_config(spec, directory), port, directory)

    return HeldService(name, [], f"tcp:127.0.0.1:{port}", run_dir, opener=opener)
