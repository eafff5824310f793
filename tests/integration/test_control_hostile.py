"""Hostile control-API input: every case is a JSON 4xx naming the field, store unchanged.

Each case goes over real HTTP to a real control API on SQLite and on
PostgreSQL (so a value one backend would store and the other would choke on
is caught), and ``/v1/export`` is compared before and after.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.control import RunningControl, running_control
from tests.support.refusals import refused

from cloudseed.control.bodies import MAX_JSON_DEPTH
from cloudseed.store import SqlStore

V6_NET = "fd00::/64"
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture
def api(store: SqlStore) -> Iterator[RunningControl]:
    with running_control(store) as running:
        reply = running.call("POST", "/v1/import", {
            "keypairs": [{"name": "k1", "public_key": ED25519}],
            "networks": [{"name": "net1", "subnets": [
                {"name": "v4", "cidr": "10.0.0.0/24"}, {"name": "v6", "cidr": V6_NET},
            ]}],
            "servers": [{"name": "a", "ports": [{"network": "net1"}]}],
        })  # fmt: skip
        assert reply.status == 200, reply.body
        yield running


def _network(**fields: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/networks", {"name": "n", **fields}


def _subnet(cidr: str, **fields: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/networks/net1/subnets", {"cidr": cidr, **fields}


def _port(**fields: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/ports", {"network": "net1", **fields}


def _fixed(ip: str) -> tuple[str, str, Any]:
    return _port(fixed_ips=[{"ip_address": ip}])


def _server(**fields: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/servers", {"name": "b", **fields}


def _keypair(**fields: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/keypairs", {"name": "k2", "public_key": ED25519, **fields}


def _import(**sections: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/import", sections


def _nested(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


BAD_TEXT = {
    "nul": "a\x00b",
    "newline": "a\nb",
    "carriage-return": "a\rb",
    "tab": "a\tb",
    "escape": "a\x1b[31mb",
    "delete": "a\x7fb",
    "bidi-override": "abc\u202edcba",
    "bidi-isolate": "a\u2066b",
    "zero-width-space": "a\u200bb",
    "zero-width-joiner": "a\u200db",
    "bom": "\ufeffab",
    "line-separator": "a\u2028b",
    "paragraph-separator": "a\u2029b",
    "private-use": "a\ue000b",
    "c1-control": "a\x85b",
}
BAD_IDS = ["a/b", "a b", "..", ".", "-rf", ".x", "x" * 65, "é", "a\nb", "a\x00b", "a%2Fb", ""]
ZONED = ["fd00::5%eth0", "fd00::5%x", "10.0.0.5%x", "fd00::5%25x"]
BAD_V4_CIDRS = [
    "224.0.0.0/24", "239.1.0.0/16", "240.0.0.0/24", "255.255.255.0/24", "0.0.0.0/24",
    "169.254.0.0/24", "169.254.169.0/28", "10.0.0.1/32", "10.2.0.0/31", "10.2.0.0/32",
    "10.2.0.1/24", "10.2.0.0/33", "10.2.0.0", "10.2.0.0/24%x",
]  # fmt: skip
BAD_V6_CIDRS = [
    "ff02::/64", "ff00::/8", "fd01::1/128", "fd01::/127", "::ffff:0:0/120", "::/64",
    "fe80::%eth0/64", "fd01::/64%x", "fd01::1/64", "fd01::/129",
]  # fmt: skip
BAD_HOST_ADDRESSES = ["224.0.0.1", "0.0.0.0", "255.255.255.255", "ff02::1", "::", "fd00::5%x"]
BAD_MACS = [
    "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "33:33:00:00:00:01",
    "fa:16:3e:00:00:0g", "fa:16:3e:00:00", "fa16.3e00.0001", "fa:16:3e:00:00:01:02",
]  # fmt: skip
INT32_OVERFLOWS = [2**31, 2**63, 10**30, -1]

CASES: dict[str, tuple[tuple[str, str, Any], int, str]] = {}


def case(name: str, request: tuple[str, str, Any], status: int, field: str) -> None:
    assert name not in CASES, name
    CASES[name] = (request, status, field)


for label, text in BAD_TEXT.items():
    case(f"network-name-{label}", _network(name=text), 400, "name")
    case(f"router-name-{label}", ("POST", "/v1/routers", {"name": text}), 400, "name")
    case(f"server-name-{label}", _server(name=text), 400, "name")
    case(f"port-name-{label}", _port(name=text), 400, "name")
    case(f"subnet-name-{label}", _subnet("10.9.0.0/24", name=text), 400, "name")
    case(f"keypair-name-{label}", _keypair(name=text), 400, "name")
    case(f"file-path-{label}", _server(files=[{"path": f"/etc/{text}", "contents": ""}]),
         400, "files[0].path")  # fmt: skip
    case(f"import-network-name-{label}", _import(networks=[{"name": text}]),
         400, "networks[0].name")  # fmt: skip
for label in ("nul", "newline", "bidi-override", "escape"):
    text = BAD_TEXT[label]
    case(f"hostname-{label}", _server(hostname=text), 400, "hostname")
    case(f"project-{label}", _server(project_id=text), 400, "project_id")
    case(f"zone-{label}", _server(availability_zone=text), 400, "availability_zone")
    case(f"image-{label}", _server(image_id=text), 400, "image_id")
    case(f"metadata-key-{label}", _server(metadata={text: "v"}), 400, "(key)")
case("metadata-value-nul", _server(metadata={"k": "a\x00b"}), 400, "metadata.k")
case("metadata-merge-nul", ("POST", "/v1/servers/a/metadata", {"metadata": {"k": "\x00"}}),
     400, "metadata.k")  # fmt: skip
case("user-id-nul", _server(user_id="u\x00"), 400, "user_id")
for i, bad_id in enumerate(BAD_IDS):
    case(f"server-id-{i}", _server(id=bad_id), 400, "id")
    case(f"network-id-{i}", _network(id=bad_id), 400, "id")
    case(f"port-id-{i}", _port(id=bad_id), 400, "id")
    case(f"subnet-id-{i}", _subnet("10.9.0.0/24", id=bad_id), 400, "id")
    case(f"router-id-{i}", ("POST", "/v1/routers", {"name": "r", "id": bad_id}), 400, "id")
    case(f"import-server-id-{i}", _import(servers=[{"name": "b", "id": bad_id}]),
         400, "servers[0].id")  # fmt: skip
    case(f"import-port-id-{i}", _import(ports=[{"network": "net1", "id": bad_id}]),
         400, "ports[0].id")  # fmt: skip
for cidr in BAD_V4_CIDRS + BAD_V6_CIDRS:
    case(f"cidr-{cidr}", _subnet(cidr), 400, "cidr")
    case(f"network-cidr-{cidr}", _network(subnets=[{"cidr": cidr}]), 400, "subnets[0].cidr")
    case(f"import-cidr-{cidr}", _import(networks=[{"name": "n", "subnets": [{"cidr": cidr}]}]),
         400, "networks[0].subnets[0].cidr")  # fmt: skip
for address in BAD_HOST_ADDRESSES:
    case(f"dns-{address}", _subnet("10.9.0.0/24", dns_nameservers=[address]),
         400, "dns_nameservers[0]")  # fmt: skip
    case(f"floating-{address}", _port(floating_ip=address), 400, "floating_ip")
    case(f"nexthop-{address}", _subnet("10.9.0.0/24", host_routes=[
        {"destination": "10.8.0.0/24", "nexthop": address}]), 400, "nexthop")  # fmt: skip
for address in ZONED:
    case(f"fixed-ip-zone-{address}", _fixed(address), 400, "ip_address")
    case(f"server-fixed-ip-zone-{address}", _server(networks=[
        {"network": "net1", "fixed_ip": address}]), 400, "networks[0].fixed_ip")  # fmt: skip
    case(f"import-fixed-ip-zone-{address}", _import(ports=[
        {"network": "net1", "fixed_ips": [{"ip_address": address}]}]),
         400, "ports[0].fixed_ips[0].ip_address")  # fmt: skip
    case(f"gateway-zone-{address}", _subnet("10.9.0.0/24", gateway_ip=address), 400, "gateway_ip")
for address, status in [
    ("10.0.0.254", 409), ("10.0.0.1", 409), ("10.0.0.0", 400), ("10.0.0.255", 400),
    ("fd00::", 400), ("fd00::ffff:ffff:ffff:fffe", 409), ("fe80::a9fe:a9fe", 400),
    ("10.1.0.5", 400), ("fd01::5", 400), ("10.0.0.x", 400), ("", 400),
]:  # fmt: skip
    case(f"fixed-ip-{address}", _fixed(address), status, "ip_address")
    case(f"server-fixed-ip-{address}", _server(networks=[
        {"network": "net1", "fixed_ip": address}]), status, "fixed_ip")  # fmt: skip
for mac in BAD_MACS:
    case(f"mac-{mac}", _port(mac_address=mac), 400, "mac_address")
    case(f"import-mac-{mac}", _import(ports=[{"network": "net1", "mac_address": mac}]),
         400, "ports[0].mac_address")  # fmt: skip
for value in INT32_OVERFLOWS:
    case(f"launch-index-{value}", _server(launch_index=value), 400, "launch_index")
    case(f"import-launch-index-{value}", _import(servers=[{"name": "b", "launch_index": value}]),
         400, "servers[0].launch_index")  # fmt: skip
    case(f"import-ec2-id-{value}", _import(servers=[{"name": "b", "ec2_id": value}]),
         400, "servers[0].ec2_id")  # fmt: skip
    case(f"mtu-{value}", _network(mtu=value), 400, "mtu")
case("mtu-float", _network(mtu=1500.5), 400, "mtu")
case("mtu-string", _network(mtu="big"), 400, "mtu")
case("launch-index-string", _server(launch_index="1e99"), 400, "launch_index")
case("metadata-key-long", _server(metadata={"k" * 256: "v"}), 400, "(key)")
case("metadata-item-long", ("PUT", "/v1/servers/a/metadata/" + "k" * 300,
                            {"meta": {"k" * 300: "v"}}), 400, "(key)")  # fmt: skip
case("metadata-value-long", _server(metadata={"k": "v" * 256}), 400, "metadata.k")
two_keys = f"{ED25519} one\n{ED25519} two"
case("public-key-two-lines", _keypair(public_key=two_keys), 400, "public_key")
case("public-key-two-crlf", _keypair(public_key=two_keys.replace("\n", "\r\n")), 400, "public_key")
case("public-key-cr", _keypair(public_key=f"{ED25519} a\rssh-rsa AAAA"), 400, "public_key")
case("public-key-nul", _keypair(public_key=f"{ED25519} a\x00b"), 400, "public_key")
case("public-key-bidi", _keypair(public_key=f"{ED25519} \u202eevil"), 400, "public_key")
case("public-key-two-pem", _keypair(type="x509", public_key=(
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" * 2)), 400, "public_key")
case("keypair-name-slash", _keypair(name="a/b"), 400, "name")
case("import-public-key-two", _import(keypairs=[{"name": "k3", "public_key": two_keys}]),
     400, "keypairs[0].public_key")  # fmt: skip
case("user-data-not-base64", _server(user_data="not base64!"), 400, "user_data")
case("port-and-network", _server(networks=[{"port": "x", "network": "net1"}]), 400, "networks[0]")
case("unknown-field", _server(nmae="typo"), 400, "nmae")
case("router-empty-network", ("POST", "/v1/routers", {"name": "r", "subnets": ["v4", "x"]}),
     404, "")  # fmt: skip
case("import-two-ports-same-mac", _import(ports=[
    {"network": "net1", "mac_address": "fa:16:3e:00:00:aa"},
    {"network": "net1", "mac_address": "fa:16:3e:00:00:aa"}]), 409, "ports[1]")  # fmt: skip
for depth in (MAX_JSON_DEPTH + 1, 1000, 100_000):
    case(f"nested-{depth}", ("POST", "/v1/networks", _nested(depth)), 400, "body")
    case(f"import-nested-{depth}", ("POST", "/v1/import", _nested(depth)), 400, "body")
case("nested-in-strings-is-fine-but-name-bad", ("POST", "/v1/networks",
     json.dumps({"name": "[" * 1000 + "\n"}).encode()), 400, "name")  # fmt: skip
case("lone-surrogate", ("POST", "/v1/networks", b'{"name": "a\\ud800b"}'), 400, "name")
case("lone-surrogate-key", ("POST", "/v1/servers",
     b'{"name": "b", "metadata": {"\\udfff": "v"}}'), 400, "(key)")  # fmt: skip
case("not-utf8", ("POST", "/v1/networks", b'{"name": "\xff\xfe"}'), 400, "body")
case("not-json", ("POST", "/v1/networks", b"{name: n}"), 400, "body")
case("json-array", ("POST", "/v1/networks", b"[]"), 400, "")
case("json-nan", ("POST", "/v1/networks", b'{"name": "n", "mtu": NaN}'), 400, "mtu")
case("huge-integer-text", ("POST", "/v1/networks",
     b'{"name": "n", "mtu": ' + b"9" * 5000 + b"}"), 400, "body")  # fmt: skip
case("empty-body", ("POST", "/v1/networks", b" "), 400, "body")
case("binary-user-data-file", _server(files=[
    {"path": "/a", "contents": base64.b64encode(b"\x00" * 20000).decode()}]),
     400, "files[0].contents")  # fmt: skip


for path in ["/v1/servers/%00", "/v1/networks/a%00b", "/v1/ports?network=%00",
             "/v1/keypairs/%00", "/v1/subnets/%ED%A0%80%00", "/v1/routers/r?x=%00"]:  # fmt: skip
    case(f"get-{path}", ("GET", path, None), 400, "")
case("delete-metadata-nul", ("DELETE", "/v1/servers/a/metadata/%00", None), 400, "key")
case("delete-keypair-nul", ("DELETE", "/v1/keypairs/k1%00", None), 400, "keypair")
case("put-metadata-nul-server", ("PUT", "/v1/servers/%00/metadata/k", {"meta": {"k": "v"}}),
     400, "server")  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_a_json_4xx_naming_the_field_and_changes_nothing(
    api: RunningControl, name: str
) -> None:
    (method, path, body), status, field = CASES[name]
    error = refused(api, method, path, body)
    assert error["status"] == status, error
    if status == 400:
        assert field in error.get("field", ""), error
        assert error["field"] in error["message"]
    if error["error"] == "LimitExceeded":
        assert str(error["limit"]).lstrip("/") in error["message"] or "limit" in error["message"]


def test_the_table_is_large() -> None:
    assert len(CASES) > 300


# -- the HTTP layer: refusals before the body, JSON bodies everywhere ---------


def _raw(
    api: RunningControl, head: bytes, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (no body) and read the answer; a server waiting for the body times out."""
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "closed without an answer"
            data += chunk
        head_text, _, body = data.partition(b"\r\n\r\n")
        lines = head_text.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", "0")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, body


