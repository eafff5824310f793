"""Paths, lookup, and listings derived from the leaves."""

from __future__ import annotations

import pytest
from tests.support.samples import BARE, BARE_OPTIONS, CASES, OUTSIDE_THE_TREE, RICH, RICH_OPTIONS

from cloudseed.render import Tree, normalise_path, render_tree, root_listing
from cloudseed.render.versions import EC2_NEWEST, EC2_VERSIONS, OPENSTACK_NEWEST


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "ec2"),
        ("", "ec2"),
        ("//", "ec2"),
        ("/2009-04-04/meta-data/", "ec2/2009-04-04/meta-data"),
        ("/ec2/2009-04-04/meta-data", "ec2/2009-04-04/meta-data"),
        ("2009-04-04/meta-data", "ec2/2009-04-04/meta-data"),
        ("//2009-04-04//meta-data//instance-id//", "ec2/2009-04-04/meta-data/instance-id"),
        ("/latest/meta-data/./instance-id", "ec2/latest/meta-data/instance-id"),
        ("/openstack", "openstack"),
        ("/openstack/", "openstack"),
        ("/openstack/latest/meta_data.json", "openstack/latest/meta_data.json"),
        ("/openstack//2018-08-27///network_data.json", "openstack/2018-08-27/network_data.json"),
        ("/openstack/content/0000", "openstack/content/0000"),
        # ``..`` cannot climb above the root...
        ("/../../etc/passwd", "ec2/etc/passwd"),
        ("/openstack/../../../openstack/latest", "openstack/latest"),
        # ...but may move between the two trees, as in Nova.
        ("/ec2/../openstack", "openstack"),
        # Percent-escapes are the caller's business; nothing is decoded here.
        ("/openstack/%2e%2e/latest", "openstack/%2e%2e/latest"),
        ("/latest/meta-data%2Finstance-id", "ec2/latest/meta-data%2Finstance-id"),
    ],
)
def test_normalise_path(raw: str, expected: str) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    OUTSIDE_THE_TREE,
)
def test_lookup_of_unknown_path_is_none(raw: str) -> None:
    assert render_tree(RICH, RICH_OPTIONS).lookup(normalise_path(raw)) is None


def test_equivalent_spellings_give_the_same_document() -> None:
    tree = render_tree(RICH, RICH_OPTIONS)
    spellings = ["/2009-04-04/meta-data/", "/ec2/2009-04-04/meta-data", "2009-04-04//meta-data/."]
    documents = {id(tree.lookup(normalise_path(s))) for s in spellings}
    assert len(documents) == 1
    assert None not in {tree.lookup(normalise_path(s)) for s in spellings}


def test_root_listing_is_the_ec2_versions_then_latest() -> None:
    assert root_listing().body.decode().split("\n") == [*EC2_VERSIONS, "latest"]
    assert root_listing().content_type == "text/plain; charset=UTF-8"
    assert render_tree(BARE, BARE_OPTIONS).lookup(normalise_path("/")) is root_listing()


@pytest.mark.parametrize("case", CASES)
def test_latest_shares_the_newest_versions_documents(case: str) -> None:
    view, options = CASES[case]
    tree = render_tree(view, options)
    for root, newest in (("ec2", EC2_NEWEST), ("openstack", OPENSTACK_NEWEST)):
        latest = [p for p in tree.paths() if p.startswith(f"{root}/latest")]
        assert latest
        for path in latest:
            concrete = path.replace(f"{root}/latest", f"{root}/{newest}", 1)
            assert tree.lookup(path) is tree.lookup(concrete), path


def _listing_items(tree: Tree, path: str) -> list[str]:
    document = tree.lookup(path)
    assert document is not None
    return document.body.decode().split("\n") if document.body else []


def _is_listing(tree: Tree, path: str) -> bool:
    return path not in dict(tree.leaves())


@pytest.mark.parametrize("case", CASES)
def test_every_listing_item_resolves(case: str) -> None:
    view, options = CASES[case]
    tree = render_tree(view, options)
    vendor_data_configured = options.static_vendordata is not None
    for path in tree.paths():
        if not _is_listing(tree, path):
            continue
        for item in _listing_items(tree, path):
            # ``0=<keyname>`` names the directory ``0``.
            name = item.split("=", 1)[0] if "=" in item else item.rstrip("/")
            child = f"{path}/{name}"
            if name == "vendor_data.json" and not vendor_data_configured:
                # Nova's quirk: listed from Havana on, 404 when not configured.
                assert tree.lookup(child) is None
                continue
            assert tree.lookup(child) is not None, f"{path} lists {item!r}"
            if path.startswith("ec2/") and "=" not in item:
                # EC2 listings mark directories with a slash, and only them.
                assert item.endswith("/") == _is_listing(tree, child), f"{path}: {item!r}"


@pytest.mark.parametrize("case", CASES)
def test_every_document_is_listed_by_its_parent(case: str) -> None:
    view, options = CASES[case]
    tree = render_tree(view, options)
    for path in tree.paths():
        parent, _, name = path.rpartition("/")
        if parent in ("", "openstack/content"):
            continue  # the two roots; content has no listing, as in Nova
        names = {item.split("=", 1)[0].rstrip("/") for item in _listing_items(tree, parent)}
        assert name in names, f"{parent} does not list {name}"


def test_leaves_exclude_listings_and_include_content_files() -> None:
    tree = render_tree(RICH, RICH_OPTIONS)
    leaves = dict(tree.leaves())
    assert "ec2/2009-04-04/meta-data" not in leaves
    assert "openstack/latest" not in leaves
    assert "openstack" not in leaves
    assert leaves["openstack/content/0000"].body == b"hello from cloudseed\n"
    assert "openstack/latest/meta_data.json" in leaves
    assert "ec2/latest/meta-data/instance-id" in leaves
    assert len(leaves) < len(tree)


def test_openstack_content_has_no_listing() -> None:
    tree = render_tree(RICH, RICH_OPTIONS)
    assert tree.lookup("openstack/content") is None
    assert tree.lookup("openstack/content/0001") is not None
