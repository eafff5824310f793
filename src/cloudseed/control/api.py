"""The control API over HTTP: routing, bearer-token auth, metrics, errors.

Store calls block (SQLAlchemy), so every route runs on a small thread pool
and the event loop keeps answering ``/healthz`` and ``/metrics`` during a
long import. Bulk routes get their own single thread so an import cannot
starve ordinary requests.

Auth: ``Authorization: Bearer <token>`` against ``settings.control.tokens``,
compared in constant time. No header → 401, a wrong token → 403. ``/healthz``,
``/metrics`` and ``/v1/openapi.json`` answer without a token (they hold no
inventory). With no tokens configured every ``/v1`` route is refused unless
the caller builds the app with ``allow_anonymous=True`` (the demo does).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

from cloudseed.control import identity
from cloudseed.control.bodies import check_storable
from cloudseed.control.openapi import openapi_document
from cloudseed.control.routes import ROUTES, Route
from cloudseed.control.service import ControlService
from cloudseed.control.waiting import ServerWaiters, parse_wait
from cloudseed.errors import (
    AuthMissing,
    AuthRejected,
    CloudseedError,
    ConfigError,
    MethodNotAllowed,
    NotFound,
    StoreUnavailable,
)
from cloudseed.http.encoding import head_of, response_head
from cloudseed.http.failures import HandlerFailures
from cloudseed.http.health import health_response
from cloudseed.http.inherit import take
from cloudseed.http.message import Request, Response, json_response
from cloudseed.http.metrics import CONTENT_TYPE, Registry
from cloudseed.http.server import HttpServer, Limits
from cloudseed.http.status import error_response_json
from cloudseed.http.tls import server_tls_context
from cloudseed.log import get_logger
from cloudseed.settings import Settings
from cloudseed.store.protocol import Store

log = get_logger("control.api")

# An import document of 10,000 servers with user-data and files runs to tens
# of megabytes; the control API is authenticated and usually on loopback.
MAX_CONTROL_BODY_BYTES = 256 * 1024 * 1024
# Store calls are short; a few threads overlap reads while one writes.
STORE_THREADS = 4
# Buckets in seconds: control calls take milliseconds; imports take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0)

ControlHandler = Callable[[Request], Awaitable[Response]]
_KNOWN_STATUSES = frozenset(s.value for s in HTTPStatus)


class ControlApp:
    """The request handler; call it with a Request, await a Response."""

    def __init__(self, store: Store, settings: Settings, *, allow_anonymous: bool = False) -> None:
        self.service = ControlService(store, settings)
        self.tokens = _tokens(settings)
        self.allow_anonymous = allow_anonymous and not self.tokens
        # The listener's TLS context, kept so that a reload can swap its certificate.
        self.tls: ssl.SSLContext | None = None
        self.executor = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="control")
        self.bulk_executor = ThreadPoolExecutor(1, thread_name_prefix="control-bulk")
        self.waiters = ServerWaiters(store, self.executor)
        self.store = store
        self.registry = Registry()
        self.failures = HandlerFailures("control", self.registry)
        self.registry.gauge(
            "cloudseed_degraded", "1 while /healthz says degraded, else 0.",
            read=lambda: float(store.health.problem() is not None),
        )
        self.requests = self.registry.counter(
            "cloudseed_control_requests_total",
            "Control API requests by route, method and status.",
            ("route", "method", "status"),
        )
        self.latency = self.registry.histogram(
            "cloudseed_control_request_seconds",
            "Control API request latency by route.",
            ("route",),
            LATENCY_BUCKETS,
        )
        self.registry.gauge(
            "cloudseed_control_store_revision", "The store revision.", read=self._revision_or_zero
        )
        self.registry.gauge(
            "cloudseed_control_waiting_requests",
            "Long-polls (?wait=) parked now; more than MAX_CONTROL_WAITERS are 429.",
            read=lambda: float(self.waiters.count),
        )
        self._openapi = json.dumps(openapi_document()).encode()

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        route_label = "unmatched"
        try:
            route, params = self._route(request)
            route_label = route.pattern if route is not None else request.path
            response = await self._respond(request, route, params)
        except CloudseedError as exc:
            # StoreUnavailable included: 503 with Retry-After, nothing written.
            response = error_response_json(exc)
        except Exception as exc:
            self.failures.record(exc, request.method, request.path)
            response = json_response(
                500, b'{"error": "InternalError", "message": "internal error; see the logs"}'
            )
        self.requests.inc(route_label, request.method, str(response.status))
        self.latency.observe(time.perf_counter() - started, route_label)
        return response

    def reload(self, settings: Settings) -> None:
        """SIGHUP: take the tokens and the TLS certificate from fresh settings.

        Connections in progress keep going; new requests see the new tokens and
        new handshakes the new certificate, so rotating either needs no restart.
        """
        tokens = _tokens(settings)
        control = settings.control
        if self.tls is not None and control.tls_cert_file:
            fresh = control_tls(settings)  # checks the files; ConfigError keeps the old ones
            assert fresh is not None
            self.tls.load_cert_chain(control.tls_cert_file, control.tls_key_file or None)
        self.tokens = tokens
        log.info("control API reloaded", extra={"fields": {"tokens": len(tokens)}})

    def screen(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[bytes, bytes] | None:
        """Route and check the token from the head alone, before any body byte is read.

        An unauthenticated caller cannot make us hold its upload; a refusal
        here closes the connection (the unread body cannot be skipped safely).
        """
        path, _, query = target.partition(b"?")
        request = Request(
            method.decode("latin-1"), path.decode("latin-1"), query.decode("latin-1"),
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers],
            b"", "",
        )  # fmt: skip
        label = "unmatched"
        try:
            route, _params = self._route(request)
            if route is not None:
                label = route.pattern
                if not route.public:
                    self._authorise(request)
        except CloudseedError as exc:
            response = error_response_json(exc)
            self.requests.inc(label, request.method, str(response.status))
            return head_of(response), response.body
        return None

    def close(self) -> None:
        self.waiters.stop()
        self.executor.shutdown(wait=False)
        self.bulk_executor.shutdown(wait=False)

    # -- dispatch ---------------------------------------------------------------

    def _route(self, request: Request) -> tuple[Route | None, dict[str, str]]:
        path = request.path
        if path in {"/healthz", "/metrics", "/v1/openapi.json"}:
            if request.method not in {"GET", "HEAD"}:
                raise MethodNotAllowed(request.method, ("GET", "HEAD"))
            return None, {}
        allowed: list[str] = []
        for route in ROUTES:
            match = route.regex.match(path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            check_storable(params)  # %00 in a path: PostgreSQL cannot even compare it
            return route, params
        if allowed:
            raise MethodNotAllowed(request.method, tuple(allowed))
        raise NotFound("path", path, f"no such path: {path}")

    async def _respond(
        self, request: Request, route: Route | None, params: dict[str, str]
    ) -> Response:
        if route is None:
            return await self._unauthenticated(request.path)
        if not route.public:
            self._authorise(request)
        query = dict(urllib.parse.parse_qsl(request.query))
        check_storable(query)
        executor = self.bulk_executor if route.bulk else self.executor
        loop = asyncio.get_running_loop()
        if route.wait_until is not None and "wait" in query:
            result: Any = await self._long_poll(route, route.wait_until, params, query)
        else:
            result = await loop.run_in_executor(
                executor, route.action, self.service, params, query, request.body
            )
        if route.status == 204:
            return Response(204)
        if isinstance(result, Response):
            return result
        return json_response(route.status, json.dumps(result).encode())

    async def _long_poll(self, route: Route, done: Callable[[Any], bool],
                         params: dict[str, str], query: dict[str, str]) -> Any:
        """The route's answer once ``done`` holds or ``?wait=`` seconds passed; no thread waits."""
        seconds = parse_wait(query["wait"])

        def read(server_id: str) -> Any:
            return route.action(self.service, {**params, "server": server_id}, query, b"")

        return await self.waiters.wait(params["server"], seconds, read, done)

    async def _unauthenticated(self, path: str) -> Response:
        if path == "/metrics":
            return Response(200, self.registry.render(), content_type=CONTENT_TYPE)
        if path == "/v1/openapi.json":
            return json_response(200, self._openapi)
        # Probing the store here is also how the control API notices that
        # an outage ended when no write comes (store.health logs it once).
        loop = asyncio.get_running_loop()
        revision = await loop.run_in_executor(self.executor, self._revision_if_reachable)
        details: dict[str, object] = {} if revision is None else {"revision": revision}
        return health_response([self.store.health.problem() or ""], details)

    def _revision_if_reachable(self) -> int | None:
        try:
            return self.service.revision()
        except StoreUnavailable:
            return None

    def _revision_or_zero(self) -> int:
        return self._revision_if_reachable() or 0

    def _authorise(self, request: Request) -> None:
        header = request.header("authorization")
        if header is None:
            if self.allow_anonymous:
                return
            raise AuthMissing(
                "this request needs a token: send 'Authorization: Bearer <token>' "
                "(the CLI reads CLOUDSEED_TOKEN)"
            )
        scheme, _, token = header.partition(" ")
        given = token.strip().encode()
        # Compare against every token, without stopping early, in constant time.
        ok = False
        for expected in self.tokens:
            ok |= hmac.compare_digest(given, expected)
        if scheme.lower() != "bearer" or not ok:
            raise AuthRejected("the token is not valid for this control API")


