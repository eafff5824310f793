"""The bytes of a response: status lines, header blocks, prepared answers.

Every server writes its answers through here, so a head has one shape: the
status line, Content-Type, Content-Length, then the tier's own header lines.
``frame`` adds ``Connection`` and decides whether the body goes; the wire
(``http.wire``) sends what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from cloudseed.http.message import Response

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}
_KEEP_ALIVE_END = b"Connection: keep-alive\r\n\r\n"
_CLOSE_END = b"Connection: close\r\n\r\n"
# Statuses that never carry a body, recognised from a ready head.
_BODILESS_STATUS_LINES = (b"HTTP/1.1 204 ", b"HTTP/1.1 304 ")


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()
        _STATUS_LINES[status] = line
    return line


def response_head(status: int, content_type: bytes, body_length: int, extra: bytes = b"") -> bytes:
    """Status line, Content-Type, Content-Length and ``extra`` (whole header lines)."""
    return b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s" % (
        status_line(status), content_type, body_length, extra)


def text_head(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return response_head(status, b"text/plain; charset=utf-8", len(body), extra)


def encode_head(response: Response) -> bytes:
    """The head of a ``Response`` (everything but ``Connection``)."""
    extra = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in response.headers)
    return response_head(
        response.status, response.content_type.encode("latin-1"), len(response.body), extra
    )


def frame(head: bytes, body: bytes, *, keep_alive: bool, head_only: bool) -> bytes:
    """What goes on the wire: ``head``, Connection, then ``body`` unless the
    request was HEAD or the status has none (204, 304). Content-Length in
    ``head`` still describes the whole document."""
    end = _KEEP_ALIVE_END if keep_alive else _CLOSE_END
    if head_only or head.startswith(_BODILESS_STATUS_LINES):
        return head + end
    return b"".join((head, end, body))


@dataclass(slots=True)
class PreparedResponse(Response):
    """A response whose head -- the status line and every header except
    ``Connection`` -- is encoded once, for answers sent over and over (the
    metadata API's documents). Build it with ``prepare_response``."""

    head: bytes = b""

    def with_body(self, body: bytes) -> PreparedResponse:
        """The same answer with another body; the head is reused when the
        length is the same (the random seed of ``meta_data.json``)."""
        if len(body) != len(self.body):
            return prepare_response(
                Response(self.status, body, self.headers, self.content_type, self.close)
            )
        return PreparedResponse(
            self.status, body, self.headers, self.content_type, self.close, head=self.head
        )


def prepare_response(response: Response) -> PreparedResponse:
    return PreparedResponse(
        response.status,
        response.body,
        response.headers,
        response.content_type,
        response.close,
        head=encode_head(response),
    )


def head_of(response: Response) -> bytes:
    return response.head if type(response) is PreparedResponse else encode_head(response)


def encode_response(response: Response, *, head: bool = False, keep_alive: bool = True) -> bytes:
    """Serialise a response. ``head`` keeps Content-Length but drops the body."""
    return frame(head_of(response), response.body, keep_alive=keep_alive, head_only=head)


__all__ = [
    "PreparedResponse",
    "encode_head",
    "encode_response",
    "frame",
    "head_of",
    "prepare_response",
    "response_head",
    "status_line",
    "text_head",
]
