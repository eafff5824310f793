"""Golden files: one readable text file per (case, format, version).

Each file holds every document at or below ``<root>/<version>``, sorted by
path, each as a header (path, content type, byte count, seed offset) and the
exact body bytes. ``top.txt`` holds what sits outside any version. Run with
``UPDATE_GOLDEN=1`` to rewrite them; then read the diff against the anchors
before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloudseed.render import Tree
from cloudseed.render.versions import EC2_VERSIONS, OPENSTACK_VERSIONS

GOLDEN_DIR = Path(__file__).parents[1] / "unit" / "render" / "golden"
UPDATING = os.environ.get("UPDATE_GOLDEN") == "1"

# (file name relative to the case directory, path prefix it covers)
SECTIONS: tuple[tuple[str, str], ...] = (
    *((f"ec2/{v}.txt", f"ec2/{v}") for v in EC2_VERSIONS),
    *((f"openstack/{v}.txt", f"openstack/{v}") for v in OPENSTACK_VERSIONS),
)
TOP_FILE = "top.txt"


def covered_by_sections(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for _, p in SECTIONS)


def is_latest_alias(path: str) -> bool:
    return path.startswith(("ec2/latest", "openstack/latest"))


def dump(tree: Tree, paths: list[str]) -> bytes:
    out = bytearray()
    for path in sorted(paths):
        document = tree.lookup(path)
        assert document is not None, path
        out += f"=== {path}\n".encode()
        out += f"content-type: {document.content_type}\n".encode()
        if document.seed_offset is not None:
            out += f"seed-offset: {document.seed_offset}\n".encode()
        out += f"bytes: {len(document.body)}\n".encode()
        out += document.body + b"\n\n"
    return bytes(out)


def section_paths(tree: Tree, prefix: str) -> list[str]:
    return [p for p in tree.paths() if p == prefix or p.startswith(prefix + "/")]


def top_paths(tree: Tree) -> list[str]:
    return [p for p in tree.paths() if not covered_by_sections(p) and not is_latest_alias(p)]
