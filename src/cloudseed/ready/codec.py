"""One server's entry in the per-host ready map, as bytes: pure, no I/O.

An entry is what a worker needs to answer a guest without the store or the
renderer: the server's view (for the checks, and for a section that was not
rendered ahead) and the ready documents of the sections guests read at boot.
It is ``marshal`` of plain values -- tuples, dicts, str, bytes, int -- so
reading one builds no object beyond what the request touches:

``(FORMAT, fingerprint, revision, project_id, imds, view, documents, sections)``

* ``fingerprint``: what the documents were rendered with (``fingerprint``);
  a worker whose options differ (other settings, another identity key, another
  cloudseed version) treats the entry as absent.
* ``project_id`` and ``imds`` (``ImdsOptions`` as a tuple): what every request
  checks, readable without decoding the view;
* ``view``: marshal bytes of the ``ServerView`` as nested tuples in field order
  (``encode_view``), decoded only when needed (a section not rendered ahead,
  phone-home, an identity token) by types read from the model's annotations, so
  a field added to the model is carried without touching this module (and
  changes ``FORMAT`` via ``_LAYOUT``);
* ``documents``: marshal bytes of a tuple of distinct ``(body, content type,
  ETag, seed offset)`` -- a ``Document``'s fields, each once: half of a
  server's documents are the same in several sections (``ec2/latest`` and
  ``ec2/2009-04-04`` share most leaves), which halves the entry;
* ``sections``: ``{section id: marshal bytes of {path inside: index into
  documents}}``; a request decodes only its own section.

``marshal`` and not ``pickle``: loading it never runs code. The file is the
service's own (0600 in its 0700 data directory), as the store is.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import marshal
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, NamedTuple

from cloudseed import __version__
from cloudseed.model import ImdsOptions, ServerView
from cloudseed.render.document import Document
from cloudseed.render.options import RenderOptions


def _layout(tp: Any) -> str:
    """The model's shape: field names and types, recursively (changes ``FORMAT``)."""
    hints = typing.get_type_hints(tp)
    parts = []
    for f in dataclasses.fields(tp):
        hint = hints[f.name]
        parts.append(f"{f.name}:{hint}")
        for inner in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(inner):
                parts.append(_layout(inner))
    return f"{tp.__name__}({','.join(parts)})"


_LAYOUT = _layout(ServerView)
# Bumped by hand when the tuple above changes shape; the model's layout and the
# version of cloudseed are part of it, so an entry is never read by code that
# would misread it.
FORMAT = hashlib.sha256(f"3|{__version__}|{_LAYOUT}".encode()).hexdigest()[:16]


class Entry(NamedTuple):
    fingerprint: str
    revision: int
    project_id: str
    imds: tuple[Any, ...]
    view: bytes
    documents: bytes
    sections: dict[str, bytes]


def fingerprint(options: RenderOptions, sections: tuple[str, ...]) -> str:
    """What an entry's documents depend on besides the server: every render option
    but the date (which only the shared ``/openstack`` listing reads, never in an
    entry), the identity key, and which sections are rendered ahead."""
    signer = options.identity_signer
    described = json.dumps([
        FORMAT, options.dhcp_domain, options.static_vendordata, options.injected_files,
        options.region, getattr(signer, "kid", None), list(sections),
    ], sort_keys=True, default=_plain)
    return hashlib.sha256(described.encode()).hexdigest()[:32]


def _plain(value: object) -> object:
    return dict(value) if isinstance(value, Mapping) else str(value)


def pack(fingerprint_: str, revision: int, view: ServerView,
         sections: Mapping[str, Mapping[str, Document]]) -> bytes:
    """``revision``: the store snapshot the view was read at (every change up to it
    is in the entry)."""
    index: dict[tuple[bytes, str, str, int | None], int] = {}
    raw = {
        section: marshal.dumps({
            path: index.setdefault((d.body, d.content_type, d.etag, d.seed_offset), len(index))
            for path, d in documents.items()})
        for section, documents in sections.items()
    }
    server = view.server
    return marshal.dumps((FORMAT, fingerprint_, revision, server.project_id,
                          _encode(server.imds), encode_view(view), marshal.dumps(tuple(index)),
                          raw))


def unpack(blob: bytes) -> Entry | None:
    """The entry, or None when another format wrote it (an older cloudseed)."""
    try:
        # Our own renderer's bytes in a 0600 file (see the module's text).
        value = marshal.loads(blob)  # noqa: S302
    except (ValueError, EOFError, TypeError):
        return None
    if type(value) is not tuple or len(value) != len(Entry._fields) + 1 or value[0] != FORMAT:
        return None
    return Entry(*value[1:])


def document_table(documents: bytes) -> tuple[Document, ...]:
    """An entry's ``documents``, each a ``Document`` once."""
    raw: tuple[tuple[bytes, str, str, int | None], ...] = marshal.loads(documents)  # noqa: S302
    return tuple(Document(body, content_type, etag, seed)
                 for body, content_type, etag, seed in raw)


def section_documents(table: tuple[Document, ...], section: bytes) -> dict[str, Document]:
    """One section's documents from an entry's ``sections`` value."""
    paths: dict[str, int] = marshal.loads(section)  # noqa: S302 - see the module's text
    return {path: table[at] for path, at in paths.items()}


def decode_imds(value: tuple[Any, ...]) -> ImdsOptions:
    imds = _decoder(ImdsOptions)(value)
    assert isinstance(imds, ImdsOptions)
    return imds


# -- the view as nested tuples -------------------------------------------------


def encode_view(view: ServerView) -> bytes:
    return marshal.dumps(_encode(view))


def decode_view(value: bytes) -> ServerView:
    """An entry's ``view`` bytes back to the ``ServerView``."""
    view = _decoder(ServerView)(marshal.loads(value))  # noqa: S302 - see the module's text
    assert isinstance(view, ServerView)
    return view


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(_encode(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return tuple(_encode(item) for item in value)
    if isinstance(value, Mapping):
        return {key: _encode(item) for key, item in value.items()}
    return value


@functools.cache
def _decoder(tp: Any) -> Callable[[Any], Any]:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        parts = [_decoder(hints[f.name]) for f in dataclasses.fields(tp) if f.init]
        cls = tp
        return lambda value: cls(*[part(item) for part, item in zip(parts, value, strict=True)])
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [arg for arg in args if arg is not type(None)]
        decode = _decoder(inner)
        return lambda value: None if value is None else decode(value)
    if origin is tuple:
        decode = _decoder(args[0])
        return lambda value: tuple(decode(item) for item in value)
    if origin is Mapping or tp is Mapping:
        return lambda value: types.MappingProxyType(dict(value))
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp
    if tp in (str, int, bool, bytes, float):
        return _same
    raise TypeError(f"the ready map cannot carry a field of type {tp!r}")


def _same(value: Any) -> Any:
    return value


__all__ = ["FORMAT", "Entry", "decode_imds", "decode_view", "document_table", "encode_view",
           "fingerprint", "pack", "section_documents", "unpack"]
