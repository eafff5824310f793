"""The HTTP hops of ``cloudseed doctor``: agent, API, signature — each judged by a real request.

A health check counts only when it answers 200. The agent is asked what a
proxy would ask it (the router or network id and the guest's address), so
its hop says whether it resolves *this* guest, not merely that a socket is
open. The signature hop signs with the same shared secret ``serve``
generated into the data dir, or says which secret it lacks.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloudseed.auth.signing import sign_instance_id
from cloudseed.http.client import Upstream
from cloudseed.secret_files import secrets_dir
from cloudseed.settings import Settings

if TYPE_CHECKING:
    from cloudseed.doctor import Hop, Walk

# Each probe is a local round trip; anything slower than this is broken.
PROBE_TIMEOUT_SECONDS = 5.0
META_DATA_PATH = "/openstack/latest/meta_data.json"
SHARED_SECRET_FILE = "shared_secret"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: str


def agent(walk: Walk) -> Hop:
    from cloudseed.doctor import Hop

    settings = walk.host.settings.agent
    if settings.metrics_socket or settings.metrics_port > 0:
        upstream = (Upstream("unix", socket_path=settings.metrics_socket)
                    if settings.metrics_socket else
                    Upstream("http", settings.metrics_host, settings.metrics_port))
        health = http_get(upstream, "/healthz", {})
        where = settings.metrics_socket or f"{settings.metrics_host}:{settings.metrics_port}"
        if health is None or health.status != 200:
            seen = "does not answer" if health is None else f"answered {health.status}"
            return Hop("agent", False, f"the agent's /healthz on {where} {seen}",
                       "start it (cloudseed agent) and see its log")
    path = settings.socket_path
    if walk.path is None or walk.server is None or not walk.address:
        answer = http_get(Upstream("unix", socket_path=path), "/healthz", {})
        if answer is None:
            return Hop("agent", False, f"nothing answers on {path}", "start it: cloudseed agent")
        return Hop("agent", None, f"{path} is open, but with no metadata path there is no "
                   "guest request to ask it", seen=False)
    header = "X-Neutron-Router-ID" if walk.path.via == "router" else "X-Neutron-Network-ID"
    answer = http_get(Upstream("unix", socket_path=path), META_DATA_PATH,
                      {header: walk.path.owner_id, "X-Forwarded-For": walk.address})
    asked = f"{walk.address} via {walk.path.via} {walk.path.owner_id}"
    if answer is None:
        return Hop("agent", False, f"nothing answers on {path}", "start it: cloudseed agent")
    if answer.status == 200 and uuid_of(answer.body) == walk.server.id:
        return Hop("agent", True, f"{path} resolves {asked} to this server")
    if answer.status >= 500 and not api_healthy(walk):
        return Hop("agent", None, f"{path} answered {answer.status} for {asked}: the API "
                   "behind it is down (see the api hop)", seen=False)
    fixes = {404: "the agent finds no port with this address on this router/network: check "
                  "the port's fixed IP and that the subnet is attached",
             400: "the agent refused the proxy's headers; see the agent's log"}
    return Hop("agent", False, f"{path} answered {answer.status} for {asked}: "
               f"{answer.body[:120].strip()}", fixes.get(answer.status, "see the agent's log"))


def api_healthy(walk: Walk) -> bool:
    if walk.api_status is None:
        walk.api_status = _api_status(walk.host.settings)
    return walk.api_status[0] == 200


def _api_status(settings: Settings) -> tuple[int, str]:
    """(status, where): /healthz on the admin listener, else / on the guest listener."""
    api = settings.api
    if api.admin_host:
        upstream, path = Upstream("http", api.admin_host, api.admin_port), "/healthz"
    else:
        upstream, path = Upstream.parse(settings.agent.api_url), "/"
    where = f"{upstream.host}:{upstream.port}{path}"
    answer = http_get(upstream, path, {})
    return (0 if answer is None else answer.status), where


def api(walk: Walk) -> Hop:
    from cloudseed.doctor import Hop

    api_healthy(walk)
    assert walk.api_status is not None
    status, where = walk.api_status
    if status == 0:
        return Hop("api", False, f"{where} does not answer", "start it: cloudseed api")
    if status != 200:
        return Hop("api", False, f"{where} answered {status}", "see the API's log")
    return Hop("api", True, f"{where} answers 200")


def shared_secret(settings: Settings) -> tuple[str, str]:
    """(secret, where it came from), or ("", why there is none)."""
    configured = settings.shared_secret.reveal()
    if configured:
        return configured, "the settings"
    path = secrets_dir(settings) / SHARED_SECRET_FILE
    try:
        return path.read_text().strip(), str(path)
    except FileNotFoundError:
        return "", (f"shared_secret is not set and `cloudseed serve` has not generated "
                    f"{path}")
    except OSError as exc:
        return "", f"cannot read {path} ({exc.strerror}): run doctor as the user serve runs as"


def signature(walk: Walk) -> Hop:
    from cloudseed.doctor import Hop

    if walk.server is None:
        return Hop("signature", None, "no server")
    settings = walk.host.settings
    secret, source = shared_secret(settings)
    if not secret:
        return Hop("signature", False, source,
                   "set shared_secret (or shared_secret_file) to the agent's, or start "
                   "`cloudseed serve` once with this data_dir")
    server = walk.server
    headers = {
        "X-Instance-ID": server.id,
        "X-Tenant-ID": server.project_id,
        "X-Instance-ID-Signature": sign_instance_id(secret.encode(), server.id),
        "X-Forwarded-For": walk.address or "127.0.0.1",
    }
    answer = http_get(Upstream.parse(settings.agent.api_url), META_DATA_PATH, headers)
    if answer is None:
        return Hop("signature", None, "API unreachable (see the api hop)", seen=False)
    if answer.status == 200 and uuid_of(answer.body) == server.id:
        return Hop("signature", True, f"the API accepts a signature with the secret from "
                   f"{source}")
    fixes = {403: f"the API's shared_secret differs from the one in {source}",
             400: "the API is not in proxy mode, or a header is missing",
             404: "the API does not find the server (tenant mismatch or another store)"}
    return Hop("signature", False, f"the API answered {answer.status}",
               fixes.get(answer.status, "see the API's log"))


# -- small HTTP probes ------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def http_get(upstream: Upstream, path: str, headers: dict[str, str]) -> Answer | None:
    """The answer, or None when nothing answers."""
    conn: http.client.HTTPConnection
    if upstream.scheme == "unix":
        if not os.path.exists(upstream.socket_path):
            return None
        conn = _UnixConnection(upstream.socket_path, PROBE_TIMEOUT_SECONDS)
    elif upstream.scheme == "https":
        conn = http.client.HTTPSConnection(upstream.host, upstream.port,
                                           timeout=PROBE_TIMEOUT_SECONDS)
    else:
        conn = http.client.HTTPConnection(upstream.host, upstream.port,
                                          timeout=PROBE_TIMEOUT_SECONDS)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return Answer(response.status, response.read().decode("utf-8", "replace"))
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def uuid_of(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return str(data.get("uuid")) if isinstance(data, dict) else None
