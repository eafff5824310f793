"""The requests one booting VM makes: cloud-init's crawl, derived, not typed in.

cloud-init's OpenStack datasource (anchors §10.1) reads ``/openstack``, picks
2018-08-27 (the newest version it knows), reads five files of that version,
then crawls the EC2 tree under ``/latest/meta-data/`` the way its
``MetadataMaterializer`` does: a listing, then each sub-directory (children
first, with a trailing slash), then each leaf, turning ``0=keyname`` into
``0/openssh-key`` and skipping ``security-credentials``.

The crawl is the one cloud-init makes against **Nova** (the anchor every
headline ratio is measured against): Nova's ``latest`` EC2 tree is
2009-04-04, so the walk follows that version's listings, asked under
``/latest/``. cloudseed's ``latest`` lists more (``mac``, ``network/``), which
the crawl leaves out, so Nova, cloudseed and the reference servers answer
exactly the same request list, every one a 200.

``crawl_paths`` walks cloudseed's own renderer for a sample server, so the
crawl follows the tree the API really serves; ``crawl_documents`` gives the
bytes of each path, which the reference servers (nginx, raw httptools) serve.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from bench import fleet
from cloudseed.model import ServerView
from cloudseed.render import RenderOptions, Tree, normalise_path, render_tree

OPENSTACK_VERSION = "2018-08-27"
OPENSTACK_FILES = (
    "meta_data.json",
    "user_data",
    "vendor_data.json",
    "vendor_data2.json",
    "network_data.json",
)
EC2_START = "/latest/meta-data/"
# Nova's EC2 ``latest`` is 2009-04-04 (ours is newer, DECISIONS "Metadata API");
# its listings decide what the crawl asks.
NOVA_EC2_LATEST = "/2009-04-04/meta-data/"
# Stands in for the 512 random bytes the API splices into meta_data.json per
# response, so reference servers send a body of the same size.
_FIXED_SEED = base64.b64encode(bytes(512))


def render_options() -> RenderOptions:
    return RenderOptions(today=datetime.now(UTC).date(), static_vendordata=fleet.VENDOR_DATA)


def _body(tree: Tree, path: str) -> bytes:
    document = tree.lookup(normalise_path(path))
    if document is None:
        raise LookupError(f"the crawl asks for {path}, which the renderer does not serve")
    return document.with_seed(_FIXED_SEED)


def _ec2_crawl(tree: Tree, url: str, out: list[str]) -> None:
    out.append(url)
    children: list[str] = []
    leaves: list[str] = []
    for raw in _body(tree, url).decode().splitlines():
        field = raw.strip()
        name = field.rstrip("/")
        if not name or name == "security-credentials":
            continue
        if field.endswith("/"):
            if name not in children:
                children.append(name)
            continue
        ident, sep, _ = field.partition("=")
        leaves.append(f"{ident}/openssh-key" if sep and ident.isdigit() else name)
    for child in children:
        _ec2_crawl(tree, f"{url}{child}/", out)
    out.extend(url + leaf for leaf in leaves)


# Where a VM's own MAC goes in a crawl path (the load generator fills it in).
MAC_HOLE = "{}"


def crawl_paths(view: ServerView | None = None) -> list[str]:
    tree = render_tree(view or fleet.sample_view(), render_options())
    paths = ["/openstack"]
    paths += [f"/openstack/{OPENSTACK_VERSION}/{name}" for name in OPENSTACK_FILES]
    walked: list[str] = []
    _ec2_crawl(tree, NOVA_EC2_LATEST, walked)
    paths += [EC2_START + path.removeprefix(NOVA_EC2_LATEST) for path in walked]
    return paths


def crawl_templates() -> list[str]:
    """The crawl with each VM's MAC as ``MAC_HOLE`` (per-MAC EC2 paths differ per VM)."""
    mac = fleet.vm(0).mac
    return [path.replace(mac, MAC_HOLE) for path in crawl_paths()]


def crawl_documents(view: ServerView | None = None) -> dict[str, bytes]:
    """Each path of the crawl with the bytes the API answers (seed aside)."""
    view = view or fleet.sample_view()
    tree = render_tree(view, render_options())
    return {path: _body(tree, path) for path in crawl_paths(view)}
