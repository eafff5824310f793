"""The OpenStack tree: ``openstack/<version>/…`` and ``openstack/content/NNNN``.

Files and fields per version come from ``versions`` (anchors §1.2–1.3).
JSON is written as Nova writes it (``json.dumps`` defaults: ASCII, ``", "``
and ``": "``, keys in Nova's order), so a guest sees Nova's bytes.

Choices where Nova's data has no counterpart here:

- ``devices``: the tagged NICs, as Nova lists the NICs its libvirt driver
  recorded device metadata for (tagged or VLAN ones; there are no VLAN
  ports here). ``bus`` and ``address`` are ``none``, Nova's values for a
  device without a known bus: the renderer does not know guest PCI slots.
- Injected files (``files``, ``content/``) only when ``options.injected_files``.
- ``dedicated_cpus`` is ``[]``: there is no NUMA pinning here.
- ``network_config`` (the legacy injected template) is never rendered.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping

from cloudseed.model import ServerView
from cloudseed.render.document import APPLICATION_JSON, TEXT_HTML, TEXT_PLAIN, Document
from cloudseed.render.ec2 import fqdn
from cloudseed.render.network_data import build_network_data
from cloudseed.render.options import RenderOptions
from cloudseed.render.versions import OPENSTACK_FILE_SINCE, OPENSTACK_VERSIONS, openstack_has

# Nova: 512 random bytes, base64, fresh on every response.
RANDOM_SEED_BYTES = 512
RANDOM_SEED_KEY = "random_seed"
CONTENT_DIR = "content"

# A document body and media type, before it is interned as a Document.
Body = tuple[bytes, str]


def content_key(index: int) -> str:
    return f"{index:04d}"


def content_files(view: ServerView, options: RenderOptions) -> dict[str, bytes]:
    """Injected files by ``content/NNNN`` key, in the server's order."""
    if not options.injected_files:
        return {}
    return {content_key(i): f.content for i, f in enumerate(view.server.files)}


def meta_data_documents(
    view: ServerView, options: RenderOptions, versions: Collection[str] = OPENSTACK_VERSIONS
) -> dict[str, Document]:
    """``meta_data.json`` per concrete version (all, or ``versions``), with an
    empty ``random_seed`` (Grizzly+) whose position is recorded for the API
    to fill per response.

    The members every version shares are serialised once.
    """
    server = view.server
    common: dict[str, object] = {"uuid": server.id}
    if server.metadata:
        common["meta"] = dict(server.metadata)
    if server.files and options.injected_files:
        common["files"] = [
            {"path": f.path, "content_path": f"/{CONTENT_DIR}/{content_key(i)}"}
            for i, f in enumerate(server.files)
        ]
    if view.keypair is not None:
        keypair = view.keypair
        common["public_keys"] = {keypair.name: keypair.public_key}
        common["keys"] = [
            {"name": keypair.name, "type": keypair.type.value, "data": keypair.public_key}
        ]
    common["hostname"] = fqdn(server.hostname, options)
    common["name"] = server.name
    common["launch_index"] = server.launch_index
    common["availability_zone"] = server.availability_zone
    head = [_member(key, value) for key, value in common.items()]
    project = _member("project_id", server.project_id)
    devices = {
        # ``vf_trusted`` (Rocky+) leads each NIC's members, as in Nova.
        False: _member("devices", _nic_devices(view, vf_trusted=False)),
        True: _member("devices", _nic_devices(view, vf_trusted=True)),
    }
    no_cpus = _member("dedicated_cpus", [])

    documents = {}
    for version in versions:
        members = list(head)
        seed_at = None
        if openstack_has(RANDOM_SEED_KEY, version):
            seed_at = len(members)
            members.append(_member(RANDOM_SEED_KEY, ""))
        if openstack_has("project_id", version):
            members.append(project)
        if openstack_has("devices", version):
            members.append(devices[openstack_has("devices.vf_trusted", version)])
        if openstack_has("dedicated_cpus", version):
            members.append(no_cpus)
        documents[version] = _object_document(members, seed_at)
    return documents


