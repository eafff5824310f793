"""``render_tree``: one server, every format and version, as ready documents.

Every section of ``sections.py`` at once (the config drive and tests want
the whole tree; the API renders section by section). ``latest`` is an alias
of the newest version with the same document objects.
"""

from __future__ import annotations

from cloudseed.model import ServerView
from cloudseed.render.options import RenderOptions
from cloudseed.render.sections import (
    LISTED_EVEN_WHEN_ABSENT,
    SECTIONS,
    openstack_version_listing,
    render_section,
)
from cloudseed.render.tree import Tree, TreeBuilder

__all__ = ["LISTED_EVEN_WHEN_ABSENT", "openstack_version_listing", "render_tree"]


def render_tree(view: ServerView, options: RenderOptions) -> Tree:
    builder = TreeBuilder()
    for section, directories in SECTIONS:
        rendered = render_section(view, options, section)
        for directory in directories:
            builder.add_subtree(directory, rendered.leaves, rendered.listings)
    return builder.build()
