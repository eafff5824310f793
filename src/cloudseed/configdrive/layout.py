"""Nova's config drive layout, from the same rendered tree the HTTP API serves.

Nova's ``metadata_for_config_drive`` walks the HTTP lookup (anchors §1.12,
STYLE 6); we take the leaves of ``render_tree`` so that every file on the
drive is byte-for-byte the document a guest would GET, ``random_seed`` aside:

- ``openstack/<version>/`` for every OpenStack version and ``latest``: each
  leaf the renderer gives there (so each file appears from the version that
  introduced it), except ``password``, which the guest writes over HTTP and
  is never on a drive;
- ``openstack/content/NNNN``: the injected files;
- ``ec2/2009-04-04/`` and ``ec2/latest/``: ``meta-data.json`` (the EC2
  meta-data as one JSON, which only drives have) and ``user-data`` when the
  server has one. Nova's default ``config_drive_skip_versions`` keeps only
  2009-04-04; ``latest`` is our HTTP ``latest`` (the newest EC2 version), so
  the drive and the API agree on what ``latest`` means.

``meta_data.json`` gets the drive's derived seed (``seed.random_seed_b64``)
where the API would splice a fresh one. ``DriveContent.digest`` identifies
everything else on the drive, so the seed can be derived from what the drive
says rather than from when the store last changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cloudseed.configdrive.seed import random_seed_b64
from cloudseed.model import ServerView
from cloudseed.render import Document, RenderOptions, ec2_metadata_json, render_tree
from cloudseed.render.tree import EC2_ROOT, OPENSTACK_ROOT
from cloudseed.render.versions import LATEST, resolve_ec2

# The EC2 versions on a drive: Nova's default skips every other one.
EC2_DRIVE_VERSIONS: tuple[str, ...] = ("2009-04-04", LATEST)
EC2_METADATA_JSON = "meta-data.json"
EC2_METADATA_CONTENT_TYPE = "application/json"
EC2_USER_DATA = "user-data"
# Served over HTTP only: the guest posts its encrypted password there.
OPENSTACK_HTTP_ONLY = frozenset({"password"})


@dataclass(frozen=True)
class DriveContent:
    """A drive's documents before the seed is spliced in, by path, sorted."""

    documents: Mapping[str, Document]

    def digest(self) -> bytes:
        """SHA-256 of every path and seedless body: equal digests, equal drives."""
        digest = hashlib.sha256()
        for path, document in self.documents.items():
            # Lengths first, so no path/body boundary can be shifted.
            for part in (path.encode("utf-8"), document.body):
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
        return digest.digest()

    def files(self, seed: bytes) -> dict[str, bytes]:
        """The drive's files with ``seed`` in ``meta_data.json``."""
        seed_b64 = random_seed_b64(seed)
        return {path: document.with_seed(seed_b64) for path, document in self.documents.items()}


def drive_content(view: ServerView, options: RenderOptions) -> DriveContent:
    """``view``'s drive documents, rendered once, seed not yet chosen."""
    return layout(render_tree(view, options).leaves(), view, options)


def drive_files(view: ServerView, options: RenderOptions, seed: bytes) -> dict[str, bytes]:
    """Every file of ``view``'s config drive, by path (``openstack/latest/meta_data.json``)."""
    return drive_content(view, options).files(seed)


def layout(
    leaves: Iterable[tuple[str, Document]], view: ServerView, options: RenderOptions
) -> DriveContent:
    """The drive's documents from rendered ``leaves``."""
    documents: dict[str, Document] = {}
    for version in EC2_DRIVE_VERSIONS:
        concrete = resolve_ec2(version)
        assert concrete is not None
        body = ec2_metadata_json(view, concrete, options)
        documents[f"{EC2_ROOT}/{version}/{EC2_METADATA_JSON}"] = Document.of(
            body, EC2_METADATA_CONTENT_TYPE
        )
    for path, document in leaves:
        if is_drive_leaf(path):
            documents[path] = document
    return DriveContent(dict(sorted(documents.items())))


def is_drive_leaf(path: str) -> bool:
    """Whether a rendered leaf goes on the drive as it is."""
    root, _, rest = path.partition("/")
    if root == OPENSTACK_ROOT:
        return rest.rpartition("/")[2] not in OPENSTACK_HTTP_ONLY
    if root == EC2_ROOT:
        version, _, name = rest.partition("/")
        return version in EC2_DRIVE_VERSIONS and name == EC2_USER_DATA
    return False
