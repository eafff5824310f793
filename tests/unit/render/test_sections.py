"""Lazy sections: the same documents as the whole tree, one section at a time."""

from __future__ import annotations

import pytest
from tests.support.samples import CASES, OUTSIDE_THE_TREE, RICH, RICH_OPTIONS

from cloudseed.render import normalise_path, render_tree
from cloudseed.render.document import shared_document
from cloudseed.render.sections import SECTIONS, ServerDocuments, locate


@pytest.mark.parametrize("case", CASES)
def test_every_path_of_the_tree_is_the_same_document_lazily(case: str) -> None:
    view, options = CASES[case]
    tree = render_tree(view, options)
    lazy = ServerDocuments(view, options)
    for path in tree.paths():
        assert lazy.lookup(path) == tree.lookup(path), path


@pytest.mark.parametrize(
    "raw",
    OUTSIDE_THE_TREE,
)
def test_paths_outside_the_tree_are_none_lazily(raw: str) -> None:
    assert ServerDocuments(RICH, RICH_OPTIONS).lookup(normalise_path(raw)) is None


def test_a_lookup_renders_only_its_own_section() -> None:
    lazy = ServerDocuments(RICH, RICH_OPTIONS)
    assert lazy.lookup("openstack/2018-08-27/meta_data.json") is not None
    assert lazy.rendered("openstack/2018-08-27") is not None
    assert lazy.rendered("ec2/2021-03-23") is None
    assert 0 < len(lazy) < len(render_tree(RICH, RICH_OPTIONS)) / 10


def test_latest_locates_to_the_newest_version_section() -> None:
    assert locate("ec2/latest/meta-data") == ("ec2/2021-03-23", "meta-data")
    assert locate("openstack/latest") == ("openstack/2025-04-04", "")
    assert locate("openstack/content/0000") == ("openstack/content", "0000")
    assert locate("openstack") == ("openstack", "")
    assert locate("ec2/1999-01-01/meta-data") is None
    assert {section for section, _ in SECTIONS} >= {"ec2", "openstack", "openstack/content"}


def test_equal_bytes_are_one_document_across_servers() -> None:
    view, options = CASES["bare"]
    first = ServerDocuments(view, options).lookup("ec2/latest/meta-data/ami-manifest-path")
    second = ServerDocuments(RICH, RICH_OPTIONS).lookup("ec2/latest/meta-data/ami-manifest-path")
    assert first is second
    assert shared_document(b"FIXME", "text/plain; charset=UTF-8") is first
