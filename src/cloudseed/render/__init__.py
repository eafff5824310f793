"""cloudseed.render: a server record in, every document a guest can fetch out.

Pure: no I/O, no clock, no logging. ``render_tree(view, options)`` returns a
``Tree`` of ready bytes for every EC2 and OpenStack version; the API answers
``tree.lookup(normalise_path(request_path))`` and the config drive writes
``tree.leaves()``.
"""

from cloudseed.render.assemble import render_tree
from cloudseed.render.document import APPLICATION_JSON, TEXT_PLAIN, Document
from cloudseed.render.ec2 import metadata_json as ec2_metadata_json
from cloudseed.render.openstack import RANDOM_SEED_BYTES
from cloudseed.render.options import RenderOptions
from cloudseed.render.tree import Tree, normalise_path, root_listing

__all__ = [
    "APPLICATION_JSON",
    "RANDOM_SEED_BYTES",
    "TEXT_PLAIN",
    "Document",
    "RenderOptions",
    "Tree",
    "ec2_metadata_json",
    "normalise_path",
    "render_tree",
    "root_listing",
]
