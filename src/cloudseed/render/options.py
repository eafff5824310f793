"""What the renderer needs besides the server: deployment-wide choices.

Passed in, never read from global settings, so rendering stays a pure
function of (view, options).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Protocol


def _no_dynamic_vendordata() -> Mapping[str, object]:
    # Also the default static vendor data: an empty object.
    return MappingProxyType({})


class DocumentSigner(Protocol):
    """Signs an instance identity document (``cloudseed.identity``): the
    bodies of ``signature``, ``pkcs7`` and ``rsa2048``. Deterministic in what
    it covers, so rendering stays a function of its inputs."""

    def sign_document(self, document: bytes) -> Mapping[str, bytes]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderOptions:
    # The UTC date the ``/openstack`` listing is cut at; the caller reads the
    # clock, the renderer never does.
    today: date
    # Nova's ``[api] dhcp_domain``: hostnames are ``<hostname>.<dhcp_domain>``;
    # empty means the hostname is used as it is (FQDN hostnames).
    dhcp_domain: str = "novalocal"
    # Nova's StaticJSON vendor data (``{}`` when no file is configured, as
    # Nova's default provider); None means no StaticJSON provider at all, so
    # ``vendor_data.json`` is listed but answers 404 (as Nova does then).
    static_vendordata: Mapping[str, object] | None = field(default_factory=_no_dynamic_vendordata)
    # Injected files in ``meta_data.json`` and ``openstack/content/``. Nova
    # puts them on the config drive only; over HTTP any process in the guest
    # could read them, so the API renders them only when the operator says so.
    injected_files: bool = True
    # DynamicJSON results already fetched for this server, by target name;
    # they become the top-level keys of ``vendor_data2.json`` after ``static``.
    dynamic_vendordata: Mapping[str, object] = field(default_factory=_no_dynamic_vendordata)
    # The instance identity document's ``region`` (AWS's region; OpenStack's).
    region: str = "RegionOne"
    # Signs ``dynamic/instance-identity/document``; without one (no identity
    # key yet, or the config drive) there is no ``dynamic`` tree.
    identity_signer: DocumentSigner | None = None
