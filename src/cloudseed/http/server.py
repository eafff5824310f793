"""``Request``/``Response`` handlers on the shared wire core (``http.wire``).

The metadata API, the control API and the status endpoints write handlers
that take a whole ``Request`` and return a ``Response``, synchronously (the
fast path: no task per request) or as an awaitable. ``HttpServer`` turns each
raw request into a ``Request`` and each ``Response`` into the head and body
that ``WireConnection.respond`` sends. Every wire rule -- limits, timeouts,
framing errors, pipelining, half-close, graceful stop -- lives in
``http.wire``; nothing here touches the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Awaitable, Callable

from cloudseed.http.encoding import (
    PreparedResponse,
    encode_response,
    head_of,
    prepare_response,
)
from cloudseed.http.failures import HandlerFailures
from cloudseed.http.listeners import Refusal, Screen, WireServer
from cloudseed.http.message import Handler, Request, Response
from cloudseed.http.wire import Limits, WireConnection, text_refusal

# Header names and methods are decoded once each, not once per request; the
# tables stop growing here because a hostile client can send endless junk.
MAX_MEMOISED_NAMES = 512
_HEADER_NAMES: dict[bytes, str] = {}
_METHODS: dict[bytes, str] = {}

# The tier's hook for a request whose handler raised: it logs and counts the
# exception (``http.failures``) and returns the answer.
ErrorHook = Callable[[Request, Exception], Response]


def _header_name(raw: bytes) -> str:
    name = raw.decode("latin-1")
    if len(_HEADER_NAMES) < MAX_MEMOISED_NAMES:
        _HEADER_NAMES[raw] = name
    return name


def _method(raw: bytes) -> str:
    method = _METHODS.get(raw)
    if method is None:
        method = raw.decode("latin-1")
        if len(_METHODS) < MAX_MEMOISED_NAMES:
            _METHODS[raw] = method
    return method


def wire_request(conn: WireConnection, headers: list[tuple[bytes, bytes]] | None = None,
                 peer: str | None = None) -> Request:
    """The ``Request`` of ``conn``'s current request (with other headers or peer if given:
    the co-located front passes the guest's headers after hygiene, its address unzoned)."""
    path, _, query = conn.target.partition(b"?")
    names = _HEADER_NAMES
    return Request(
        _method(conn.method),
        path.decode("latin-1"),
        query.decode("latin-1"),
        [(names.get(name) or _header_name(name), value.decode("latin-1"))
         for name, value in (conn.headers if headers is None else headers)],
        conn.body,
        conn.peer if peer is None else peer,
        conn.http_version,
        conn.keep_alive,
    )


def wire_respond(conn: WireConnection, response: Response) -> None:
    if response.hop_limit:
        conn.limit_hops(response.hop_limit)
    conn.respond(head_of(response), response.body, close=response.close)


def answer_when_ready(
    conn: WireConnection, request: Request, result: Response | Awaitable[Response],
    on_error: ErrorHook, answering: set[asyncio.Task[None]],
) -> None:
    """Send a handler's answer now, or when its awaitable is done (the task is kept in
    ``answering``: the loop holds only weak references)."""
    if isinstance(result, Response):
        wire_respond(conn, result)
        return
    task = asyncio.get_running_loop().create_task(_finish(conn, request, result, on_error))
    answering.add(task)
    task.add_done_callback(answering.discard)


async def _finish(conn: WireConnection, request: Request, pending: Awaitable[Response],
                  on_error: ErrorHook) -> None:
    try:
        response = await pending
    except Exception as exc:
        response = on_error(request, exc)
    wire_respond(conn, response)


class HttpServer(WireServer):
    """Listeners sharing one ``Request`` handler, limits and a graceful stop."""

    def __init__(
        self,
        handler: Handler,
        limits: Limits | None = None,
        on_handler_error: ErrorHook | None = None,
        *,
        failures: HandlerFailures | None = None,
        screen: Screen | None = None,
        refusal: Refusal = text_refusal,
    ) -> None:
        super().__init__(
            self._dispatch, limits, wants_peer=True, failures=failures, screen=screen,
            refusal=refusal,
        )  # fmt: skip
        self.handler = handler
        self.on_handler_error = on_handler_error or self._handler_failed
        # Answers being awaited: the loop keeps only weak references to tasks.
        self._answering: set[asyncio.Task[None]] = set()

    def _handler_failed(self, request: Request, exc: Exception) -> Response:
        self.failures.record(exc, request.method, request.path)
        return Response(500, b"internal error\n", close=True)

    def _dispatch(self, conn: WireConnection) -> None:
        request = wire_request(conn)
        try:
            result = self.handler(request)
        except Exception as exc:  # a handler bug must not kill the server
            result = self.on_handler_error(request, exc)
        answer_when_ready(conn, request, result, self.on_handler_error, self._answering)


def raise_open_files_limit() -> None:
    """Take the hard limit on open files: a server holding many idle connections
    (long-polls, every namespace's listeners) must not run out at the soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def install_uvloop() -> None:
    """Use uvloop when available: it roughly doubles small-request throughput."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


__all__ = [
    "HttpServer",
    "Limits",
    "PreparedResponse",
    "answer_when_ready",
    "encode_response",
    "install_uvloop",
    "prepare_response",
    "wire_request",
    "wire_respond",
]
