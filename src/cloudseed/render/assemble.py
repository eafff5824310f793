"""``render_tree``: one server, every format and version, as ready documents.

Leaves first, from the format modules; listings are then derived from the
leaves; ``latest`` is an alias of the newest version with the same document
objects.
"""

from __future__ import annotations

from collections.abc import Collection

from cloudseed.model import ServerView
from cloudseed.render import ec2, openstack
from cloudseed.render.document import TEXT_PLAIN, Document
from cloudseed.render.options import RenderOptions
from cloudseed.render.tree import (
    EC2_ROOT,
    OPENSTACK_ROOT,
    Tree,
    TreeBuilder,
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
    listed_openstack_versions,
    openstack_has,
)

# Listed from Havana on even when no static vendor data is configured, in
# which case it answers 404: Nova does exactly this (anchors §1.2).
LISTED_EVEN_WHEN_ABSENT = "vendor_data.json"

# The directories above the meta-data keys, relative to ``ec2/<version>``.
_VERSION_DIRS = ("", "meta-data")


def render_tree(view: ServerView, options: RenderOptions) -> Tree:
    builder = TreeBuilder()
    _add_ec2(builder, view, options)
    _add_openstack(builder, view, options)
    return builder.build()


def _add_ec2(builder: TreeBuilder, view: ServerView, options: RenderOptions) -> None:
    builder.add_listing(EC2_ROOT, root_listing())
    everything = ec2.all_metadata(view, options)
    labels = ec2.listing_labels(view)
    # A top-level key's subtree is the same in every version that has it:
    # render it once, with the listings inside it, then pick per version.
    subtrees: dict[str, tuple[dict[str, Document], dict[str, Document]]] = {}
    for key, value in everything.items():
        bodies = ec2.leaves({key: value}, "meta-data")
        leaves = {path: builder.document(body, TEXT_PLAIN) for path, body in bodies.items()}
        inside = {}
        if isinstance(value, dict):
            inside = {
                path: builder.document(body, TEXT_PLAIN)
                for path, body in text_listings(bodies, labels).items()
                if path not in _VERSION_DIRS
            }
        subtrees[key] = (leaves, inside)
    user_data = view.server.user_data
    top_leaves = {} if user_data is None else {"user-data": builder.document(user_data, TEXT_PLAIN)}
    # Versions with the same keys show the same documents: merge each set once.
    rendered: dict[tuple[str, ...], tuple[dict[str, Document], dict[str, Document]]] = {}
    for version in EC2_VERSIONS:
        keys = tuple(ec2.select(everything, version))
        if keys not in rendered:
            leaves, listings = dict(top_leaves), {}
            for key in keys:
                leaves.update(subtrees[key][0])
                listings.update(subtrees[key][1])
            # One leaf per key is enough to derive the two listings above them.
            samples = [next(iter(subtrees[key][0])) for key in keys] + list(top_leaves)
            for path, body in text_listings(samples, labels).items():
                if path in _VERSION_DIRS:
                    listings[path] = builder.document(body, TEXT_PLAIN)
            rendered[keys] = (leaves, listings)
        for name in _names(version, EC2_NEWEST):
            builder.add_subtree(f"{EC2_ROOT}/{name}", *rendered[keys])


def _add_openstack(builder: TreeBuilder, view: ServerView, options: RenderOptions) -> None:
    for version, files in openstack.version_files(view, options).items():
        leaves = {
            name: body if isinstance(body, Document) else builder.document(*body)
            for name, body in files.items()
        }
        listing = builder.document(openstack_version_listing(version, files), TEXT_PLAIN)
        for name in _names(version, OPENSTACK_NEWEST):
            builder.add_subtree(f"{OPENSTACK_ROOT}/{name}", leaves, {"": listing})
    for key, content in openstack.content_files(view).items():
        path = f"{OPENSTACK_ROOT}/{openstack.CONTENT_DIR}/{key}"
        builder.add_leaf(path, builder.document(content, TEXT_PLAIN))
    # No listing for ``openstack/content``: Nova answers 404 there.
    listed = listing_body(listed_openstack_versions(options.today))
    builder.add_listing(OPENSTACK_ROOT, builder.document(listed, TEXT_PLAIN))


def _names(version: str, newest: str) -> tuple[str, ...]:
    # ``latest`` shares the newest version's document objects.
    return (version, LATEST) if version == newest else (version,)


def openstack_version_listing(version: str, present: Collection[str]) -> bytes:
    """The files of ``version`` in Nova's order: those present, plus
    ``vendor_data.json`` from Havana on whether present or not."""
    return listing_body(
        name
        for name in OPENSTACK_FILE_SINCE
        if name in present or (name == LISTED_EVEN_WHEN_ABSENT and openstack_has(name, version))
    )
