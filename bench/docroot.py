"""The crawl's documents on disk, laid out so nginx can serve them statically.

A metadata path can be both a document and a directory (``/openstack`` is a
listing and the parent of ``/openstack/2018-08-27/``), which a plain file tree
cannot hold. Each path's body therefore lives in a file named ``_`` inside a
directory named after the path, and nginx maps ``$uri`` to ``$uri/_``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

BODY_NAME = "_"


def body_file(root: Path, path: str) -> Path:
    """Where the body of ``path`` lives (a trailing slash maps to the same place)."""
    return root / path.strip("/") / BODY_NAME


def write_docroot(root: Path, files: Mapping[str, bytes]) -> None:
    for path, body in files.items():
        target = body_file(root, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    # Written with the listing of paths, so a reader gets the exact request
    # targets back (with or without their trailing slash).
    (root / "paths.txt").write_text("".join(f"{p}\n" for p in files))


def read_docroot(root: Path) -> dict[str, bytes]:
    paths = (root / "paths.txt").read_text().split()
    return {p: body_file(root, p).read_bytes() for p in paths}
