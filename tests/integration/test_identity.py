"""Signed instance identity through the whole chain, verified with real tools.

The control API makes the identity key at start and publishes its certificate
and JWKS; the guest reads the AWS-shaped document and signatures and the
audience JWT through proxy → agent → API; ``openssl`` and PyJWT verify them
against what the control API published. Three tenants share one address
behind different routers: each gets only its own identity, whatever it sends.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from tests.integration.test_chain_tenants import SPOOF
from tests.support.chain import GUEST_IP, Chain, chain
from tests.support.control import RunningControl, running_control
from tests.support.world import UUIDS

from cloudseed.model import ImdsOptions, TokenPolicy
from cloudseed.render.ec2 import instance_id
from cloudseed.store import SqlStore

IMPLEMENTATIONS = ["builtin", "haproxy"]
DOCUMENT = "/latest/dynamic/instance-identity/document"
TOKEN_PATHS = ["/openstack/latest/identity_token", "/latest/dynamic/instance-identity/token"]


def _get(c: Chain, tenant: str, path: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    status, _, body = c.ask(tenant, path, headers)
    assert status == 200, (path, body)
    return body


def _openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60,
                          check=False)


def _certificate(ctl: RunningControl, tmp_path: Path) -> Path:
    reply = ctl.call("GET", "/v1/identity/certificate", token=None)  # public: no token
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/x-pem-file")
    assert b"PRIVATE" not in reply.body
    path = tmp_path / "certificate.pem"
    path.write_bytes(reply.body)
    return path


def _armoured(tmp_path: Path, name: str, body: bytes) -> Path:
    # AWS's recipe: the metadata body between PKCS7 header and footer lines.
    path = tmp_path / name
    path.write_bytes(b"-----BEGIN PKCS7-----\n" + body + b"\n-----END PKCS7-----\n")
    return path


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_identity_document_and_its_signatures_verify_with_openssl(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    with running_control(store) as ctl, chain(store, tmp_path, kind, api="real") as c:
        certificate = _certificate(ctl, tmp_path)
        assert _get(c, "a", "/latest/dynamic/instance-identity/") == (
            b"document\npkcs7\nrsa2048\nsignature")
        assert b"dynamic/" in _get(c, "a", "/latest/")
        document = _get(c, "a", DOCUMENT)
        fields = json.loads(document)
        server = store.get_server(UUIDS["a"])
        assert fields["instanceId"] == instance_id(server.ec2_id)
        assert fields["accountId"] == "proj-a"
        assert fields["privateIp"] == GUEST_IP
        assert fields["availabilityZone"] == server.availability_zone
        assert fields["instanceType"] == server.flavor_name
        assert fields["pendingTime"] == server.created_at
        assert fields["region"] == "RegionOne"
        assert fields["version"] == "2017-09-30"

        # pkcs7: AWS's own command line, the document attached.
        pkcs7 = _armoured(tmp_path, "pkcs7", _get(c, "a", "/latest/dynamic/instance-identity/pkcs7"))
        verified = _openssl("smime", "-verify", "-in", str(pkcs7), "-inform", "PEM",
                            "-certfile", str(certificate), "-noverify")
        assert verified.returncode == 0, verified.stderr
        assert b"Verification successful" in verified.stderr
        assert verified.stdout == document

        # rsa2048 with openssl cms, the document given as the content.
        (tmp_path / "document").write_bytes(document)
        rsa2048 = _armoured(tmp_path, "rsa2048",
                            _get(c, "a", "/latest/dynamic/instance-identity/rsa2048"))
        verified = _openssl("cms", "-verify", "-in", str(rsa2048), "-inform", "PEM",
                            "-certfile", str(certificate), "-noverify", "-binary",
                            "-out", str(tmp_path / "content"))
        assert verified.returncode == 0, verified.stderr
        assert (tmp_path / "content").read_bytes() == document

        # signature: base64 RSA SHA-256 over the document, against the certificate's key.
        public = _openssl("x509", "-in", str(certificate), "-pubkey", "-noout")
        (tmp_path / "public.pem").write_bytes(public.stdout)
        signature = _get(c, "a", "/latest/dynamic/instance-identity/signature")
        (tmp_path / "signature.bin").write_bytes(__import__("base64").b64decode(signature))
        good = _openssl("dgst", "-sha256", "-verify", str(tmp_path / "public.pem"),
                        "-signature", str(tmp_path / "signature.bin"), str(tmp_path / "document"))
        assert good.stdout.strip() == b"Verified OK"
        # The check can fail: one byte changed in the document does not verify.
        (tmp_path / "forged").write_bytes(document.replace(b"proj-a", b"proj-b"))
        forged = _openssl("dgst", "-sha256", "-verify", str(tmp_path / "public.pem"),
                          "-signature", str(tmp_path / "signature.bin"), str(tmp_path / "forged"))
        assert forged.returncode != 0


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_same_address_tenants_each_get_only_their_own_identity(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    with running_control(store) as ctl, chain(store, tmp_path, kind, api="real") as c:
        client = jwt.PyJWKClient(f"{ctl.url}/v1/identity/jwks.json")
        for tenant in "abc":
            document = json.loads(_get(c, tenant, DOCUMENT, SPOOF))
            server = store.get_server(UUIDS[tenant])
            assert document["instanceId"] == instance_id(server.ec2_id)
            assert document["accountId"] == f"proj-{tenant}"
            for path in TOKEN_PATHS:
                token = _get(c, tenant, f"{path}?audience=vault&format=full", SPOOF).decode()
                claims = jwt.decode(token, client.get_signing_key_from_jwt(token).key,
                                    algorithms=["RS256"], audience="vault", issuer="cloudseed")
                assert claims["sub"] == UUIDS[tenant]
                assert claims["cloudseed"]["project_id"] == f"proj-{tenant}"


def test_identity_token_claims_audience_and_expiry_are_enforced(
    store: SqlStore, tmp_path: Path
) -> None:
    with running_control(store) as ctl, chain(store, tmp_path, api="real") as c:
        client = jwt.PyJWKClient(f"{ctl.url}/v1/identity/jwks.json")
        token = _get(c, "b", f"{TOKEN_PATHS[0]}?audience=https://vault.example/v1").decode()
        key = client.get_signing_key_from_jwt(token).key
        claims = jwt.decode(token, key, algorithms=["RS256"],
                            audience="https://vault.example/v1", issuer="cloudseed")
        assert claims["sub"] == UUIDS["b"]
        assert claims["exp"] - claims["iat"] == 600
        assert "cloudseed" not in claims  # format=standard: the bare claims
        with pytest.raises(jwt.InvalidAudienceError):
            jwt.decode(token, key, algorithms=["RS256"], audience="someone-else",
                       issuer="cloudseed")
        with pytest.raises(jwt.ExpiredSignatureError):
            jwt.decode(token, key, algorithms=["RS256"], audience="https://vault.example/v1",
                       options={"verify_iat": False, "verify_nbf": False},
                       leeway=-(claims["exp"] - int(time.time()) + 1))
        for query, field in [("", "audience"), ("?audience=", "audience"),
                             ("?audience=a%20b", "audience"), ("?audience=" + "a" * 513,
                                                              "audience"),
                             ("?audience=x&audience=y", "audience"),
                             ("?audience=x&format=pretty", "format")]:
            status, _, body = c.ask("b", TOKEN_PATHS[1] + query)
            assert status == 400, (query, body)
            assert field.encode() in body
        status, _, _ = c.ask("b", TOKEN_PATHS[0] + "?audience=x", method="POST")
        assert status == 405


def _kid(token: bytes) -> str:
    kid: str = jwt.get_unverified_header(token.decode())["kid"]
    return kid


def _wait_for_kid(c: Chain, kid: str) -> bytes:
    deadline = time.monotonic() + 30
    while True:
        token = _get(c, "a", f"{TOKEN_PATHS[0]}?audience=x")
        if _kid(token) == kid or time.monotonic() > deadline:
            return token
        time.sleep(0.05)


def test_rotation_signs_with_the_new_key_and_keeps_the_old_one_verifiable(
    store: SqlStore, tmp_path: Path
) -> None:
    with running_control(store) as ctl, chain(store, tmp_path, api="real") as c:
        before = _get(c, "a", f"{TOKEN_PATHS[0]}?audience=x")
        rotated = ctl.call("POST", "/v1/identity/rotate")
        assert rotated.status == 201
        new_kid = rotated.json()["kid"]
        assert new_kid != _kid(before)
        after = _wait_for_kid(c, new_kid)
        assert _kid(after) == new_kid  # the API learned the key from the change feed
        kids = [k["kid"] for k in ctl.call("GET", "/v1/identity/jwks.json", token=None)
                .json()["keys"]]
        assert kids == [new_kid, _kid(before)]
        client = jwt.PyJWKClient(f"{ctl.url}/v1/identity/jwks.json")
        for token in (before, after):  # both still verify
            jwt.decode(token.decode(), client.get_signing_key_from_jwt(token.decode()).key,
                       algorithms=["RS256"], audience="x")
        # A second rotation retires the first key: its tokens no longer verify.
        third = ctl.call("POST", "/v1/identity/rotate").json()["kid"]
        listed = ctl.call("GET", "/v1/identity/keys").json()["keys"]
        assert [(k["kid"], k["signing"]) for k in listed] == [(third, True), (new_kid, False)]
        assert _kid(before) not in {
            k["kid"] for k in ctl.call("GET", "/v1/identity/jwks.json", token=None)
            .json()["keys"]}
        # Rotation needs the control token; the public keys do not.
        assert ctl.call("POST", "/v1/identity/rotate", token=None).status == 401
        assert ctl.call("GET", "/v1/identity/keys", token=None).status == 401


def test_identity_paths_follow_the_servers_token_rule_and_keys_stay_private(
    store: SqlStore, tmp_path: Path
) -> None:
    with running_control(store) as ctl, chain(store, tmp_path, api="real") as c:
        server = store.get_server(UUIDS["c"])
        with store.write() as writer:
            writer.put_server(dataclasses.replace(
                server, imds=ImdsOptions(tokens=TokenPolicy.REQUIRED)))
        deadline = time.monotonic() + 30
        while c.ask("c", DOCUMENT)[0] != 401 and time.monotonic() < deadline:
            time.sleep(0.05)
        for path in (DOCUMENT, f"{TOKEN_PATHS[1]}?audience=x"):
            assert c.ask("c", path)[0] == 401
        status, _, token = c.ask("c", "/latest/api/token",
                                 [("X-aws-ec2-metadata-token-ttl-seconds", "60")], "PUT")
        assert status == 200
        assert c.ask("c", DOCUMENT, [("X-aws-ec2-metadata-token", token.decode())])[0] == 200
        exported: Any = ctl.call("GET", "/v1/export").body
        for body in (exported, ctl.call("GET", "/v1/identity/keys").body,
                     ctl.call("GET", "/v1/identity/jwks.json").body,
                     ctl.call("GET", "/metrics", token=None).body):
            assert b"PRIVATE KEY" not in body
            assert b'"d"' not in body  # no private JWK member either