def _member(key: str, value: object) -> str:
    return f"{json.dumps(key)}: {json.dumps(value)}"


def _object_document(members: list[str], seed_at: int | None) -> Document:
    """``{members}`` exactly as ``json.dumps`` would write the object.

    The seed offset is counted, not searched for, so it is exact even when
    user metadata happens to contain the text ``"random_seed": ""``.
    """
    body = ("{" + ", ".join(members) + "}").encode("ascii")
    seed_offset = None
    if seed_at is not None:
        before = 1 + sum(len(m) + 2 for m in members[:seed_at])
        seed_offset = before + len(members[seed_at]) - 1  # inside the quotes of ""
    return Document.of(body, APPLICATION_JSON, seed_offset)


def _nic_devices(view: ServerView, *, vf_trusted: bool) -> list[dict[str, object]]:
    """Nova's ``_get_device_metadata`` entries for the tagged ports, in
    Nova's member order."""
    devices: list[dict[str, object]] = []
    for pv in view.ports:
        if not pv.port.tag:
            continue
        device: dict[str, object] = {"vf_trusted": False} if vf_trusted else {}
        device.update(
            type="nic", mac=pv.port.mac_address, bus="none", address="none", tags=[pv.port.tag]
        )
        devices.append(device)
    return devices


def version_files(
    view: ServerView,
    options: RenderOptions,
    versions: Collection[str] = OPENSTACK_VERSIONS,
) -> dict[str, dict[str, Body | Document]]:
    """Per concrete version (all, or ``versions``), the files that exist, in
    Nova's listing order. Only the files those versions have are rendered."""
    user_data = view.server.user_data
    wanted = [
        name
        for name in OPENSTACK_FILE_SINCE
        if any(openstack_has(name, version) for version in versions)
    ]
    shared: dict[str, Body | None] = {
        name: _shared_file(name, view, options, user_data)
        for name in wanted
        if name != "meta_data.json"
    }
    metas = meta_data_documents(view, options, versions)
    files: dict[str, dict[str, Body | Document]] = {}
    for version in versions:
        present: dict[str, Body | Document] = {"meta_data.json": metas[version]}
        for name, body in shared.items():
            if body is not None and openstack_has(name, version):
                present[name] = body
        files[version] = present
    return files


def _shared_file(
    name: str, view: ServerView, options: RenderOptions, user_data: bytes | None
) -> Body | None:
    """A file whose bytes are the same in every version that has it."""
    if name == "user_data":
        return None if user_data is None else (user_data, TEXT_PLAIN)
    if name == "password":
        # Unset password: 200 with an empty body, as Nova.
        return view.password.encode("utf-8"), TEXT_HTML
    if name == "vendor_data.json":
        return None if options.static_vendordata is None else _json(options.static_vendordata)
    if name == "network_data.json":
        # Nova does not set a JSON type on network_data.json (anchors §1.2).
        return json.dumps(build_network_data(view)).encode("ascii"), TEXT_PLAIN
    if name == "vendor_data2.json":
        return _json(_vendor_data2(options))
    raise KeyError(name)


def _json(value: object) -> Body:
    return json.dumps(value, default=_frozen_to_plain).encode("ascii"), APPLICATION_JSON


def _frozen_to_plain(value: object) -> object:
    # Settings hand vendor data over frozen (MappingProxyType); JSON wants dicts.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"vendor data holds a {type(value).__name__}, which is not JSON")


def _vendor_data2(options: RenderOptions) -> dict[str, object]:
    merged: dict[str, object] = {}
    if options.static_vendordata is not None:
        merged["static"] = options.static_vendordata
    for name, result in options.dynamic_vendordata.items():
        # Nova drops a target that would overwrite a key already there.
        merged.setdefault(name, result)
    return merged
