"""A server's documents one section at a time: the unit of lazy rendering.

A section is everything under one version directory -- ``ec2/<version>``,
``openstack/<version>`` -- plus ``openstack/content`` and the two version
listings (``ec2``, ``openstack``). ``locate`` maps a normalised path to its
section and its path inside it; ``render_section`` renders exactly one
section. ``render_tree`` (assemble.py) is every section; the API renders a
section the first time a guest asks for one of its paths
(``ServerDocuments``), because a guest reads one or two versions of the 23.

``latest`` is not a section of its own: it locates to the newest version's
section, so both spellings answer with the same document objects.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cloudseed.model import ServerView
from cloudseed.render import ec2, openstack
from cloudseed.render.document import TEXT_PLAIN, Document, shared_document
from cloudseed.render.options import RenderOptions
from cloudseed.render.tree import (
    EC2_ROOT,
    OPENSTACK_ROOT,
    listing_body,
    root_listing,
    text_listings,
)
from cloudseed.render.versions import (
    EC2_NEWEST,
    EC2_VERSIONS,
    LATEST,
    OPENSTACK_FILE_SINCE,
    OPENSTACK_NEWEST,
    OPENSTACK_VERSIONS,
    listed_openstack_versions,
    openstack_has,
)

# Listed from Havana on even when no static vendor data is configured, in
# which case it answers 404: Nova does exactly this (anchors §1.2).
LISTED_EVEN_WHEN_ABSENT = "vendor_data.json"
CONTENT_SECTION = f"{OPENSTACK_ROOT}/{openstack.CONTENT_DIR}"

# The directories above the meta-data keys, relative to ``ec2/<version>``.
_VERSION_DIRS = ("", "meta-data")


@dataclass(frozen=True, slots=True)
class Section:
    """One section's documents by path relative to the section (``""`` is
    the section's own directory)."""

    leaves: Mapping[str, Document]
    listings: Mapping[str, Document]


# Path segment after the root → section id; ``latest`` → the newest version.
_EC2_SECTIONS: dict[str, str] = {
    **{v: f"{EC2_ROOT}/{v}" for v in EC2_VERSIONS},
    LATEST: f"{EC2_ROOT}/{EC2_NEWEST}",
}
_OPENSTACK_SECTIONS: dict[str, str] = {
    **{v: f"{OPENSTACK_ROOT}/{v}" for v in OPENSTACK_VERSIONS},
    LATEST: f"{OPENSTACK_ROOT}/{OPENSTACK_NEWEST}",
    openstack.CONTENT_DIR: CONTENT_SECTION,
}
_ROOT_SECTIONS = {EC2_ROOT: _EC2_SECTIONS, OPENSTACK_ROOT: _OPENSTACK_SECTIONS}

# Every section, in the order ``render_tree`` adds them, each with the
# directories it is shown under (a version and, for the newest, ``latest``).
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (EC2_ROOT, (EC2_ROOT,)),
    *(
        (
            f"{EC2_ROOT}/{v}",
            (f"{EC2_ROOT}/{v}", *((f"{EC2_ROOT}/{LATEST}",) if v == EC2_NEWEST else ())),
        )
        for v in EC2_VERSIONS
    ),
    *(
        (
            f"{OPENSTACK_ROOT}/{v}",
            (
                f"{OPENSTACK_ROOT}/{v}",
                *((f"{OPENSTACK_ROOT}/{LATEST}",) if v == OPENSTACK_NEWEST else ()),
            ),
        )
        for v in OPENSTACK_VERSIONS
    ),
    (CONTENT_SECTION, (CONTENT_SECTION,)),
    (OPENSTACK_ROOT, (OPENSTACK_ROOT,)),
)


def locate(normalised: str) -> tuple[str, str] | None:
    """``(section id, path inside it)`` for a normalised path; None when no
    section holds it (an unknown version)."""
    root, _, rest = normalised.partition("/")
    if not rest:
        return (root, "") if root in _ROOT_SECTIONS else None
    sections = _ROOT_SECTIONS.get(root)
    if sections is None:
        return None
    version, _, inside = rest.partition("/")
    section = sections.get(version)
    if section is None:
        return None
    return section, inside