def _tokens(settings: Settings) -> tuple[bytes, ...]:
    return tuple(t.reveal().encode() for t in settings.control.tokens if t)


def build_control_app(
    store: Store, settings: Settings, *, allow_anonymous: bool = False
) -> ControlApp:
    """The control API handler, for ``HttpServer(handler, control_limits())``."""
    return ControlApp(store, settings, allow_anonymous=allow_anonymous)


def json_refusal(status: int, message: str, extra: bytes = b"") -> tuple[bytes, bytes]:
    """Wire-level refusals (413, 408, 400, 429, 431, 503) as the control API's JSON errors."""
    error = HTTPStatus(status).phrase.replace(" ", "") if status in _KNOWN_STATUSES else "Error"
    body = json.dumps({"error": error, "message": message}).encode()
    return response_head(status, b"application/json", len(body), extra), body


def control_limits() -> Limits:
    # Imports are large and take a while to upload.
    return Limits(max_body_bytes=MAX_CONTROL_BODY_BYTES, body_timeout_seconds=300.0)


def control_tls(settings: Settings) -> ssl.SSLContext | None:
    """The control API's TLS context, or None for plain HTTP; ConfigError names the setting."""
    control = settings.control
    if not control.tls_cert_file:
        if control.tls_key_file or control.tls_client_ca_file:
            raise ConfigError(
                "control.tls_key_file/tls_client_ca_file are set but control.tls_cert_file "
                "is not; set the certificate too, or drop them for plain HTTP"
            )
        return None
    return server_tls_context(control.tls_cert_file, control.tls_key_file,
                              control.tls_client_ca_file, setting="control")


