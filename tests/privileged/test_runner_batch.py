"""``Runner.batch``: queued kernel changes are made in dependency order, and failures still fail.

``sync`` applies its changes inside a batch (a few ``ip -batch`` starts and
one thread of in-namespace steps instead of a process per change). These
tests make real namespaces, links, addresses and nft tables through a batch
and check what the kernel holds, that a failed change raises naming itself,
that a change allowed to fail does not, and that a table is created without
the replace prelude yet refuses to duplicate one that appeared meanwhile;
and that ``teardown`` (batched too) leaves a parent namespace it did not
create, and links that are not its own, where they were.
"""

from __future__ import annotations

import re
import signal
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from tests.support.netns import sweep_namespaces
from tests.support.processes import wait_until

from cloudseed.dataplane import firewall, netns
from cloudseed.dataplane.desired import OUTER_LINK_PREFIXES, Bridge, Leg
from cloudseed.dataplane.runner import CommandFailed, Runner

from .conftest import Lab
from .test_dataplane import build_two_networks

pytestmark = pytest.mark.privileged

SCRIPT = firewall.render_router_table("qr-*", 9697, True)


@pytest.fixture
def prefix(privileged: None) -> Iterator[str]:
    name = f"csb{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        sweep_namespaces(name)


def _leg(prefix: str, namespace: str) -> Leg:
    return Leg(namespace, "qr-t0", f"{prefix}o", f"{prefix}b", "fa:16:3f:00:00:07",
               ("10.7.0.1/24", "fe80::a9fe:a9fe/64"), 1400)


def test_a_batch_builds_namespace_bridge_leg_and_table_in_order(prefix: str) -> None:
    runner = Runner()
    root, inner = prefix, f"{prefix}-qrouter-x"
    leg = _leg(prefix, inner)
    records: list[str] = []
    with runner.batch():
        netns.ensure_namespace(runner, root)
        netns.ensure_namespace(runner, inner)
        netns.add_bridge(runner, root, Bridge(leg.bridge, "net", 1400))
        netns.add_leg(runner, root, leg)
        firewall.apply_table(runner, inner, SCRIPT, records.append, absent=True)
        assert not records  # queued, not made yet
        assert inner in runner.namespaces()  # a read makes what is queued first
        assert records
    reads = runner.read_namespaces([root, inner], firewall.TABLE, {inner})
    bridge = reads[root].links[leg.bridge]
    assert (bridge.kind, bridge.is_up, bridge.addresses) == ("bridge", True, frozenset())
    outer = reads[root].links[leg.outer]
    assert (outer.master, outer.is_up, outer.mtu) == (leg.bridge, True, 1400)
    link = reads[inner].links[leg.inner]
    assert (link.mac, link.is_up, link.mtu) == (leg.mac, True, 1400)
    assert link.addresses == set(leg.addresses)
    assert reads[inner].links["lo"].is_up
    assert records == [firewall.normalize_listing(reads[inner].table or "")]
    accept_ra = runner.query(["sysctl", "-n", f"net.ipv6.conf.{leg.inner}.accept_ra"],
                             netns=inner)
    assert accept_ra.stdout.strip() == "0"


def test_created_table_lists_as_the_replaced_one_and_refuses_a_second_create(
        prefix: str) -> None:
    runner = Runner()
    created, replaced = f"{prefix}-c", f"{prefix}-r"
    for name in (created, replaced):
        netns.ensure_namespace(runner, name)
    got: list[str] = []
    firewall.apply_table(runner, created, SCRIPT, got.append, absent=True)
    firewall.apply_table(runner, replaced, SCRIPT, got.append)
    assert got[0] == got[1]
    assert "metadata-redirect" in got[0]
    with pytest.raises(CommandFailed, match="File exists"):
        firewall.apply_table(runner, created, SCRIPT, got.append, absent=True)
    firewall.apply_table(runner, created, SCRIPT, got.append)  # replacing always works
    assert got[2] == got[0]


def test_a_failed_change_raises_naming_it_and_an_allowed_failure_does_not(prefix: str) -> None:
    runner = Runner()
    netns.ensure_namespace(runner, prefix)
    with runner.batch():
        netns.delete_link(runner, prefix, "nosuchlink")  # allowed to fail
        runner.ip("link", "add", f"{prefix}b", "type", "bridge", netns=prefix)
    assert f"{prefix}b" in netns.observe_links(runner, prefix)

    with pytest.raises(CommandFailed, match="link set nosuchlink up"), runner.batch():
        runner.ip("link", "set", "nosuchlink", "up", netns=prefix)
    with pytest.raises(CommandFailed, match=re.escape("ip addr add 10.9.0.1/24 dev nosuchlink")), \
            runner.batch():
        netns.add_address(runner, prefix, "nosuchlink", "10.9.0.1/24")
    with pytest.raises(CommandFailed, match="enter namespace"), runner.batch():
        netns.set_link_up(runner, f"{prefix}-gone", "lo")


def test_what_was_queued_before_a_failure_is_still_made(prefix: str) -> None:
    runner = Runner()
    netns.ensure_namespace(runner, prefix)

    def fail_after_queueing() -> None:
        with runner.batch():
            runner.ip("link", "add", f"{prefix}b", "type", "bridge", netns=prefix)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_after_queueing()
    assert f"{prefix}b" in netns.observe_links(runner, prefix)


def test_namespace_pids_finds_what_ip_netns_pids_finds(prefix: str) -> None:
    runner = Runner()
    netns.ensure_namespace(runner, prefix)
    sleeper = subprocess.Popen(["ip", "netns", "exec", prefix, "sleep", "60"])
    try:
        assert wait_until(lambda: sleeper.pid in runner.namespace_pids(prefix), 5.0)
        listed = runner.query(["ip", "netns", "pids", prefix]).stdout.split()
        assert sorted(runner.namespace_pids(prefix)) == sorted(int(p) for p in listed)
        assert runner.namespace_pids(f"{prefix}-gone") == []
        runner.kill_namespace_processes(prefix)
        assert sleeper.wait(5) == -signal.SIGKILL
    finally:
        sleeper.kill()
        sleeper.wait()


def test_teardown_in_a_parent_namespace_it_did_not_create_keeps_it_and_foreign_links(
        lab: Lab) -> None:
    runner = Runner()
    netns.ensure_namespace(runner, lab.root)  # made by someone else: no marker
    runner.ip("link", "add", "foreign0", "type", "bridge", netns=lab.root)
    build_two_networks(lab)
    lab.host().sync()
    assert any(n.startswith(OUTER_LINK_PREFIXES) for n in netns.observe_links(runner, lab.root))
    lab.host().teardown()
    assert lab.root in runner.namespaces()
    left = netns.observe_links(runner, lab.root)
    assert "foreign0" in left
    assert not [n for n in left if n.startswith(OUTER_LINK_PREFIXES)]
    assert not [n for n in runner.namespaces() if n.startswith(f"{lab.root}-")]
