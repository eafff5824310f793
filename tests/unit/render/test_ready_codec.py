"""The ready map's entry format (ready/codec.py): views and documents survive the
bytes unchanged, foreign bytes are refused, and the fingerprint names every
option the documents depend on."""

from __future__ import annotations

import dataclasses
import marshal

import pytest
from tests.support.samples import BARE, RICH, RICH_OPTIONS

from cloudseed.identity import IdentitySigner, generate_key
from cloudseed.model import EndpointState, ImdsOptions, ServerView, TokenPolicy
from cloudseed.ready.codec import (
    FORMAT,
    decode_view,
    document_table,
    encode_view,
    fingerprint,
    pack,
    section_documents,
    unpack,
)
from cloudseed.render.sections import ServerDocuments

SECTIONS = ("openstack/2018-08-27", "ec2/2021-03-23")


@pytest.mark.parametrize("view", [
    RICH, BARE,
    dataclasses.replace(RICH, server=dataclasses.replace(
        RICH.server, user_data=None, key_name=None, metadata={"k": "v", "é": "ü"},
        imds=ImdsOptions(TokenPolicy.REQUIRED, EndpointState.DISABLED, 3, True))),
])
def test_a_view_comes_back_equal(view: ServerView) -> None:
    assert decode_view(encode_view(view)) == view


def test_an_entry_carries_the_documents_byte_for_byte() -> None:
    rendered = ServerDocuments(RICH, RICH_OPTIONS)
    sections = {section: rendered.section(section) for section in SECTIONS}
    entry = unpack(pack("fp", 42, RICH, sections))
    assert entry is not None
    assert (entry.fingerprint, entry.revision) == ("fp", 42)
    assert decode_view(entry.view) == RICH
    table = document_table(entry.documents)
    for section in SECTIONS:
        assert section_documents(table, entry.sections[section]) == sections[section]
    # The random seed's place survives (meta_data.json is spliced per response).
    assert any(d.seed_offset is not None for d in table)
    # Each distinct document once, however many sections show it.
    assert len(table) == len({(d.body, d.content_type) for s in sections.values()
                              for d in s.values()})


@pytest.mark.parametrize("blob", [
    b"", b"\x00garbage", marshal.dumps(("other-format", "fp", 1, (), {})),
    marshal.dumps([FORMAT, "fp", 1, (), {}]), marshal.dumps((FORMAT, "fp")),
])
def test_bytes_of_another_format_are_no_entry(blob: bytes) -> None:
    assert unpack(blob) is None


def test_the_fingerprint_names_every_option_the_documents_depend_on() -> None:
    base = fingerprint(RICH_OPTIONS, SECTIONS)
    assert fingerprint(dataclasses.replace(RICH_OPTIONS), SECTIONS) == base
    # The date only changes the /openstack listing, which no entry holds.
    later = dataclasses.replace(RICH_OPTIONS, today=RICH_OPTIONS.today.replace(year=2031))
    assert fingerprint(later, SECTIONS) == base
    signer = IdentitySigner(generate_key("test"))
    others = [
        dataclasses.replace(RICH_OPTIONS, dhcp_domain="other.example"),
        dataclasses.replace(RICH_OPTIONS, static_vendordata={"a": 1}),
        dataclasses.replace(RICH_OPTIONS, static_vendordata=None),
        dataclasses.replace(RICH_OPTIONS, injected_files=not RICH_OPTIONS.injected_files),
        dataclasses.replace(RICH_OPTIONS, region="elsewhere"),
        dataclasses.replace(RICH_OPTIONS, identity_signer=signer),
    ]
    prints = {fingerprint(options, SECTIONS) for options in others}
    assert base not in prints
    assert len(prints) == len(others)
    assert fingerprint(RICH_OPTIONS, SECTIONS[:1]) != base