def _head(path: str, length: int, token: str | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json",
             f"Content-Length: {length}"]  # fmt: skip
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("token", "status", "error"),
    [(None, 401, "AuthMissing"), ("wrong", 403, "AuthRejected")],
)
def test_token_is_checked_before_any_body_byte(
    api: RunningControl, token: str | None, status: int, error: str
) -> None:
    # 200 MiB announced, nothing sent: the answer comes from the head alone.
    code, headers, body = _raw(api, _head("/v1/import", 200 * 2**20, token))
    assert code == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == error


def test_declared_oversize_body_is_413_at_once_as_json(api: RunningControl) -> None:
    code, headers, body = _raw(api, _head("/v1/import", 300 * 2**20, api.token))
    assert code == 413
    assert headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["error"] == "RequestEntityTooLarge"
    assert str(256 * 2**20) in answer["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("PATCH", "/v1/networks"), ("DELETE", "/v1/import"), ("POST", "/healthz"),
     ("PUT", "/metrics"), ("OPTIONS", "/v1/servers")],
)  # fmt: skip
def test_405_is_json_naming_the_allowed_methods(
    api: RunningControl, method: str, path: str
) -> None:
    reply = api.call(method, path, {})
    assert reply.status == 405
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json()["error"] == "MethodNotAllowed"
    assert reply.headers["Allow"]


def test_unknown_path_is_json_404_before_the_body(api: RunningControl) -> None:
    code, _headers, body = _raw(api, _head("/v1/nothing", 2**20, api.token))
    assert code == 404
    assert json.loads(body)["error"] == "NotFound"
