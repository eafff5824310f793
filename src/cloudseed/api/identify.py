"""Who is asking: the two ways a guest request is tied to a server.

Proxy mode (behind our agent or Neutron's): the request carries
``X-Instance-ID``, ``X-Tenant-ID`` and ``X-Instance-ID-Signature`` (hex
HMAC-SHA256 of the instance id with the shared secret). Missing or repeated
headers → ``IdentityMissing`` (400), a wrong signature → ``SignatureInvalid``
(403): Nova's ``handler.py`` semantics. The tenant check (→ 404) needs the
server's record, so the app does it after loading.

Direct mode (flat network, no agent): the source address is the identity.
``X-Forwarded-For`` is believed only when the peer is inside
``trusted_proxy_cidrs``, and then the client is the right-most address that
is not itself a trusted proxy (tinkerbell hegel's ``xff`` idea): everything
to the left of it was written by parties we do not trust.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from cloudseed.auth import headers
from cloudseed.auth.signing import sign_instance_id
from cloudseed.errors import ConfigError, IdentityMissing, SignatureInvalid
from cloudseed.http.message import Request

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Verified signatures are remembered so the warm path is one dict lookup
# instead of an HMAC. Only signatures that verified are kept (a guest cannot
# fill the table with junk); the bound covers a very large cloud and costs
# ~20 MB at most.
MAX_REMEMBERED_SIGNATURES = 100_000
# Peers whose trust was decided; bounded because direct-mode peers are guests.
MAX_REMEMBERED_PEERS = 65_536


@dataclass(frozen=True, slots=True)
class ProxyClaim:
    instance_id: str
    tenant_id: str


class ProxyIdentifier:
    """Checks the signed identity headers that the agent adds."""

    __slots__ = ("_secrets", "_verified")

    def __init__(self, secret: bytes, also_accepted: bytes = b"") -> None:
        # During a rotation (docs/OPERATIONS.md) agents sign with either secret.
        self._secrets = (secret, also_accepted) if also_accepted else (secret,)
        # Signature → the instance id it was verified for.
        self._verified: dict[str, str] = {}

    def claim(self, request: Request) -> ProxyClaim:
        return ProxyClaim(*self.identify(request, None))

    def identify(self, request: Request, distinct: Mapping[str, str] | None) -> tuple[str, str]:
        """``(instance id, tenant id)`` of a correctly signed request.

        ``distinct`` is the request's headers as a dict when the caller knows
        no header name is repeated (the warm path builds it anyway); without
        it the headers are scanned and a repeated identity header refused.
        """
        if distinct is not None:
            instance_id = distinct.get(headers.INSTANCE_ID)
            tenant_id = distinct.get(headers.TENANT_ID)
            signature = distinct.get(headers.INSTANCE_ID_SIGNATURE)
        else:
            instance_id, tenant_id, signature = _identity_headers(request)
        if not instance_id:
            raise IdentityMissing("X-Instance-ID header is missing from request")
        if not tenant_id:
            raise IdentityMissing("X-Tenant-ID header is missing from request")
        if not signature:
            raise IdentityMissing("X-Instance-ID-Signature header is missing from request")
        if not self.is_signed(instance_id, signature):
            raise SignatureInvalid("Invalid proxy request signature.")
        return instance_id, tenant_id

    def is_signed(self, instance_id: str, signature: str) -> bool:
        # A dict hit needs the exact signature already verified: a near miss
        # finds nothing, so the lookup tells an attacker nothing about a
        # prefix, and every miss is settled by a constant-time compare.
        if self._verified.get(signature) == instance_id:
            return True
        given = signature.encode("utf-8", "replace")
        ok = False
        for secret in self._secrets:  # every one, so timing does not tell which matched
            ok |= hmac.compare_digest(sign_instance_id(secret, instance_id).encode(), given)
        if ok:
            if len(self._verified) >= MAX_REMEMBERED_SIGNATURES:
                self._verified.clear()
            self._verified[signature] = instance_id
        return ok


def _identity_headers(request: Request) -> tuple[str | None, str | None, str | None]:
    instance_id = tenant_id = signature = None
    for name, value in request.headers:
        if name == headers.INSTANCE_ID:
            if instance_id is not None:
                raise IdentityMissing("X-Instance-ID must be sent once")
            instance_id = value
        elif name == headers.TENANT_ID:
            if tenant_id is not None:
                raise IdentityMissing("X-Tenant-ID must be sent once")
            tenant_id = value
        elif name == headers.INSTANCE_ID_SIGNATURE:
            if signature is not None:
                raise IdentityMissing("X-Instance-ID-Signature must be sent once")
            signature = value
    return instance_id, tenant_id, signature


class DirectIdentifier:
    """The client address of a request, honouring XFF only from trusted peers."""

    __slots__ = ("_networks", "_trusted")

    def __init__(self, trusted_networks: tuple[IpNetwork, ...]) -> None:
        self._networks = trusted_networks
        self._trusted: dict[str, bool] = {}

    def is_trusted(self, address: str) -> bool:
        known = self._trusted.get(address)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        trusted = any(ip in network for network in self._networks)
        if len(self._trusted) >= MAX_REMEMBERED_PEERS:
            self._trusted.clear()
        self._trusted[address] = trusted
        return trusted

    def client_address(self, request: Request) -> str:
        peer = request.peer
        if not self._networks or not self.is_trusted(peer):
            return peer
        chain = [
            part.strip()
            for value in request.header_values(headers.FORWARDED_FOR)
            for part in value.split(",")
            if part.strip()
        ]
        for address in reversed(chain):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise IdentityMissing(
                    "X-Forwarded-For holds something that is not an address"
                ) from None
            if not self.is_trusted(address):
                return address
        # Only trusted proxies in the chain (or no chain): the peer itself asks.
        return chain[0] if chain else peer


def parse_networks(values: tuple[str, ...], setting: str) -> tuple[IpNetwork, ...]:
    """CIDRs from settings; ``ConfigError`` naming ``setting`` on a bad one."""
    networks: list[IpNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(f"{setting}: {value!r} is not a network in CIDR notation") from None
    return tuple(networks)
