"""Documents: ETags and seed splicing."""

from __future__ import annotations

from cloudseed.render import Document


def test_etag_is_strong_quoted_and_depends_on_bytes_and_type() -> None:
    plain = Document.of(b"abc", "text/plain")
    assert plain.etag.startswith('"')
    assert plain.etag.endswith('"')
    assert not plain.etag.startswith("W/")
    assert Document.of(b"abc", "text/plain").etag == plain.etag
    assert Document.of(b"abd", "text/plain").etag != plain.etag
    assert Document.of(b"abc", "application/json").etag != plain.etag


def test_with_seed_splices_at_the_offset() -> None:
    template = b'{"a": 1, "random_seed": ""}'
    document = Document.of(template, "application/json", seed_offset=template.index(b'""') + 1)
    assert document.needs_seed
    assert document.with_seed(b"QUJD") == b'{"a": 1, "random_seed": "QUJD"}'
    assert document.body == template


def test_with_seed_leaves_seedless_documents_alone() -> None:
    document = Document.of(b"x", "text/plain")
    assert not document.needs_seed
    assert document.with_seed(b"QUJD") == b"x"
