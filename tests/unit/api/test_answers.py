from __future__ import annotations

import base64
import json

from cloudseed.api.answers import Answers
from cloudseed.http.message import Response
from cloudseed.http.server import encode_response
from cloudseed.render import RANDOM_SEED_BYTES, Document


def test_prepared_answers_encode_exactly_as_plain_responses() -> None:
    document = Document.of(b"hello", "text/plain")
    answers = Answers()
    plain = Response(200, b"hello", [("ETag", document.etag)], "text/plain")
    for keep_alive in (True, False):
        for head in (True, False):
            expected = encode_response(plain, head=head, keep_alive=keep_alive)
            got = encode_response(answers.respond(document, None), head=head, keep_alive=keep_alive)
            assert got == expected
    not_modified = Response(304, b"", [("ETag", document.etag)], "text/plain")
    assert encode_response(answers.respond(document, document.etag)) == encode_response(
        not_modified
    )
    assert answers.respond(document, None) is answers.respond(document, None)


def test_every_seeded_answer_has_fresh_seed_bytes() -> None:
    body = b'{"random_seed": "", "uuid": "x"}'
    document = Document.of(body, "application/json", body.index(b'""') + 1)
    answers = Answers()
    seeds = set()
    for _ in range(100):
        response = answers.respond(document, None)
        seed = base64.b64decode(json.loads(response.body)["random_seed"])
        assert len(seed) == RANDOM_SEED_BYTES
        assert f"Content-Length: {len(response.body)}".encode() in encode_response(response)
        seeds.add(seed)
    assert len(seeds) == 100
