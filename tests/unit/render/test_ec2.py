"""The EC2 tree: keys per version, formats, and Nova's quirks."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tests.support.samples import BARE, BARE_OPTIONS, RICH, RICH_OPTIONS, SSH_KEY, TODAY

from cloudseed.identity import IdentitySigner, generate_key
from cloudseed.model import ImdsOptions, ServerView
from cloudseed.render import RenderOptions, ec2_metadata_json, render_tree
from cloudseed.render.ec2 import ami_id, build_metadata, instance_id
from cloudseed.render.sections import ec2_section
from cloudseed.render.versions import EC2_SINCE, EC2_VERSIONS


def _get(path: str, view: ServerView = RICH, options: RenderOptions = RICH_OPTIONS) -> str:
    """The body at ``path`` as text; "<absent>" when there is no document."""
    document = render_tree(view, options).lookup(path)
    return ABSENT if document is None else document.body.decode()


ABSENT = "<absent>"


def test_instance_id_is_i_and_eight_hex_digits_of_the_ec2_id() -> None:
    assert _get("ec2/2009-04-04/meta-data/instance-id") == "i-0000002a"
    assert _get("ec2/2009-04-04/meta-data/instance-id", BARE, BARE_OPTIONS) == "i-00000001"


@pytest.mark.parametrize(
    ("image_id", "expected"),
    [
        ("0b3c5a2e-1d4f-4e6a-9b8c-7d6e5f4a3b2c", "ami-0b3c5a2e"),
        ("0B3C5A2E-1D4F-4E6A-9B8C-7D6E5F4A3B2C", "ami-0b3c5a2e"),
        ("", "ami-00000000"),
    ],
)
def test_ami_id_comes_from_the_image_uuid(image_id: str, expected: str) -> None:
    assert ami_id(image_id) == expected


def test_ami_id_of_a_non_uuid_image_is_a_stable_hash() -> None:
    assert ami_id("cirros") == ami_id("cirros")
    assert ami_id("cirros") != ami_id("ubuntu")
    assert len(ami_id("cirros")) == len("ami-00000000")


def test_hostname_has_the_dhcp_domain() -> None:
    for key in ("hostname", "local-hostname", "public-hostname"):
        assert _get(f"ec2/latest/meta-data/{key}") == "web-1.novalocal"


def test_hostname_is_bare_when_the_dhcp_domain_is_empty() -> None:
    options = dataclasses.replace(RICH_OPTIONS, dhcp_domain="")
    assert _get("ec2/latest/meta-data/hostname", RICH, options) == "web-1"
    assert json.loads(_get("openstack/latest/meta_data.json", RICH, options))["hostname"] == "web-1"


def test_public_keys_lists_index_equals_name_then_openssh_key() -> None:
    assert _get("ec2/2009-04-04/meta-data/public-keys") == "0=ops"
    assert _get("ec2/2009-04-04/meta-data/public-keys/0") == "openssh-key"
    assert _get("ec2/2009-04-04/meta-data/public-keys/0/openssh-key").startswith("ssh-ed25519 ")


def test_no_public_keys_without_a_key_pair() -> None:
    assert _get("ec2/2009-04-04/meta-data/public-keys", BARE, BARE_OPTIONS) == ABSENT
    listing = _get("ec2/2009-04-04/meta-data", BARE, BARE_OPTIONS)
    assert "public-keys/" not in listing.split("\n")


def test_version_listing_shows_user_data_only_when_present() -> None:
    assert _get("ec2/2009-04-04") == "meta-data/\nuser-data"
    assert _get("ec2/2009-04-04", BARE, BARE_OPTIONS) == "meta-data/"
    assert _get("ec2/2009-04-04/user-data", BARE, BARE_OPTIONS) == ABSENT
    assert _get("ec2/2009-04-04/user-data") == "#cloud-config\nhostname: web-1\n"


def test_meta_data_listing_is_sorted_with_slashes_on_directories() -> None:
    lines = _get("ec2/2009-04-04/meta-data").split("\n")
    assert lines == sorted(lines)
    assert "block-device-mapping/" in lines
    assert "placement/" in lines
    assert "instance-id" in lines
    assert not _get("ec2/2009-04-04/meta-data").endswith("\n")


@pytest.mark.parametrize("version", EC2_VERSIONS)
# ``tags`` is an opt-in per server: tested below.
@pytest.mark.parametrize(
    "key", sorted(set(EC2_SINCE) - {"user-data", "kernel-id", "ramdisk-id", "tags"}))
def test_meta_data_key_appears_from_the_version_that_introduced_it(key: str, version: str) -> None:
    data = build_metadata(RICH, version, RICH_OPTIONS)
    introduced = EC2_VERSIONS.index(version) >= EC2_VERSIONS.index(EC2_SINCE[key])
    assert (key in data) == introduced


@pytest.mark.parametrize(
    ("key", "since"),
    [
        ("local-hostname", "2007-01-19"),
        ("public-ipv4", "2007-01-19"),
        ("instance-type", "2007-08-29"),
        ("block-device-mapping", "2007-12-15"),
        ("placement", "2008-02-01"),
        ("instance-action", "2008-09-01"),
        ("mac", "2016-09-02"),
        ("network", "2016-09-02"),
    ],
)
def test_since_table_matches_nova_and_aws(key: str, since: str) -> None:
    assert EC2_SINCE[key] == since


def test_kernel_and_ramdisk_ids_are_never_shown() -> None:
    for key in ("kernel-id", "ramdisk-id"):
        assert _get(f"ec2/latest/meta-data/{key}") == ABSENT


def test_nova_versions_have_no_aws_network_keys() -> None:
    assert _get("ec2/2009-04-04/meta-data/mac") == ABSENT
    assert _get("ec2/2009-04-04/meta-data/network") == ABSENT
    assert _get("ec2/2016-09-02/meta-data/mac") == "fa:16:3e:00:00:01"


def test_interfaces_by_mac_describe_each_port() -> None:
    base = "ec2/latest/meta-data/network/interfaces/macs"
    assert _get(base) == "fa:16:3e:00:00:01/\nfa:16:3e:00:00:02/"
    assert _get(f"{base}/fa:16:3e:00:00:01/device-number") == "0"
    assert _get(f"{base}/fa:16:3e:00:00:01/public-ipv4s") == "203.0.113.10"
    assert _get(f"{base}/fa:16:3e:00:00:02/device-number") == "1"
    assert _get(f"{base}/fa:16:3e:00:00:02/local-ipv4s") == "192.168.50.10"
    assert _get(f"{base}/fa:16:3e:00:00:02/ipv6s") == "2001:db8:50::10"
    assert _get(f"{base}/fa:16:3e:00:00:02/subnet-ipv6-cidr-blocks") == "2001:db8:50::/64"
    # No floating IP on the second port: the key is absent, as on AWS.
    assert _get(f"{base}/fa:16:3e:00:00:02/public-ipv4s") == ABSENT


def test_bare_server_has_empty_addresses_and_no_network_keys() -> None:
    assert _get("ec2/latest/meta-data/local-ipv4", BARE, BARE_OPTIONS) == ""
    assert _get("ec2/latest/meta-data/public-ipv4", BARE, BARE_OPTIONS) == ""
    assert _get("ec2/latest/meta-data/mac", BARE, BARE_OPTIONS) == ABSENT
    assert _get("ec2/latest/meta-data/network", BARE, BARE_OPTIONS) == ABSENT


@pytest.mark.parametrize(
    ("ephemeral_gb", "swap_mb", "mapping"),
    [
        (0, 0, {"ami": "vda", "root": "/dev/vda"}),
        (5, 0, {"ami": "vda", "root": "/dev/vda", "ephemeral0": "/dev/vdb"}),
        (0, 512, {"ami": "vda", "root": "/dev/vda", "swap": "/dev/vdb"}),
        (5, 512, {"ami": "vda", "ephemeral0": "/dev/vdb", "root": "/dev/vda", "swap": "/dev/vdc"}),
    ],
)
def test_block_device_mapping_follows_the_flavor_disks(
    ephemeral_gb: int, swap_mb: int, mapping: dict[str, str]
) -> None:
    server = dataclasses.replace(RICH.server, ephemeral_gb=ephemeral_gb, swap_mb=swap_mb)
    view = dataclasses.replace(RICH, server=server)
    base = "ec2/2009-04-04/meta-data/block-device-mapping"
    assert _get(base, view) == "\n".join(sorted(mapping))
    for name, device in mapping.items():
        assert _get(f"{base}/{name}", view) == device


def test_nova_literals() -> None:
    assert _get("ec2/1.0/meta-data/ami-manifest-path") == "FIXME"
    assert _get("ec2/latest/meta-data/instance-action") == "none"
    assert _get("ec2/latest/meta-data/security-groups") == "default"
    assert _get("ec2/latest/meta-data/block-device-mapping/root") == "/dev/vda"
    assert _get("ec2/latest/meta-data/placement/availability-zone") == "zone-a"


def test_every_ec2_document_is_text_plain() -> None:
    tree = render_tree(RICH, RICH_OPTIONS)
    for path in tree.paths():
        if path.startswith("ec2"):
            document = tree.lookup(path)
            assert document is not None
            assert document.content_type == "text/plain; charset=UTF-8", path


def test_config_drive_json_is_the_same_data_as_the_text_tree() -> None:
    data = json.loads(ec2_metadata_json(RICH, "2009-04-04", RICH_OPTIONS))
    assert data["instance-id"] == "i-0000002a"
    assert data["ami-launch-index"] == 0
    assert data["security-groups"] == ["default"]
    # Nova drops the listing label ``_name`` from the drive's JSON.
    assert data["public-keys"] == {"0": {"openssh-key": SSH_KEY}}
    assert data["placement"] == {"availability-zone": "zone-a"}


def test_render_options_require_today() -> None:
    assert RenderOptions(today=TODAY).dhcp_domain == "novalocal"


def _tagged(metadata: dict[str, str], *, enabled: bool = True) -> ServerView:
    server = dataclasses.replace(RICH.server, metadata=metadata,
                                 imds=ImdsOptions(tags=enabled))
    return dataclasses.replace(RICH, server=server)


def test_tags_appear_only_when_the_server_enables_them() -> None:
    items = {"role": "web", "Team": "a b"}
    assert _get("ec2/latest/meta-data/tags/instance", _tagged(items, enabled=False)) == ABSENT
    assert "tags/" not in _get("ec2/latest/meta-data", _tagged(items, enabled=False))
    on = _tagged(items)
    assert "tags/" in _get("ec2/latest/meta-data", on).split("\n")
    assert _get("ec2/latest/meta-data/tags/instance", on) == "Team\nrole"
    assert _get("ec2/latest/meta-data/tags/instance/role", on) == "web"
    assert _get("ec2/latest/meta-data/tags/instance/Team", on) == "a b"
    # Nova's dated versions stay as Nova has them.
    assert _get("ec2/2009-04-04/meta-data/tags/instance", on) == ABSENT


def test_tag_keys_aws_cannot_serve_are_left_out() -> None:
    allowed = "a+b-c=d.e,f_g:h@i9"
    refused = ["with space", "a/b", ".", "..", "_index", "ü", "k" * 129, "semi;colon"]
    on = _tagged({allowed: "1", "k" * 128: "2", **dict.fromkeys(refused, "x")})
    assert _get("ec2/latest/meta-data/tags/instance", on).split("\n") == sorted(
        [allowed, "k" * 128])
    assert _get(f"ec2/latest/meta-data/tags/instance/{allowed}", on) == "1"
    # Nothing left: no tags directory at all.
    assert _get("ec2/latest/meta-data/tags/instance", _tagged({"a/b": "x"})) == ABSENT


def test_dynamic_identity_tree_needs_a_signer_and_a_version_nova_does_not_serve() -> None:
    view = RICH
    unsigned = RICH_OPTIONS
    signed = dataclasses.replace(RICH_OPTIONS,
                                 identity_signer=IdentitySigner(generate_key("test")))
    for version in EC2_VERSIONS:
        assert "dynamic/instance-identity/document" not in ec2_section(
            view, unsigned, version).leaves
        leaves = ec2_section(view, signed, version).leaves
        assert ("dynamic/instance-identity/document" in leaves) == (version >= "2016-09-02")
    document = json.loads(ec2_section(view, signed, "2021-03-23")
                          .leaves["dynamic/instance-identity/document"].body)
    assert document["instanceId"] == instance_id(view.server.ec2_id)
    assert document["accountId"] == view.server.project_id
