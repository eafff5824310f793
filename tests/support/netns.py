"""Sweeping the namespaces a privileged test made, whatever state it left them in."""

from __future__ import annotations

import shutil

from cloudseed.dataplane.runner import Runner


def sweep_namespaces(prefix: str) -> None:
    """Kill the processes in, and delete, namespace ``prefix`` and every ``prefix-*``."""
    runner = Runner()
    for name in runner.namespaces():
        if name == prefix or name.startswith(f"{prefix}-"):
            runner.kill_namespace_processes(name)
            runner.delete_namespace(name)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