def render_section(view: ServerView, options: RenderOptions, section: str) -> Section:
    """The documents of one section (an id from ``locate`` or ``SECTIONS``)."""
    if section == EC2_ROOT:
        return Section({}, {"": root_listing()})
    if section == OPENSTACK_ROOT:
        listed = listing_body(listed_openstack_versions(options.today))
        return Section({}, {"": shared_document(listed, TEXT_PLAIN)})
    if section == CONTENT_SECTION:
        # No listing for ``openstack/content``: Nova answers 404 there.
        return Section(
            {
                sys.intern(key): shared_document(content, TEXT_PLAIN)
                for key, content in openstack.content_files(view, options).items()
            },
            {},
        )
    root, _, version = section.partition("/")
    if root == EC2_ROOT:
        return ec2_section(view, options, version)
    if root == OPENSTACK_ROOT:
        return openstack_section(view, options, version)
    raise KeyError(section)


def ec2_section(view: ServerView, options: RenderOptions, version: str) -> Section:
    """``ec2/<version>``: the meta-data leaves, user-data, and every listing
    derived from them."""
    data = ec2.select(ec2.all_metadata(view, options), version)
    bodies = ec2.leaves(data, "meta-data")
    user_data = view.server.user_data
    if user_data is not None:
        bodies["user-data"] = user_data
    bodies |= ec2.identity_files(view, options, version)
    leaves = {sys.intern(path): shared_document(body, TEXT_PLAIN) for path, body in bodies.items()}
    listings = {
        sys.intern(path): shared_document(body, TEXT_PLAIN)
        for path, body in text_listings(bodies, ec2.listing_labels(view)).items()
    }
    return Section(leaves, listings)


def openstack_section(view: ServerView, options: RenderOptions, version: str) -> Section:
    """``openstack/<version>``: its files and their listing."""
    files = openstack.version_files(view, options, (version,))[version]
    leaves = {
        name: body if isinstance(body, Document) else shared_document(*body)
        for name, body in files.items()
    }
    listing = shared_document(openstack_version_listing(version, files), TEXT_PLAIN)
    return Section(leaves, {"": listing})


def openstack_version_listing(version: str, present: Collection[str]) -> bytes:
    """The files of ``version`` in Nova's order: those present, plus
    ``vendor_data.json`` from Havana on whether present or not."""
    return listing_body(
        name
        for name in OPENSTACK_FILE_SINCE
        if name in present or (name == LISTED_EVEN_WHEN_ABSENT and openstack_has(name, version))
    )


class ServerDocuments:
    """One server's documents, each section rendered on first lookup.

    Holds the view and options it renders from and the sections rendered so
    far; documents are shared with every other server that has the same
    bytes (``shared_document``). Not thread-safe; lookups of a rendered
    section are one dict lookup each.
    """

    __slots__ = ("_options", "_sections", "_view")

    @property
    def view(self) -> ServerView:
        """What the sections render from."""
        assert self._view is not None
        return self._view


    def __init__(self, view: ServerView | None, options: RenderOptions) -> None:
        # None: a subclass provides ``view`` when a section is first rendered.
        self._view = view
        self._options = options
        self._sections: dict[str, dict[str, Document]] = {}

    def section(self, section: str) -> dict[str, Document]:
        """Every document of ``section`` by relative path, rendering it if needed."""
        documents = self._sections.get(section)
        if documents is None:
            rendered = render_section(self.view, self._options, section)
            # Leaves win over listings, as in ``Tree``.
            documents = self._sections[section] = {**rendered.listings, **rendered.leaves}
        return documents

    def rendered(self, section: str) -> dict[str, Document] | None:
        """``section``'s documents if already rendered, else None."""
        return self._sections.get(section)

    def lookup(self, normalised: str) -> Document | None:
        located = locate(normalised)
        if located is None:
            return None
        return self.section(located[0]).get(located[1])

    def __len__(self) -> int:
        """Documents rendered so far."""
        return sum(len(documents) for documents in self._sections.values())
