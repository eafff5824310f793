"""Wire header names, lower-cased as ``Request.headers`` holds them.

Nova and Neutron spell these in mixed case; HTTP header names are
case-insensitive, and our server lower-cases on parse.
"""

from __future__ import annotations

FORWARDED_FOR = "x-forwarded-for"
FORWARDED = "forwarded"
INSTANCE_ID = "x-instance-id"
TENANT_ID = "x-tenant-id"
INSTANCE_ID_SIGNATURE = "x-instance-id-signature"
ROUTER_ID = "x-neutron-router-id"
NETWORK_ID = "x-neutron-network-id"
NEUTRON_PREFIX = "x-neutron-"
# IMDSv2 (AWS) and the neutral aliases Firecracker also accepts.
TOKEN = "x-aws-ec2-metadata-token"  # noqa: S105 - a header name, not a secret
TOKEN_TTL = "x-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105 - a header name, not a secret
TOKEN_ALIAS = "x-metadata-token"  # noqa: S105 - a header name, not a secret
TOKEN_TTL_ALIAS = "x-metadata-token-ttl-seconds"  # noqa: S105 - a header name, not a secret
# Internal, API → agent → proxy on the token PUT's reply: the IP TTL the
# guest-facing tier gives that reply (the server's IMDS hop limit). The proxy
# removes it before relaying; a guest never sees it.
HOP_LIMIT = "x-cloudseed-hop-limit"
IF_NONE_MATCH = "if-none-match"
AUTHORIZATION = "authorization"

# Headers a guest may never set: the proxy deletes every one of them (and
# every x-neutron-*) before adding its own.
IDENTITY_HEADERS = frozenset(
    {FORWARDED_FOR, FORWARDED, INSTANCE_ID, TENANT_ID, INSTANCE_ID_SIGNATURE}
)
