"""The operator's side of what guests report: guest attributes and ``server wait --booted``.

A real metadata API and a real control API on loopback sockets over one real
store; ``cloudseed`` runs as its own process, as an operator runs it. The
guest writes through the metadata API (direct mode: its address identifies
it); the operator reads and clears through the control API and the CLI.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import urlencode

import pytest
from tests.support.api import RunningApi, api_settings, running_api, store_view
from tests.support.cli import run_cloudseed
from tests.support.control import RunningControl, running_control, seconds_from_post_to_booted
from tests.support.processes import wait_until
from tests.support.samples import RICH

from cloudseed.store import SqlStore

ATTRS = "/openstack/latest/guest_attributes"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVgdBx3ckJ9xKvvvEnUZvI2R2fDcZyw4zTVNSnY+A1Q"
PHONE_HOME = "/openstack/latest/phone_home"
SERVER = RICH.server.name


def _env(control: RunningControl) -> dict[str, str]:
    return {"CLOUDSEED_URL": control.url, "CLOUDSEED_TOKEN": control.token,
            "CLOUDSEED_CONFIG": "/dev/null"}


def _phone_home(api: RunningApi) -> None:
    body = urlencode({"instance_id": RICH.server.id, "pub_key_ed25519": KEY}).encode()
    assert api.request(PHONE_HOME, method="POST", body=body).status == 200


def test_operator_reads_and_clears_guest_attributes(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_api(store, api_settings(mode="direct")) as api, running_control(store) as control:
        for path, value in ((f"{ATTRS}/hostkeys/ssh-ed25519", KEY),
                            (f"{ATTRS}/hostkeys/ssh-rsa", "ssh-rsa AAAA"),
                            ("/latest/guest-attributes/boot/stage", "done")):
            assert api.request(path, method="PUT", body=value.encode()).status == 200
        base = f"/v1/servers/{SERVER}/guest_attributes"
        listed = control.call("GET", base).json()["guest_attributes"]
        assert [(a["namespace"], a["key"], a["value"]) for a in listed] == [
            ("boot", "stage", "done"), ("hostkeys", "ssh-ed25519", KEY),
            ("hostkeys", "ssh-rsa", "ssh-rsa AAAA")]
        assert all(a["updated_at"].endswith("Z") for a in listed)
        one = control.call("GET", f"{base}/hostkeys/ssh-ed25519").json()
        assert one["value"] == KEY
        assert control.call("GET", f"{base}/hostkeys/nope").status == 404
        assert control.call("GET", "/v1/servers/no-such/guest_attributes").status == 404
        assert control.call("GET", base, token=None).status == 401

        shown = run_cloudseed("server", "attributes", "show", SERVER, "-f", "json",
                              env=_env(control))
        assert shown.returncode == 0, shown.stderr
        assert len(json.loads(shown.stdout)) == 3
        one_shown = run_cloudseed("server", "attributes", "show", SERVER,
                                  "hostkeys/ssh-ed25519", "-c", "value", "-f", "value",
                                  env=_env(control))
        assert one_shown.stdout.strip() == KEY
        bad = run_cloudseed("server", "attributes", "clear", SERVER, "no-slash",
                            env=_env(control))
        assert bad.returncode != 0
        assert "NAMESPACE/KEY" in bad.stderr
        cleared = run_cloudseed("server", "attributes", "clear", SERVER, "boot/stage",
                                env=_env(control))
        assert cleared.returncode == 0, cleared.stderr
        assert api.request("/latest/guest-attributes/boot/stage").status == 404
        again = run_cloudseed("server", "attributes", "clear", SERVER, "boot/stage",
                              env=_env(control))
        assert again.returncode != 0
        assert "404" in again.stderr
        assert run_cloudseed("server", "attributes", "clear", SERVER,
                             env=_env(control)).returncode == 0
        assert api.request(f"{ATTRS}/").body == b""
        assert store.list_guest_attributes(RICH.server.id) == []


def test_server_wait_booted_returns_within_a_second_of_the_post(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_api(store, api_settings(mode="direct")) as api, running_control(store) as control:
        assert seconds_from_post_to_booted(control, SERVER, lambda: _phone_home(api)) < 1.0


def test_server_wait_booted_exits_3_at_the_timeout(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_control(store) as control:
        started = time.monotonic()
        done = run_cloudseed("server", "wait", SERVER, "--booted", "--timeout", "1",
                             env=_env(control))
        assert done.returncode == 3, done.stderr
        assert time.monotonic() - started >= 1.0  # it waited, it did not give up at once
        assert "did not phone home within 1 s" in done.stderr
        missing = run_cloudseed("server", "wait", "no-such", "--booted", "--timeout", "5",
                                env=_env(control))
        assert missing.returncode == 1
        assert "404" in missing.stderr


def test_many_waiters_do_not_starve_other_calls_and_the_excess_is_429(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    waiters = 40  # ten times the control API's store threads
    with running_api(store, api_settings(mode="direct")) as api, running_control(store) as control:
        control.app.waiters.max_waiters = waiters
        replies: list[int] = []
        path = f"/v1/servers/{SERVER}/phone_home?wait=60"
        threads = [threading.Thread(target=lambda: replies.append(control.call("GET", path).status))
                   for _ in range(waiters)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: control.app.waiters.count == waiters, timeout=60)
        # Every store thread is free for other callers while they all wait.
        for _ in range(10):
            assert control.call("GET", "/v1/servers").status == 200
            assert control.call("GET", f"/v1/servers/{SERVER}/phone_home").json()["booted"] is False
        metrics = control.call("GET", "/metrics").body.decode()
        assert f"cloudseed_control_waiting_requests {waiters}\n" in metrics
        refused = control.call("GET", path)
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "1"
        assert f"at most {waiters} requests may wait" in refused.json()["message"]
        assert control.app.waiters.count == waiters  # nobody returned early
        _phone_home(api)
        for thread in threads:
            thread.join(30)
        assert replies == [200] * waiters
        assert control.app.waiters.count == 0


@pytest.mark.parametrize("wait", ["-1", "301", "nan", "soon", "inf"])
def test_bad_wait_is_400_naming_it(store: SqlStore, wait: str) -> None:
    store_view(store, RICH, guest_ip="127.0.0.1")
    with running_control(store) as control:
        reply = control.call("GET", f"/v1/servers/{SERVER}/phone_home?wait={wait}")
    assert reply.status == 400
    assert reply.json()["field"] == "wait"
