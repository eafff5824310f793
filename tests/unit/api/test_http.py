"""The metadata API over real HTTP on loopback, with a real store."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import threading
from datetime import UTC, datetime

import pytest
from tests.support.api import (
    FakeClock,
    api_settings,
    identity,
    raw_exchange,
    rich_with,
    running_api,
    store_view,
)
from tests.support.processes import wait_until
from tests.support.samples import RICH

from cloudseed.api.observe import AccessLog
from cloudseed.model import EndpointState, ImdsOptions, TokenPolicy
from cloudseed.render import RenderOptions, render_tree
from cloudseed.store import SqlStore

TENANT = RICH.server.project_id
RICH_ID = RICH.server.id


def who(server_id: str = RICH_ID, tenant: str = TENANT) -> dict[str, str]:
    return identity(server_id, tenant)


def test_every_document_of_the_rendered_tree_is_served_byte_for_byte(store: SqlStore) -> None:
    view = store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        # The renderer's goldens pin these bytes; here: the API serves them all.
        # Injected files stay off HTTP by default (as Nova: config drive only).
        options = RenderOptions(
            today=datetime.now(UTC).date(),
            dhcp_domain=api.app.config.dhcp_domain,
            injected_files=False,
        )
        tree = render_tree(view, options)
        for path in sorted(tree.paths()):
            doc = tree.lookup(path)
            assert doc is not None
            reply = api.request("/" + path, who())
            assert reply.status == 200, path
            assert reply.headers["content-type"] == doc.content_type, path
            assert reply.headers["etag"] == doc.etag, path
            if doc.seed_offset is None:
                assert reply.body == doc.body, path
            else:
                data = json.loads(reply.body)
                assert len(base64.b64decode(data["random_seed"])) == 512
                data["random_seed"] = ""
                assert data == json.loads(doc.body), path


def test_root_lists_ec2_versions_before_any_identification(store: SqlStore) -> None:
    with running_api(store, api_settings()) as api:
        reply = api.request("/")
        assert reply.status == 200
        assert reply.body.split(b"\n")[0] == b"1.0"
        assert reply.body.endswith(b"latest")


def test_random_seed_is_new_per_response_but_etag_is_stable(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        first = api.request("/openstack/latest/meta_data.json", who())
        second = api.request("/openstack/latest/meta_data.json", who())
        assert json.loads(first.body)["random_seed"] != json.loads(second.body)["random_seed"]
        assert first.headers["etag"] == second.headers["etag"]
        again = api.request(
            "/openstack/latest/meta_data.json",
            {**who(), "If-None-Match": first.headers["etag"]},
        )
        assert again.status == 304
        assert again.body == b""


@pytest.mark.parametrize(
    "path", ["/latest/meta-data/instance-id", "/openstack/2018-08-27/network_data.json", "/"]
)
def test_if_none_match_gives_304_and_a_changed_etag_gives_200(store: SqlStore, path: str) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        etag = api.request(path, who()).headers["etag"]
        assert api.request(path, {**who(), "If-None-Match": etag}).status == 304
        assert api.request(path, {**who(), "If-None-Match": f'"x", W/{etag}'}).status == 304
        assert api.request(path, {**who(), "If-None-Match": "*"}).status == 304
        assert api.request(path, {**who(), "If-None-Match": '"other"'}).status == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/latest/meta-data/instance-id/", 200),
        ("//latest//meta-data//instance-id", 200),
        ("/2099-01-01/meta-data/instance-id", 404),
        ("/openstack/2099-01-01/meta_data.json", 404),
        ("/latest/meta-data/no-such-key", 404),
        ("/../../etc/passwd", 404),
        ("/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/openstack/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/latest/meta-data/%00", 404),
        ("/openstack/content", 404),
        ("/openstack/content/9999", 404),
        ("/healthz", 404),
        ("/metrics", 404),
    ],
)
def test_paths_answer_as_documented_never_500(store: SqlStore, path: str, status: int) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        assert api.request(path, who()).status == status


def test_user_data_404_when_the_server_has_none(store: SqlStore) -> None:
    store_view(store, rich_with(user_data=None))
    with running_api(store, api_settings()) as api:
        assert api.request("/latest/user-data", who()).status == 404
        assert api.request("/openstack/latest/user_data", who()).status == 404


# -- methods ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_documents_allow_get_and_head_only(store: SqlStore, method: str) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        reply = api.request("/latest/meta-data/instance-id", who(), method=method, body=b"")
        assert reply.status == 405
        assert reply.headers["allow"] == "GET, HEAD"


def test_head_has_the_length_of_get_and_no_body(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        got = api.request("/latest/meta-data/hostname", who())
        head = api.request("/latest/meta-data/hostname", who(), method="HEAD")
        assert head.status == 200
        assert head.body == b""
        assert head.headers["content-length"] == str(len(got.body))


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_password_other_methods_are_400_as_nova(store: SqlStore, method: str) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        reply = api.request("/openstack/latest/password", who(), method=method, body=b"x")
        assert reply.status == 400
        assert b"GET and POST only are supported." in reply.body


def test_get_on_the_token_path_is_405_allow_put(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        reply = api.request("/latest/api/token", who())
        assert reply.status == 405
        assert reply.headers["allow"] == "PUT"


# -- identification, proxy mode ----------------------------------------------


@pytest.mark.parametrize(
    "drop", ["X-Instance-ID", "X-Tenant-ID", "X-Instance-ID-Signature"]
)
def test_proxy_mode_missing_identity_header_is_400(store: SqlStore, drop: str) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        headers = {k: v for k, v in who().items() if k != drop}
        assert api.request("/openstack", headers).status == 400


def test_proxy_mode_repeated_instance_id_is_400(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        headers = who()
        raw = (
            "GET /openstack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + f"X-Instance-ID: {RICH_ID}\r\n\r\n"
        )
        assert raw_exchange(api.port, raw.encode()).startswith(b"HTTP/1.1 400")


def test_proxy_mode_bad_signature_is_403_and_counted(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        headers = {**who(), "X-Instance-ID-Signature": "0" * 64}
        reply = api.request("/openstack", headers)
        assert reply.status == 403
        metrics = api.request("/metrics", admin=True).body.decode()
        assert "cloudseed_api_signature_failures_total 1" in metrics


def test_proxy_mode_unknown_server_is_404(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        ghost = "99999999-9999-4999-8999-999999999999"
        assert api.request("/openstack", identity(ghost, TENANT)).status == 404


def test_proxy_mode_tenant_mismatch_is_404(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        assert api.request("/openstack", who(tenant="someone-else")).status == 404


def test_guest_cannot_spoof_instance_id_without_the_secret(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        forged = identity(RICH_ID, TENANT, secret="guessed")
        assert api.request("/openstack/latest/meta_data.json", forged).status == 403


# -- identification, direct mode ---------------------------------------------


def test_direct_mode_identifies_by_source_address(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.5")
    with running_api(store, api_settings(mode="direct")) as api:
        reply = api.request("/openstack/latest/meta_data.json", source="127.0.0.5")
        assert reply.status == 200
        assert json.loads(reply.body)["uuid"] == RICH_ID
        assert api.request("/openstack", source="127.0.0.6").status == 404


def test_direct_mode_ignores_instance_id_headers_and_untrusted_forwarded_for(
    store: SqlStore,
) -> None:
    store_view(store, RICH, guest_ip="127.0.0.5")
    with running_api(store, api_settings(mode="direct")) as api:
        spoof = {**who(), "X-Forwarded-For": "127.0.0.5"}
        assert api.request("/openstack", spoof, source="127.0.0.6").status == 404


def test_direct_mode_believes_forwarded_for_from_trusted_proxies(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.5")
    settings = api_settings(mode="direct", trusted_proxy_cidrs=("127.0.1.0/24",))
    with running_api(store, settings) as api:
        headers = {"X-Forwarded-For": "127.0.0.9, 127.0.0.5"}
        reply = api.request("/latest/meta-data/instance-id", headers, source="127.0.1.1")
        assert reply.status == 200
        assert reply.body == b"i-0000002a"
        untrusted = api.request("/latest/meta-data/instance-id", headers, source="127.0.0.7")
        assert untrusted.status == 404


# -- session tokens -----------------------------------------------------------


def put_token(api, headers: dict[str, str], ttl: str = "21600", path: str = "/latest/api/token"):  # type: ignore[no-untyped-def]
    return api.request(
        path, {**headers, "X-aws-ec2-metadata-token-ttl-seconds": ttl}, method="PUT"
    )


@pytest.mark.parametrize("path", ["/latest/meta-data/instance-id", "/openstack/latest/meta_data.json"])
def test_required_tokens_guard_both_trees(store: SqlStore, path: str) -> None:
    store_view(store, rich_with(imds=ImdsOptions(tokens=TokenPolicy.REQUIRED)))
    with running_api(store, api_settings(), clock=FakeClock()) as api:
        assert api.request(path, who()).status == 401
        token = put_token(api, who())
        assert token.status == 200
        assert token.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
        assert api.request(path, {**who(), "X-aws-ec2-metadata-token": token.body.decode()}).status == 200
        assert api.request(path, {**who(), "X-metadata-token": token.body.decode()}).status == 200
        assert api.request(path, {**who(), "X-aws-ec2-metadata-token": "bogus"}).status == 401


def test_token_expires_after_its_ttl(store: SqlStore) -> None:
    store_view(store, rich_with(imds=ImdsOptions(tokens=TokenPolicy.REQUIRED)))
    clock = FakeClock()
    with running_api(store, api_settings(), clock=clock) as api:
        token = put_token(api, who(), ttl="60").body.decode()
        headers = {**who(), "X-aws-ec2-metadata-token": token}
        clock.advance(59)
        assert api.request("/latest/meta-data/instance-id", headers).status == 200
        clock.advance(1)
        assert api.request("/latest/meta-data/instance-id", headers).status == 401


def test_token_for_server_a_is_refused_for_server_b(store: SqlStore) -> None:
    from tests.support.api import another_server

    store_view(store, RICH)
    other = another_server(store, 2, "10.0.0.77", imds=ImdsOptions(tokens=TokenPolicy.REQUIRED))
    with running_api(store, api_settings(), clock=FakeClock()) as api:
        token = put_token(api, who()).body.decode()
        b_headers = {**identity(other.id, "project-b"), "X-aws-ec2-metadata-token": token}
        assert api.request("/latest/meta-data/instance-id", b_headers).status == 401


def test_optional_tokens_allow_tokenless_reads_and_count_them(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        assert api.request("/latest/meta-data/instance-id", who()).status == 200
        metrics = api.request("/metrics", admin=True).body.decode()
        assert "cloudseed_api_tokenless_requests_total 1" in metrics
        bad = {**who(), "X-aws-ec2-metadata-token": "x" * 54}
        assert api.request("/latest/meta-data/instance-id", bad).status == 401


@pytest.mark.parametrize("ttl", ["0", "21601", "-5", "abc", "1.5", ""])
def test_token_ttl_outside_1_to_21600_is_400(store: SqlStore, ttl: str) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        assert put_token(api, who(), ttl=ttl).status == 400


def test_token_put_without_ttl_is_400_and_alias_ttl_works(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        assert api.request("/latest/api/token", who(), method="PUT").status == 400
        reply = api.request(
            "/latest/api/token", {**who(), "X-metadata-token-ttl-seconds": "5"}, method="PUT"
        )
        assert reply.status == 200
        assert reply.headers["x-metadata-token-ttl-seconds"] == "5"


def test_token_put_on_a_versioned_path_is_403(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        assert put_token(api, who(), path="/2021-03-23/api/token").status == 403


def test_forwarded_token_put_is_400_in_direct_mode(store: SqlStore) -> None:
    store_view(store, RICH, guest_ip="127.0.0.5")
    with running_api(store, api_settings(mode="direct")) as api:
        headers = {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "1.2.3.4"}
        reply = api.request("/latest/api/token", headers, method="PUT", source="127.0.0.5")
        assert reply.status == 400
        del headers["X-Forwarded-For"]
        ok = api.request("/latest/api/token", headers, method="PUT", source="127.0.0.5")
        assert ok.status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/latest/meta-data/instance-id"),
        ("GET", "/openstack/latest/meta_data.json"),
        ("GET", "/openstack/latest/password"),
        ("PUT", "/latest/api/token"),
    ],
)
def test_disabled_endpoint_is_403_for_everything(store: SqlStore, method: str, path: str) -> None:
    store_view(store, rich_with(imds=ImdsOptions(endpoint=EndpointState.DISABLED)))
    with running_api(store, api_settings()) as api:
        headers = {**who(), "X-aws-ec2-metadata-token-ttl-seconds": "60"}
        assert api.request(path, headers, method=method).status == 403


def test_injected_files_are_served_only_when_the_operator_turns_them_on(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        assert api.request("/openstack/content/0000", who()).status == 404
        meta = json.loads(api.request("/openstack/latest/meta_data.json", who()).body)
        assert "files" not in meta
    with running_api(store, api_settings(serve_injected_files=True)) as api:
        assert api.request("/openstack/content/0000", who()).body == RICH.server.files[0].content
        meta = json.loads(api.request("/openstack/latest/meta_data.json", who()).body)
        assert meta["files"][0]["path"] == RICH.server.files[0].path


# -- password -----------------------------------------------------------------


def test_an_empty_password_post_stores_nothing_as_nova(store: SqlStore) -> None:
    server_id = store_view(store, dataclasses.replace(RICH, password="")).server.id
    with running_api(store, api_settings()) as api:
        path = "/openstack/latest/password"
        assert api.request(path, who(), method="POST", body=b"").status == 200
        assert store.get_password(server_id) == ""
        assert api.request(path, who(), method="POST", body=b"pw").status == 200
        assert store.get_password(server_id) == "pw"
        # Over a set password an empty POST is refused like any other.
        assert api.request(path, who(), method="POST", body=b"").status == 409
        assert store.get_password(server_id) == "pw"


@pytest.mark.parametrize("version", ["2012-08-10", "2099-01-01", "content"])
def test_password_post_where_no_version_lists_it_is_404_and_stores_nothing(
    store: SqlStore, version: str
) -> None:
    server_id = store_view(store, dataclasses.replace(RICH, password="")).server.id
    with running_api(store, api_settings()) as api:
        path = f"/openstack/{version}/password"
        for method in ("POST", "GET", "PUT"):
            assert api.request(path, who(), method=method, body=b"pw").status == 404, method
        assert store.get_password(server_id) == ""
        # Identification still comes first: a bad signature is 403, not 404.
        forged = {**who(), "X-Instance-ID-Signature": "0" * 64}
        assert api.request(path, forged, method="POST", body=b"pw").status == 403


def test_password_get_is_empty_until_posted_then_write_once(store: SqlStore) -> None:
    store_view(store, dataclasses.replace(RICH, password=""))
    server_id = RICH_ID
    with running_api(store, api_settings()) as api:
        empty = api.request("/openstack/latest/password", who())
        assert (empty.status, empty.body) == (200, b"")
        assert api.request("/openstack/latest/password", who(), method="POST", body=b"pw1").status == 200
        assert store.get_password(server_id) == "pw1"
        assert api.request("/openstack/latest/password", who()).body == b"pw1"
        again = api.request("/openstack/latest/password", who(), method="POST", body=b"pw2")
        assert again.status == 409
        assert store.get_password(server_id) == "pw1"


@pytest.mark.parametrize("size", [1021, 4096, 65536])
def test_password_over_1020_bytes_is_400(store: SqlStore, size: int) -> None:
    store_view(store, dataclasses.replace(RICH, password=""))
    with running_api(store, api_settings()) as api:
        reply = api.request("/openstack/latest/password", who(), method="POST", body=b"x" * size)
        assert reply.status == 400
        assert b"Request is too large." in reply.body
        exact = api.request("/openstack/latest/password", who(), method="POST", body=b"x" * 1020)
        assert exact.status == 200


def test_password_post_declaring_over_1020_bytes_is_400(store: SqlStore) -> None:
    store_view(store, dataclasses.replace(RICH, password=""))
    with running_api(store, api_settings()) as api:
        sig = who()
        head = (
            "POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in sig.items())
            + "Content-Length: 2000\r\n\r\n"
        )
        answer = raw_exchange(api.port, head.encode() + b"y" * 2000)
        assert answer.startswith(b"HTTP/1.1 400")


def test_concurrent_password_posts_give_exactly_one_200(store: SqlStore) -> None:
    store_view(store, dataclasses.replace(RICH, password=""))
    with running_api(store, api_settings()) as api:
        results: list[int] = []

        def post(n: int) -> None:
            results.append(
                api.request(
                    "/openstack/latest/password", who(), method="POST", body=f"pw{n}".encode()
                ).status
            )

        threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200] + [409] * 7


# -- hostile input ------------------------------------------------------------


def test_huge_headers_are_431(store: SqlStore) -> None:
    with running_api(store, api_settings()) as api:
        raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n"
        assert raw_exchange(api.port, raw).startswith(b"HTTP/1.1 431")
        many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(100)) + b"\r\n"
        assert raw_exchange(api.port, many).startswith(b"HTTP/1.1 431")


def test_oversize_body_is_413(store: SqlStore) -> None:
    with running_api(store, api_settings()) as api:
        raw = b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"
        assert raw_exchange(api.port, raw + b"a" * 70000).startswith(b"HTTP/1.1 413")


def test_huge_path_is_414_and_garbage_is_400(store: SqlStore) -> None:
    with running_api(store, api_settings()) as api:
        long = b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert raw_exchange(api.port, long).startswith(b"HTTP/1.1 414")
        assert raw_exchange(api.port, b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")


# -- caching and change visibility -------------------------------------------


def test_a_store_change_is_served_without_restart(store: SqlStore) -> None:
    view = store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        path = "/latest/meta-data/hostname"
        assert api.request(path, who()).body.startswith(b"web-1.")
        with store.write() as w:
            w.put_server(dataclasses.replace(view.server, hostname="web-2"))
        assert wait_until(lambda: api.request(path, who()).body.startswith(b"web-2."), 1.0)


def test_a_deleted_server_becomes_404(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        assert api.request("/openstack", who()).status == 200
        with store.write() as w:
            w.delete_server(RICH_ID)
        assert wait_until(lambda: api.request("/openstack", who()).status == 404)


def test_direct_mode_address_moves_with_the_store(store: SqlStore) -> None:
    view = store_view(store, RICH, guest_ip="127.0.0.5")
    with running_api(store, api_settings(mode="direct")) as api:
        assert api.request("/openstack", source="127.0.0.8").status == 404
        port = view.ports[0].port
        fixed = (dataclasses.replace(port.fixed_ips[0], ip_address="127.0.0.8"),)
        with store.write() as w:
            w.put_port(dataclasses.replace(port, fixed_ips=fixed))
        assert wait_until(lambda: api.request("/openstack", source="127.0.0.8").status == 200)
        assert api.request("/openstack", source="127.0.0.5").status == 404


def test_warm_requests_do_not_load_or_render_again(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        api.request("/openstack", who())
        metrics = api.app.metrics
        renders, misses = metrics.renders.get(), metrics.cache_misses.get()
        for path in ["/openstack/latest/meta_data.json", "/latest/meta-data/", "/openstack"]:
            assert api.request(path, who()).status == 200
        assert (metrics.renders.get(), metrics.cache_misses.get()) == (renders, misses)
        assert metrics.cache_hits.get() >= 3


def test_concurrent_requests_for_a_cold_server_render_once(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda: statuses.append(api.request("/openstack", who()).status))
            for _ in range(16)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 16
        assert api.app.metrics.renders.get() == 1


# -- observability ------------------------------------------------------------


def test_healthz_and_metrics_live_on_the_admin_listener(store: SqlStore) -> None:
    store_view(store, RICH)
    with running_api(store, api_settings()) as api:
        api.request("/latest/meta-data/instance-id", who())
        assert api.request("/healthz", admin=True).status == 200
        metrics = api.request("/metrics", admin=True)
        assert metrics.status == 200
        text = metrics.body.decode()
        assert 'cloudseed_api_requests_total{family="ec2",status="200"} 1' in text
        assert "cloudseed_api_request_duration_seconds_bucket" in text
        # Read in bulk at start (api/prefetch.py): the first request is a hit.
        assert "cloudseed_api_cache_hits_total 1" in text
        assert "cloudseed_api_prefetched_servers_total 1" in text


def test_access_log_has_the_server_id_and_never_the_signature_or_token(store: SqlStore) -> None:
    store_view(store, RICH)
    read_fd, write_fd = os.pipe()
    log = AccessLog(write_fd)
    with running_api(store, api_settings(), access_log=log) as api:
        token = put_token(api, who()).body.decode()
        headers = {**who(), "X-aws-ec2-metadata-token": token}
        api.request("/latest/meta-data/instance-id", headers)
        api.call(log.flush)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        lines = [json.loads(line) for line in pipe.read().splitlines()]
    assert [line["status"] for line in lines] == [200, 200]
    assert all(line["server_id"] == RICH_ID for line in lines)
    text = json.dumps(lines)
    assert token not in text
    assert who()["X-Instance-ID-Signature"] not in text
    assert re.search(r"s3cret", text) is None