async def start_control(
    store: Store, settings: Settings, *, allow_anonymous: bool = False
) -> tuple[HttpServer, ControlApp, tuple[str, int]]:
    """Listen on settings.control.host:port (port 0 picks one); returns the bound address."""
    tls = control_tls(settings)
    app = build_control_app(store, settings, allow_anonymous=allow_anonymous)
    # The first start makes the key that signs instance identity (issue #16).
    # Without the store the control API still starts (degraded); the key is
    # made at the next start, or by `cloudseed identity rotate`.
    try:
        await asyncio.get_running_loop().run_in_executor(
            app.executor, identity.ensure_key, store, settings.identity.issuer)
    except StoreUnavailable:
        log.warning("no identity key made: the store is unavailable")
    app.tls = tls
    server = HttpServer(
        app, control_limits(), failures=app.failures, screen=app.screen, refusal=json_refusal
    )
    handed = take("control")  # `serve` keeps the socket across our restarts
    address = await server.listen_tcp(settings.control.host, settings.control.port, tls=tls,
                                      sock=handed[0] if handed else None)
    log.info(
        "control API listening",
        extra={"fields": {"host": address[0], "port": address[1], "tls": tls is not None,
                          "client_certificates": bool(settings.control.tls_client_ca_file)}},
    )
    return server, app, address


async def run_control(settings: Settings, store: Store, *, allow_anonymous: bool = False) -> None:
    """Serve the control API until cancelled."""
    server, app, _address = await start_control(store, settings, allow_anonymous=allow_anonymous)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
        app.close()
