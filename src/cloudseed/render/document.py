"""One servable document: ready bytes, their media type, their ETag.

``meta_data.json`` (Grizzly+) carries ``random_seed``, 512 fresh random bytes
per *response* (anchors §1.3). To keep rendering pure and cacheable, the
renderer writes ``"random_seed": ""`` and records where the base64 text
belongs; the API splices fresh bytes in per response with ``with_seed``. The
ETag covers the template, so it changes when the data changes and never
because of the seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# Nova's media types as webob sends them: webob adds its default charset to
# every ``text/*`` type and to no other, so Nova's plain text goes out as
# ``text/plain; charset=UTF-8`` and its JSON as bare ``application/json``.
# The charset matters beyond cosmetics: Neutron's metadata agent re-encodes a
# charset-less text body as ISO-8859-1, which corrupts UTF-8 user-data.
TEXT_PLAIN = "text/plain; charset=UTF-8"
APPLICATION_JSON = "application/json"
# The password GET: Nova's handler returns a bare string, which webob wraps
# in its default response type.
TEXT_HTML = "text/html; charset=UTF-8"

# Documents with equal bytes are one object, across servers as well as
# versions: most EC2 listings and many leaves (``ami-manifest-path``,
# ``instance-action``, vendor data) are the same for a whole fleet. The table
# is emptied when full, which only costs some sharing; its bound keeps the
# documents of servers long gone from being held forever.
MAX_SHARED_DOCUMENTS = 8192

# 128 bits of SHA-256 name a body uniquely enough for caching, and keep the
# header short on every response.
_ETAG_HEX_CHARS = 32


def strong_etag(body: bytes, content_type: str) -> str:
    """A strong, quoted ETag over the media type and the bytes."""
    digest = hashlib.sha256(content_type.encode("ascii") + b"\0" + body).hexdigest()
    return f'"{digest[:_ETAG_HEX_CHARS]}"'


@dataclass(frozen=True, slots=True)
class Document:
    body: bytes
    content_type: str
    etag: str
    # Byte offset in ``body`` where the base64 random seed goes (inside the
    # empty JSON string of ``random_seed``); None for every other document.
    seed_offset: int | None = None

    @classmethod
    def of(cls, body: bytes, content_type: str, seed_offset: int | None = None) -> Document:
        return cls(body, content_type, strong_etag(body, content_type), seed_offset)

    @property
    def needs_seed(self) -> bool:
        return self.seed_offset is not None

    def with_seed(self, seed_b64: bytes) -> bytes:
        """The body with ``seed_b64`` (base64 text, no quotes) spliced in.

        Documents without a seed return their body unchanged.
        """
        if self.seed_offset is None:
            return self.body
        offset = self.seed_offset
        return self.body[:offset] + seed_b64 + self.body[offset:]


_SHARED: dict[tuple[bytes, str], Document] = {}


def shared_document(body: bytes, content_type: str) -> Document:
    """``Document.of(body, content_type)``, the same object for the same bytes."""
    key = (body, content_type)
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= MAX_SHARED_DOCUMENTS:
            _SHARED.clear()
        found = _SHARED[key] = Document.of(body, content_type)
    return found
