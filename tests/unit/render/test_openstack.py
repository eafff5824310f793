"""The OpenStack tree: files and fields per version, types, seed, vendor data."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from datetime import date
from types import MappingProxyType
from typing import Any

import pytest
from tests.support.samples import BARE, BARE_OPTIONS, RICH, RICH_OPTIONS, SSH_KEY

from cloudseed.model import KeyPair, KeyType
from cloudseed.render import RANDOM_SEED_BYTES, Document, Tree, render_tree
from cloudseed.render.versions import (
    OPENSTACK_FIELD_SINCE,
    OPENSTACK_FILE_SINCE,
    OPENSTACK_VERSIONS,
    openstack_has,
)

VERSIONS_AND_LATEST = [*OPENSTACK_VERSIONS, "latest"]


def _rich() -> Tree:
    return render_tree(RICH, RICH_OPTIONS)


def _doc(tree: Tree, path: str) -> Document:
    document = tree.lookup(path)
    assert document is not None, path
    return document


def _meta(tree: Tree, version: str) -> dict[str, Any]:
    document = _doc(tree, f"openstack/{version}/meta_data.json")
    fresh = base64.b64encode(os.urandom(RANDOM_SEED_BYTES))
    parsed: dict[str, Any] = json.loads(document.with_seed(fresh))
    return parsed


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("meta_data.json", "application/json"),
        ("vendor_data.json", "application/json"),
        ("vendor_data2.json", "application/json"),
        # Nova never sets a JSON type on these (anchors §1.2).
        ("network_data.json", "text/plain; charset=UTF-8"),
        ("user_data", "text/plain; charset=UTF-8"),
        ("password", "text/html; charset=UTF-8"),
    ],
)
def test_content_types_are_novas(name: str, content_type: str) -> None:
    assert _doc(_rich(), f"openstack/latest/{name}").content_type == content_type


def test_listings_and_content_files_are_text_plain() -> None:
    tree = _rich()
    for path in ("openstack", "openstack/latest", "openstack/content/0000"):
        assert _doc(tree, path).content_type == "text/plain; charset=UTF-8"


@pytest.mark.parametrize(
    ("version", "listing"),
    [
        ("2012-08-10", ["meta_data.json", "user_data"]),
        ("2013-04-04", ["meta_data.json", "user_data", "password"]),
        ("2013-10-17", ["meta_data.json", "user_data", "password", "vendor_data.json"]),
        (
            "2015-10-15",
            ["meta_data.json", "user_data", "password", "vendor_data.json", "network_data.json"],
        ),
        (
            "2016-10-06",
            [
                "meta_data.json",
                "user_data",
                "password",
                "vendor_data.json",
                "network_data.json",
                "vendor_data2.json",
            ],
        ),
    ],
)
def test_version_listing_in_novas_order(version: str, listing: list[str]) -> None:
    assert _doc(_rich(), f"openstack/{version}").body.decode().split("\n") == listing


@pytest.mark.parametrize("version", VERSIONS_AND_LATEST)
@pytest.mark.parametrize("name", list(OPENSTACK_FILE_SINCE))
def test_file_exists_from_the_version_that_introduced_it(name: str, version: str) -> None:
    concrete = OPENSTACK_VERSIONS[-1] if version == "latest" else version
    present = _rich().lookup(f"openstack/{version}/{name}") is not None
    assert present == openstack_has(name, concrete)


@pytest.mark.parametrize("version", VERSIONS_AND_LATEST)
def test_user_data_is_absent_and_unlisted_without_user_data(version: str) -> None:
    tree = render_tree(BARE, BARE_OPTIONS)
    assert tree.lookup(f"openstack/{version}/user_data") is None
    assert "user_data" not in _doc(tree, f"openstack/{version}").body.decode().split("\n")


def test_user_data_is_served_raw() -> None:
    assert _doc(_rich(), "openstack/2012-08-10/user_data").body == RICH.server.user_data


def test_default_vendor_data_is_novas_empty_static_json() -> None:
    tree = render_tree(BARE, BARE_OPTIONS)
    assert _doc(tree, "openstack/latest/vendor_data.json").body == b"{}"
    assert _doc(tree, "openstack/latest/vendor_data2.json").body == b'{"static": {}}'


def test_vendor_data_is_listed_but_absent_without_static_provider() -> None:
    tree = render_tree(BARE, dataclasses.replace(BARE_OPTIONS, static_vendordata=None))
    assert "vendor_data.json" in _doc(tree, "openstack/latest").body.decode().split("\n")
    assert tree.lookup("openstack/latest/vendor_data.json") is None
    assert _doc(tree, "openstack/latest/vendor_data2.json").body == b"{}"


def test_vendor_data2_has_static_then_each_dynamic_target() -> None:
    tree = _rich()
    data = json.loads(_doc(tree, "openstack/latest/vendor_data2.json").body)
    assert list(data) == ["static", "inventory"]
    assert data["static"] == json.loads(_doc(tree, "openstack/latest/vendor_data.json").body)
    assert data["inventory"] == {"rack": "r12"}


def test_dynamic_target_named_static_does_not_replace_static() -> None:
    options = dataclasses.replace(
        RICH_OPTIONS, dynamic_vendordata=MappingProxyType({"static": {"evil": True}})
    )
    body = _doc(render_tree(RICH, options), "openstack/latest/vendor_data2.json").body
    assert "evil" not in json.loads(body)["static"]


def test_password_is_empty_when_unset() -> None:
    assert _doc(render_tree(BARE, BARE_OPTIONS), "openstack/latest/password").body == b""
    assert _doc(_rich(), "openstack/latest/password").body == RICH.password.encode()


def test_injected_files_are_left_out_unless_asked_for() -> None:
    tree = render_tree(RICH, dataclasses.replace(RICH_OPTIONS, injected_files=False))
    assert "files" not in _meta(tree, "latest")
    assert tree.lookup("openstack/content/0000") is None


def test_injected_files_are_listed_in_meta_data_and_served_as_content() -> None:
    tree = _rich()
    files = _meta(tree, "latest")["files"]
    assert files == [
        {"path": "/etc/motd", "content_path": "/content/0000"},
        {"path": "/root/notes.txt", "content_path": "/content/0001"},
    ]
    for entry, injected in zip(files, RICH.server.files, strict=True):
        assert _doc(tree, "openstack" + entry["content_path"]).body == injected.content


@pytest.mark.parametrize("version", VERSIONS_AND_LATEST)
def test_meta_data_common_fields(version: str) -> None:
    data = _meta(_rich(), version)
    assert data["uuid"] == RICH.server.id
    assert data["name"] == "web-1"
    assert data["hostname"] == "web-1.novalocal"
    assert data["launch_index"] == 0
    assert data["availability_zone"] == "zone-a"
    assert data["meta"] == {"role": "web", "tier": "frontend"}
    assert data["public_keys"] == {"ops": SSH_KEY}
    assert data["keys"] == [{"name": "ops", "type": "ssh", "data": SSH_KEY}]


def test_x509_key_type_is_passed_through() -> None:
    keypair = KeyPair(name="cert", type=KeyType.X509, public_key="-----BEGIN...", fingerprint="f")
    view = dataclasses.replace(RICH, keypair=keypair)
    assert _meta(render_tree(view, RICH_OPTIONS), "latest")["keys"][0]["type"] == "x509"


def test_bare_meta_data_has_no_optional_fields() -> None:
    data = _meta(render_tree(BARE, BARE_OPTIONS), "latest")
    for absent in ("meta", "files", "public_keys", "keys", "network_config"):
        assert absent not in data


@pytest.mark.parametrize("version", VERSIONS_AND_LATEST)
@pytest.mark.parametrize("field", ["random_seed", "project_id", "devices", "dedicated_cpus"])
def test_meta_data_field_exists_from_its_version(field: str, version: str) -> None:
    concrete = OPENSTACK_VERSIONS[-1] if version == "latest" else version
    assert (field in _meta(_rich(), version)) == openstack_has(field, concrete)


def test_field_since_table_matches_nova() -> None:
    assert OPENSTACK_FIELD_SINCE["random_seed"] == "2013-04-04"
    assert OPENSTACK_FIELD_SINCE["project_id"] == "2015-10-15"
    assert OPENSTACK_FIELD_SINCE["devices"] == "2016-06-30"
    assert OPENSTACK_FIELD_SINCE["dedicated_cpus"] == "2020-10-14"


@pytest.mark.parametrize("version", ["2016-06-30", "2016-10-06", "2017-02-22"])
def test_only_the_tagged_nic_is_a_device_before_rocky(version: str) -> None:
    assert _meta(_rich(), version)["devices"] == [
        {
            "type": "nic",
            "mac": "fa:16:3e:00:00:02",
            "bus": "none",
            "address": "none",
            "tags": ["storage"],
        }
    ]


@pytest.mark.parametrize("version", ["2018-08-27", "2020-10-14", "2025-04-04", "latest"])
def test_only_the_tagged_nic_is_a_device_from_rocky_with_vf_trusted_first(version: str) -> None:
    document = _doc(_rich(), f"openstack/{version}/meta_data.json").body
    assert (
        b'"devices": [{"vf_trusted": false, "type": "nic", "mac": "fa:16:3e:00:00:02", '
        b'"bus": "none", "address": "none", "tags": ["storage"]}]'
    ) in document


@pytest.mark.parametrize("version", VERSIONS_AND_LATEST)
def test_seed_splices_into_valid_json_with_512_random_bytes(version: str) -> None:
    document = _doc(_rich(), f"openstack/{version}/meta_data.json")
    if version == "2012-08-10":
        assert document.seed_offset is None
        assert document.with_seed(b"AAAA") == document.body
        return
    seed = os.urandom(RANDOM_SEED_BYTES)
    data = json.loads(document.with_seed(base64.b64encode(seed)))
    assert base64.b64decode(data["random_seed"], validate=True) == seed
    assert json.loads(document.body)["random_seed"] == ""


def test_etag_ignores_the_seed_and_follows_the_data() -> None:
    first = _doc(_rich(), "openstack/latest/meta_data.json")
    again = _doc(_rich(), "openstack/latest/meta_data.json")
    assert first.etag == again.etag
    assert first.etag.startswith('"')
    assert first.etag.endswith('"')
    changed = dataclasses.replace(RICH, server=dataclasses.replace(RICH.server, name="web-2"))
    assert _doc(render_tree(changed, RICH_OPTIONS), "openstack/latest/meta_data.json").etag != (
        first.etag
    )


def test_seed_offset_is_exact_when_metadata_mimics_the_seed() -> None:
    tricky = MappingProxyType({"random_seed": "", "x": '"random_seed": ""'})
    view = dataclasses.replace(RICH, server=dataclasses.replace(RICH.server, metadata=tricky))
    document = _doc(render_tree(view, RICH_OPTIONS), "openstack/latest/meta_data.json")
    data = json.loads(document.with_seed(b"c2VlZA=="))
    assert data["random_seed"] == "c2VlZA=="
    assert data["meta"] == dict(tricky)


def test_openstack_listing_hides_future_versions_but_they_answer() -> None:
    options = dataclasses.replace(RICH_OPTIONS, today=date(2019, 6, 1))
    tree = render_tree(RICH, options)
    listed = _doc(tree, "openstack").body.decode().split("\n")
    assert listed[-1] == "latest"
    assert "2018-08-27" in listed
    assert "2020-10-14" not in listed
    assert "2025-04-04" not in listed
    assert tree.lookup("openstack/2025-04-04/meta_data.json") is not None


def test_openstack_listing_shows_a_version_on_its_own_date() -> None:
    options = dataclasses.replace(RICH_OPTIONS, today=date(2025, 4, 4))
    listed = _doc(render_tree(RICH, options), "openstack").body.decode().split("\n")
    assert listed[-2:] == ["2025-04-04", "latest"]
