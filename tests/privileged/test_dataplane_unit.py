"""The data plane works inside the capability bound its systemd unit gives it.

``systemd-analyze verify`` cannot say whether a bounding set is enough;
running ``dataplane sync`` under it can. ``setpriv`` applies the unit's
``CapabilityBoundingSet`` and ``NoNewPrivileges`` to a root process as systemd
would, and every process sync starts (supervisors, dnsmasq, proxies) inherits
them. A guest must then get its lease and its metadata, with the SQLite store
owned by another user (0700 directory, 0600 files), as the cloudseed user owns
it on a single host. Each capability in the set was found necessary by running
without it (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_NET_BIND_SERVICE, CAP_NET_RAW,
CAP_SETGID: no lease or no sync; CAP_DAC_OVERRIDE: the store cannot be opened);
the test below keeps CAP_SYS_ADMIN's case to show the bound is really applied.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import pytest
from tests.support.processes import wait_until
from tests.support.units import dataplane_capabilities

from .conftest import Lab
from .test_dataplane import META, build_two_networks, fetch_json

pytestmark = pytest.mark.privileged


def _sync_within(lab: Lab, caps: list[str]) -> subprocess.CompletedProcess[str]:
    """``dataplane sync`` as root bounded to ``caps``, with no new privileges (as systemd runs it)."""
    bound = "-all," + ",".join("+" + cap.removeprefix("CAP_").lower() for cap in caps)
    return subprocess.run(
        ["setpriv", "--bounding-set", bound, "--no-new-privs",
         sys.executable, "-m", "cloudseed.cli.main", "dataplane", "sync"],
        env={**os.environ, **lab.env()}, capture_output=True, text=True, timeout=120,
        check=False)


def test_dataplane_sync_serves_guests_within_the_units_capabilities(lab: Lab) -> None:
    caps = dataplane_capabilities()
    assert "CAP_SYS_ADMIN" in caps
    ids = build_two_networks(lab)
    nobody = pwd.getpwnam("nobody")
    os.chown(lab.tmp, nobody.pw_uid, nobody.pw_gid)
    lab.tmp.chmod(0o700)
    for path in lab.tmp.glob("store.db*"):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
        path.chmod(0o600)
    result = _sync_within(lab, caps)
    assert result.returncode == 0, result.stderr
    assert {path.stat().st_uid for path in lab.tmp.glob("store.db*")} == {nobody.pw_uid}
    lab.plug(ids["vm_routed"], "routed")
    lab.plug(ids["vm_isolated"], "isolated")
    assert lab.dhcp(lab.guest_name("routed"))["addresses"] == ["10.20.0.5/24"]
    assert lab.dhcp(lab.guest_name("isolated"))["addresses"] == ["10.10.0.5/24"]
    assert wait_until(lambda: lab.fetch(lab.guest_name("routed"), META)[0] == 200, 10.0)
    assert fetch_json(lab, lab.guest_name("routed"))["router_id"] == ids["router"]
    assert fetch_json(lab, lab.guest_name("isolated"))["network_id"] == ids["isolated_net"]


def test_without_cap_sys_admin_sync_fails_so_the_bound_is_really_applied(lab: Lab) -> None:
    build_two_networks(lab)
    caps = [cap for cap in dataplane_capabilities() if cap != "CAP_SYS_ADMIN"]
    assert _sync_within(lab, caps).returncode != 0
