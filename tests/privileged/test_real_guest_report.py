"""Guests in real namespaces write back: guest attributes and phone-home, operator waits.

guest namespace → REDIRECT → ``cloudseed proxy`` (built-in or haproxy) →
``cloudseed agent`` → ``cloudseed api``, all real processes; the operator's
``cloudseed server wait --booted`` is a real process too, long-polling a
control API on the same store.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from tests.support.control import running_control, seconds_from_post_to_booted
from tests.support.guest import run_guest_python
from tests.support.real_chain import Chain, boot, own_metadata

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

# Run inside a guest namespace: each (method, path, body) in argv[1] (JSON), answers out.
ASK = """
import json, sys, urllib.error, urllib.request
answers = []
for method, path, body in json.loads(sys.argv[1]):
    data = None if body is None else body.encode()
    request = urllib.request.Request("http://169.254.169.254" + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            answers.append([reply.status, reply.read().decode()])
    except urllib.error.HTTPError as error:
        answers.append([error.code, error.read().decode()])
print(json.dumps(answers))
"""
KEY_PATH = "/openstack/latest/guest_attributes/hostkeys/ssh-ed25519"
EC2_KEY_PATH = "/latest/guest-attributes/hostkeys/ssh-ed25519"


def _ask(guest: str, *requests: tuple[str, str, str | None]) -> list[list[object]]:
    answers: list[list[object]] = run_guest_python(ASK, json.dumps(requests), netns=guest)
    return answers


@pytest.mark.parametrize("proxy", ["builtin", "haproxy"])
def test_guests_on_overlapping_ips_each_write_and_read_only_their_own(
    chain: Chain, proxy: str
) -> None:
    lab = chain.lab
    lab.overrides["dataplane.proxy_implementation"] = proxy
    net_a = lab.network("a", "10.31.0.0/24", "10.31.0.1", router=lab.router("ra"))
    net_b = lab.network("b", "10.31.0.0/24", "10.31.0.1", router=lab.router("rb"))
    vm_a = lab.server("vm-a", net_a, "10.31.0.7", "fa:16:3e:31:00:0a")
    vm_b = lab.server("vm-b", net_b, "10.31.0.7", "fa:16:3e:31:00:0b")
    lab.cli("dataplane", "sync")
    guest_a, guest_b = boot(lab, vm_a, "a"), boot(lab, vm_b, "b")
    own_metadata(lab, guest_a)
    own_metadata(lab, guest_b)
    assert _ask(guest_a, ("PUT", KEY_PATH, "ssh-ed25519 AAAA-a"), ("GET", EC2_KEY_PATH, None),
                ("GET", "/latest/guest-attributes/", None)) == [
        [200, ""], [200, "ssh-ed25519 AAAA-a"], [200, "hostkeys/"]]
    # Same address behind the other router: nothing of a's, and its own write is its own.
    assert _ask(guest_b, ("GET", KEY_PATH, None), ("DELETE", EC2_KEY_PATH, None),
                ("PUT", KEY_PATH, "ssh-ed25519 AAAA-b"))[0][0] == 404
    held = {vm: [(a.namespace, a.key, a.value) for a in lab.store.list_guest_attributes(vm)]
            for vm in (vm_a, vm_b)}
    assert held == {vm_a: [("hostkeys", "ssh-ed25519", "ssh-ed25519 AAAA-a")],
                    vm_b: [("hostkeys", "ssh-ed25519", "ssh-ed25519 AAAA-b")]}


def test_server_wait_booted_returns_within_a_second_of_the_guests_post(chain: Chain) -> None:
    lab = chain.lab
    net = lab.network("w", "10.32.0.0/24", "10.32.0.1", router=lab.router("rw"))
    vm = lab.server("vm-w", net, "10.32.0.9", "fa:16:3e:32:00:09")
    lab.cli("dataplane", "sync")
    guest = boot(lab, vm, "w")
    own_metadata(lab, guest)
    form = urlencode({"instance_id": vm, "hostname": "vm-w"})

    def post() -> None:
        assert _ask(guest, ("POST", f"/openstack/latest/phone_home/{vm}", form)) == [[200, ""]]

    with running_control(lab.store) as control:
        assert seconds_from_post_to_booted(control, vm, post) < 1.0
    report = lab.store.get_phone_home(vm)
    assert report is not None
    assert report.hostname == "vm-w"
