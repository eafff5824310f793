"""Paths, and the tree of documents one server shows.

A ``Tree`` maps a normalised path to a ready ``Document``; the API answers a
request with one dict lookup. Directory listings are derived from the leaves
when the tree is built (tinkerbell hegel's staticroute idea), so a listing can
never name something that is not there or miss something that is -- with one
Nova quirk, documented at ``assemble.openstack_version_listing``.

Path keys have no leading or trailing slash: ``ec2/2009-04-04/meta-data``,
``openstack/2018-08-27/meta_data.json``, ``openstack/content/0000``,
``openstack``. ``latest`` is a key segment of its own whose documents are the
very objects of the newest version.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping

from cloudseed.render.document import TEXT_PLAIN, Document, shared_document
from cloudseed.render.versions import EC2_VERSIONS, LATEST

EC2_ROOT = "ec2"
OPENSTACK_ROOT = "openstack"


def normalise_path(raw: str) -> str:
    """The tree key for a request path (already split from its query string).

    As Nova's ``lookup``: ``posixpath.normpath`` semantics (``//``, ``.`` and
    trailing slashes vanish; ``..`` stops at the root), and anything not under
    ``ec2`` or ``openstack`` is under ``ec2``, so ``/`` is ``ec2`` and
    ``/2009-04-04/meta-data/`` is ``ec2/2009-04-04/meta-data``. Unlike Nova,
    a leading ``//`` is just a slash. Percent-escapes are not decoded here.
    """
    path = posixpath.normpath("/" + raw.lstrip("/")).lstrip("/")
    if not path:
        return EC2_ROOT
    head = path.split("/", 1)[0]
    if head in (EC2_ROOT, OPENSTACK_ROOT):
        return path
    return f"{EC2_ROOT}/{path}"


def listing_body(items: Iterable[str]) -> bytes:
    # Nova's ec2_md_print: one item per line, no trailing newline.
    return "\n".join(items).encode("utf-8")


_ROOT_LISTING = Document.of(listing_body((*EC2_VERSIONS, LATEST)), TEXT_PLAIN)


def root_listing() -> Document:
    """``GET /`` (and ``/ec2``): the EC2 versions; the same for every server."""
    return _ROOT_LISTING


def join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def text_listings(leaf_paths: Iterable[str], labels: Mapping[str, str]) -> dict[str, bytes]:
    """EC2-style listings of every directory above the (relative) leaf paths,
    the top one under the key ``""``.

    A directory's listing is its children sorted by name, one per line, with
    ``/`` after subdirectories -- unless ``labels`` gives a child's whole
    line (EC2's ``0=keyname`` under ``public-keys``).
    """
    children: dict[str, dict[str, bool]] = {}
    for path in leaf_paths:
        parts = path.split("/")
        directory = ""
        for depth, name in enumerate(parts):
            children.setdefault(directory, {})[name] = depth < len(parts) - 1
            directory = join(directory, name)
    listings = {}
    for directory, entries in children.items():
        lines = [
            labels.get(join(directory, name)) or (name + "/" if entries[name] else name)
            for name in sorted(entries)
        ]
        listings[directory] = listing_body(lines)
    return listings


class Tree:
    """Every document of one server at one revision, by normalised path."""

    __slots__ = ("_documents", "_leaves")

    def __init__(self, leaves: Mapping[str, Document], listings: Mapping[str, Document]) -> None:
        self._leaves = dict(leaves)
        # Leaves win over listings only if a builder mixed them up; keep
        # ``_documents`` the single lookup table.
        self._documents = {**listings, **leaves}

    def lookup(self, normalised: str) -> Document | None:
        return self._documents.get(normalised)

    def leaves(self) -> Iterator[tuple[str, Document]]:
        """Every document that is not a listing (the config drive's files)."""
        return iter(self._leaves.items())

    def paths(self) -> Iterator[str]:
        """Every path, listings included."""
        return iter(self._documents)

    def __len__(self) -> int:
        return len(self._documents)

    def __contains__(self, normalised: object) -> bool:
        return normalised in self._documents


class TreeBuilder:
    """Collects leaves and listings; shares equal documents to save work."""

    __slots__ = ("leaves", "listings")

    def __init__(self) -> None:
        self.leaves: dict[str, Document] = {}
        self.listings: dict[str, Document] = {}

    def document(self, body: bytes, content_type: str) -> Document:
        # Many versions and servers show the same bytes (``instance-id`` is
        # the same in twelve EC2 versions); hash each distinct body once.
        return shared_document(body, content_type)

    def add_leaf(self, path: str, document: Document) -> None:
        self.leaves[path] = document

    def add_listing(self, path: str, document: Document) -> None:
        self.listings[path] = document

    def add_subtree(
        self, prefix: str, leaves: Mapping[str, Document], listings: Mapping[str, Document]
    ) -> None:
        """Add documents keyed relative to ``prefix`` (``""`` is ``prefix``)."""
        base = prefix + "/"
        for path, document in leaves.items():
            self.leaves[base + path if path else prefix] = document
        for path, document in listings.items():
            self.listings[base + path if path else prefix] = document

    def build(self) -> Tree:
        return Tree(self.leaves, self.listings)
