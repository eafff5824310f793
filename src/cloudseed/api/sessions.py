"""IMDSv2 session tokens on the guest path: issuing one (``PUT /latest/api/token``)
and checking the one a read presents, counted in the API's metrics.

The tokens themselves (signed, stateless, bound to a server) are
``auth/tokens.py``'s; this module holds the guest-facing rules around them.
"""

from __future__ import annotations

from cloudseed.api.observe import ApiMetrics
from cloudseed.auth import headers
from cloudseed.auth.tokens import TokenAuthority, TokenCheck, parse_ttl
from cloudseed.errors import Invalid, TokenRequired
from cloudseed.http.message import Request, Response
from cloudseed.model import TokenPolicy


class SessionTokens:
    """``behind_proxy``: requests come through the agent and a proxy facing the guest
    (proxy mode), not on the guest's own connection."""

    def __init__(self, tokens: TokenAuthority, metrics: ApiMetrics, *,
                 behind_proxy: bool) -> None:
        self._tokens = tokens
        self._metrics = metrics
        self._behind_proxy = behind_proxy

    def authorise(self, token: str | None, server_id: str, policy: TokenPolicy) -> None:
        if token is None:
            if policy is TokenPolicy.REQUIRED:
                self._metrics.token_rejections.inc("missing")
                raise TokenRequired("a session token is required: PUT /latest/api/token first")
            self._metrics.read_without_token()
            return
        # A presented token must be good even where tokens are optional (as on
        # AWS): a wrong token is a client bug or an attack, never "no token".
        check = self._tokens.check(token, server_id)
        if check is not TokenCheck.VALID:
            self._metrics.token_rejections.inc(check.value)
            raise TokenRequired(f"the session token is {check.value}")

    def issue(self, request: Request, server_id: str, hop_limit: int) -> Response:
        if not self._behind_proxy and request.header(headers.FORWARDED_FOR) is not None:
            # AWS: a forwarded token request is refused, so a confused proxy
            # on the guest cannot fetch tokens for whoever reaches it.
            raise Invalid("X-Forwarded-For", "a token request must not be forwarded")
        name = headers.TOKEN_TTL
        value = request.header(name)
        if value is None:
            name = headers.TOKEN_TTL_ALIAS
            value = request.header(name)
        ttl = parse_ttl(value)
        token = self._tokens.issue(server_id, ttl)
        if self._behind_proxy:
            # The proxy facing the guest applies it (and removes the header).
            return Response(200, token.encode("ascii"),
                            [(name, str(ttl)), (headers.HOP_LIMIT, str(hop_limit))])
        # Direct mode: this connection is the guest's own.
        return Response(200, token.encode("ascii"), [(name, str(ttl))], hop_limit=hop_limit)
