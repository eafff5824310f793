"""Documents as ready HTTP answers: each head encoded once, not per request.

A warm 200 is then the prepared response of its document, which the HTTP
core sends as head + ``Connection`` + body; only ``meta_data.json`` gets a
new body per response (its random seed), under the same head, since the
seed's length never changes.

Answers are keyed by document identity. Each entry holds its document, so
an id cannot be reused while its entry exists; documents are shared across
servers (``render.shared_document``), so most answers are shared too.
"""

from __future__ import annotations

import binascii
import os

from cloudseed.http.message import Response
from cloudseed.http.server import PreparedResponse, prepare_response
from cloudseed.render import RANDOM_SEED_BYTES, Document

# Random seeds are read from the kernel this many at a time: one getrandom
# call per response cost more than the rest of the answer. Every seed is
# still fresh bytes used once, never reused or derived.
SEEDS_PER_READ = 32
# Bounded because unique documents (a server's hostname, its meta_data.json)
# pass through too; emptied when full, which costs one re-encoding each.
MAX_PREPARED_ANSWERS = 16384


class Answers:
    __slots__ = ("_not_modified", "_ok", "_seed_at", "_seeds")

    def __init__(self) -> None:
        self._ok: dict[int, tuple[Document, PreparedResponse]] = {}
        self._not_modified: dict[int, tuple[Document, PreparedResponse]] = {}
        self._seeds = memoryview(b"")
        self._seed_at = 0

    def respond(self, document: Document, if_none_match: str | None) -> Response:
        """The answer to a GET of ``document``: 304 when ``If-None-Match``
        names its ETag, else 200 with its body (a fresh seed if it has one)."""
        if if_none_match is not None and etag_matches(if_none_match, document.etag):
            return self._prepared(self._not_modified, document, 304, b"")
        answer = self._prepared(self._ok, document, 200, document.body)
        if document.seed_offset is None:
            return answer
        return answer.with_body(document.with_seed(self._seed()))

    def _seed(self) -> bytes:
        """Base64 of ``RANDOM_SEED_BYTES`` fresh random bytes."""
        at = self._seed_at
        if at >= len(self._seeds):
            self._seeds = memoryview(os.urandom(RANDOM_SEED_BYTES * SEEDS_PER_READ))
            at = 0
        self._seed_at = at + RANDOM_SEED_BYTES
        return binascii.b2a_base64(self._seeds[at : at + RANDOM_SEED_BYTES], newline=False)

    @staticmethod
    def _prepared(
        table: dict[int, tuple[Document, PreparedResponse]],
        document: Document,
        status: int,
        body: bytes,
    ) -> PreparedResponse:
        entry = table.get(id(document))
        if entry is not None and entry[0] is document:
            return entry[1]
        answer = prepare_response(
            Response(status, body, [("ETag", document.etag)], document.content_type)
        )
        if len(table) >= MAX_PREPARED_ANSWERS:
            table.clear()
        table[id(document)] = (document, answer)
        return answer


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison of an ``If-None-Match`` list with our ETag."""
    if if_none_match.strip() == "*":
        return True
    for item in if_none_match.split(","):
        candidate = item.strip()
        if candidate.removeprefix("W/") == etag:
            return True
    return False
