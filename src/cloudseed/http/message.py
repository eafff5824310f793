"""Request and response values shared by every cloudseed HTTP server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Request:
    method: str
    path: str  # raw path, percent-encoding untouched, no query
    query: str
    # Header names lower-cased, values as sent, in arrival order; repeats kept
    # so that identity checks can refuse duplicated headers.
    headers: list[tuple[str, str]]
    body: bytes
    # The peer's IP address for TCP listeners; "" for Unix sockets.
    peer: str
    http_version: str = "1.1"
    keep_alive: bool = True

    def header(self, name: str) -> str | None:
        """The single value of a header, or None. ``name`` must be lower-case."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "text/plain; charset=utf-8"
    # When the server should close the connection after sending this.
    close: bool = False
    # When set, the IP TTL / IPv6 hop limit of this reply's packets (and of
    # the rest of the connection: see ``WireConnection.limit_hops``).
    hop_limit: int = 0


Handler = Callable[[Request], "Response | Awaitable[Response]"]


def json_response(
    status: int, body: bytes, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(status, body, headers or [], content_type="application/json")
