"""Every document of every version, byte for byte, against hand-checked files."""

from __future__ import annotations

import difflib

import pytest
from tests.support import goldens
from tests.support.samples import CASES

from cloudseed.render import render_tree

PARAMS = [
    pytest.param(case, name, prefix, id=f"{case}:{name}")
    for case in CASES
    for name, prefix in (*goldens.SECTIONS, (goldens.TOP_FILE, None))
]


@pytest.mark.parametrize(("case", "name", "prefix"), PARAMS)
def test_documents_match_golden_file(case: str, name: str, prefix: str | None) -> None:
    view, options = CASES[case]
    tree = render_tree(view, options)
    paths = goldens.top_paths(tree) if prefix is None else goldens.section_paths(tree, prefix)
    actual = goldens.dump(tree, paths)
    golden = goldens.GOLDEN_DIR / case / name
    if goldens.UPDATING:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(actual)
    expected = golden.read_bytes()
    if actual != expected:
        diff = difflib.unified_diff(
            expected.decode(errors="replace").splitlines(),
            actual.decode(errors="replace").splitlines(),
            str(golden),
            "rendered",
            lineterm="",
        )
        pytest.fail("\n".join(diff))


@pytest.mark.parametrize("case", CASES)
def test_golden_files_cover_every_path_but_latest(case: str) -> None:
    view, options = CASES[case]
    tree = render_tree(view, options)
    content = {p for p in tree.paths() if p.startswith("openstack/content/")}
    assert set(goldens.top_paths(tree)) == {"ec2", "openstack", *content}
