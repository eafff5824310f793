"""Sweeping the namespaces a privileged test made, whatever state it left them in;
reading what the data plane put in them."""

from __future__ import annotations

import json
import shutil
import subprocess

from cloudseed.dataplane import firewall
from cloudseed.dataplane.runner import Runner


def sweep_namespaces(prefix: str) -> None:
    """Kill the processes in, and delete, namespace ``prefix`` and every ``prefix-*``."""
    runner = Runner()
    for name in runner.namespaces():
        if name == prefix or name.startswith(f"{prefix}-"):
            runner.kill_namespace_processes(name)
            runner.delete_namespace(name)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


def rule_handle(netns: str, comment: str) -> int:
    """The nftables handle of cloudseed's rule with ``comment`` in namespace ``netns``."""
    out = subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "-a", "list", "table",
                          "inet", firewall.TABLE_NAME], capture_output=True, text=True,
                         check=True).stdout
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule and rule.get("comment") == comment:
            return int(rule["handle"])
    raise AssertionError(f"no rule {comment}")
