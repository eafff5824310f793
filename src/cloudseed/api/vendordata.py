"""Vendor data: Nova's StaticJSON file and DynamicJSON targets, done carefully.

Static: one JSON object read once at start; a file that is missing or not a
JSON object refuses to start (Nova logs and serves ``{}``; we prefer to say so).

Dynamic (``name@url`` targets): for each server we POST its facts
(``project-id, instance-id, image-id, user-data, hostname, metadata`` --
Nova's body without keystone's ``boot-roles``) and put the JSON reply under
``name`` in ``vendor_data2.json``. Unlike Nova:

- a reply is cached per (target, server revision) for the target's
  ``Cache-Control: max-age`` (no header = until the server changes);
- a failing target is left out of the document, never turned into a 500,
  and reported to the caller, which counts it;
- each target has a circuit breaker: after ``failure_threshold`` consecutive
  failures it is skipped for ``reset_seconds``, then one request may try it
  again, so a dead target costs a boot storm nothing but that one try.

This module returns facts (values, failures, expiry); the app owns logging
and metrics.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

import httptools

from cloudseed.errors import ConfigError
from cloudseed.model import ServerView

# Nova's User-Agent, so existing vendordata services recognise us.
USER_AGENT = "openstack-nova-vendordata"
# A vendordata reply is a small JSON document; refuse to buffer more.
MAX_REPLY_BYTES = 1024 * 1024
# A max-age shorter than this is raised to it: re-rendering a server more than
# once a second for one target's sake helps nobody.
MIN_MAX_AGE_SECONDS = 1.0
# After a failure, try the target again for this server no sooner than this.
RETRY_AFTER_FAILURE_SECONDS = 10.0
# Bound on cached replies: (target, server) pairs.
MAX_CACHED_REPLIES = 100_000

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)


def load_static_vendordata(path: str) -> Mapping[str, object]:
    """The static vendor data file as a mapping; empty when not configured,
    as Nova's default StaticJSON provider without a file serves ``{}``."""
    if not path:
        return MappingProxyType({})
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(
            f"api.vendordata_static_file: cannot read {path}: {exc.strerror}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"api.vendordata_static_file: {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"api.vendordata_static_file: {path} must hold a JSON object, not {type(data).__name__}"
        )
    return MappingProxyType(data)


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    url: str
    host: str
    port: int
    path: str  # with query
    tls: bool


def parse_targets(values: tuple[str, ...]) -> tuple[Target, ...]:
    """``name@url`` strings from settings; ConfigError naming the bad one."""
    targets: list[Target] = []
    for value in values:
        name, sep, url = value.partition("@")
        where = f"api.vendordata_dynamic_targets: {value!r}"
        if not sep or not name or not url:
            raise ConfigError(f"{where} is not name@url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{where}: the URL must be http:// or https:// with a host")
        if name in {t.name for t in targets} or name == "static":
            raise ConfigError(f"{where}: the name {name!r} is used twice (or is 'static')")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ConfigError(f"{where}: the port is not a number") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        targets.append(Target(name, url, parts.hostname, port, path, parts.scheme == "https"))
    return tuple(targets)


class CircuitBreaker:
    """Closed → open after N consecutive failures → half-open after T seconds."""

    __slots__ = ("_clock", "_failures", "_open_until", "_probing", "reset_seconds", "threshold")

    def __init__(self, threshold: int, reset_seconds: float, clock: Callable[[], float]) -> None:
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._failures >= self.threshold and self._clock() < self._open_until

    def allow(self) -> bool:
        if self._failures < self.threshold:
            return True
        if self._clock() < self._open_until or self._probing:
            return False
        self._probing = True  # half-open: exactly one trial request
        return True

    def succeeded(self) -> None:
        self._failures = 0
        self._probing = False

    def failed(self) -> None:
        self._failures += 1
        self._probing = False
        if self._failures >= self.threshold:
            self._open_until = self._clock() + self.reset_seconds


@dataclass(frozen=True, slots=True)
class Failure:
    target: str
    reason: str  # connect | timeout | status | invalid_json | too_large | circuit_open


@dataclass(frozen=True, slots=True)
class VendordataResult:
    data: Mapping[str, object]
    # Monotonic time at which the result should be fetched again; inf = never.
    refresh_at: float = math.inf
    failures: tuple[Failure, ...] = field(default_factory=tuple)


class _TargetError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def server_facts(view: ServerView) -> dict[str, object]:
    """Nova's DynamicJSON request body."""
    server = view.server
    user_data = base64.b64encode(server.user_data).decode() if server.user_data else None
    return {
        "project-id": server.project_id,
        "instance-id": server.id,
        "image-id": server.image_id,
        "user-data": user_data,
        "hostname": server.hostname,
        "metadata": dict(server.metadata),
    }


class VendordataClient:
    """Fetches dynamic vendor data for servers from every configured target."""

    def __init__(
        self,
        targets: tuple[Target, ...],
        *,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        breaker_failures: int,
        breaker_reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targets = targets
        self._connect_timeout = connect_timeout_seconds
        self._read_timeout = read_timeout_seconds
        self._clock = clock
        self.breakers = {
            t.name: CircuitBreaker(breaker_failures, breaker_reset_seconds, clock) for t in targets
        }
        # (target, server id) → (revision, reply, refresh_at)
        self._replies: dict[tuple[str, str], tuple[int, object, float]] = {}
        self._tls = ssl.create_default_context() if any(t.tls for t in targets) else None

    async def fetch(self, view: ServerView) -> VendordataResult:
        if not self.targets:
            return VendordataResult(MappingProxyType({}))
        body = json.dumps(server_facts(view)).encode()
        outcomes = await asyncio.gather(*(self._one(t, view, body) for t in self.targets))
        data: dict[str, object] = {}
        failures: list[Failure] = []
        refresh_at = math.inf
        for target, (reply, until, failure) in zip(self.targets, outcomes, strict=True):
            refresh_at = min(refresh_at, until)
            if failure is not None:
                failures.append(failure)
            else:
                data[target.name] = reply
        return VendordataResult(MappingProxyType(data), refresh_at, tuple(failures))

    async def _one(
        self, target: Target, view: ServerView, body: bytes
    ) -> tuple[object, float, Failure | None]:
        now = self._clock()
        key = (target.name, view.server.id)
        cached = self._replies.get(key)
        if cached is not None and cached[0] == view.revision and cached[2] > now:
            return cached[1], cached[2], None
        breaker = self.breakers[target.name]
        retry_at = now + RETRY_AFTER_FAILURE_SECONDS
        if not breaker.allow():
            return None, retry_at, Failure(target.name, "circuit_open")
        try:
            reply, max_age = await self._post(target, body)
        except _TargetError as err:
            breaker.failed()
            retry_at = self._clock() + RETRY_AFTER_FAILURE_SECONDS
            return None, retry_at, Failure(target.name, err.reason)
        breaker.succeeded()
        until = math.inf if max_age is None else self._clock() + max(max_age, MIN_MAX_AGE_SECONDS)
        if len(self._replies) >= MAX_CACHED_REPLIES:
            self._replies.clear()
        self._replies[key] = (view.revision, reply, until)
        return reply, until, None

    async def _post(self, target: Target, body: bytes) -> tuple[object, float | None]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    target.host,
                    target.port,
                    ssl=self._tls if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                ),
                self._connect_timeout,
            )
        except TimeoutError:
            raise _TargetError("timeout") from None
        except OSError:
            raise _TargetError("connect") from None
        try:
            host = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
            writer.write(
                (
                    f"POST {target.path} HTTP/1.1\r\nHost: {host}\r\n"
                    f"User-Agent: {USER_AGENT}\r\nContent-Type: application/json\r\n"
                    f"Accept: application/json\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode("latin-1")
                + body
            )
            try:
                response = await asyncio.wait_for(_read_response(reader), self._read_timeout)
            except TimeoutError:
                raise _TargetError("timeout") from None
            except OSError:
                raise _TargetError("connect") from None
        finally:
            writer.close()
        status, headers, payload = response
        if status != 200:
            raise _TargetError("status")
        try:
            reply = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise _TargetError("invalid_json") from None
        return reply, cache_max_age(headers.get("cache-control", ""))


def cache_max_age(cache_control: str) -> float | None:
    """Seconds a reply may be reused; None = no limit given (keep per revision)."""
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


class _ResponseCollector:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.complete = False

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_REPLY_BYTES:
            raise _TargetError("too_large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    collector = _ResponseCollector()
    parser = httptools.HttpResponseParser(collector)
    while not collector.complete:
        chunk = await reader.read(65536)
        if not chunk:
            # A body delimited by the close itself ends here; anything else
            # was cut short.
            framed = "content-length" in collector.headers or (
                "transfer-encoding" in collector.headers
            )
            if collector.headers_done and not framed:
                break
            raise _TargetError("connect")
        try:
            parser.feed_data(chunk)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _TargetError):
                raise exc.__context__ from None
            raise _TargetError("status") from None
    return parser.get_status_code(), collector.headers, b"".join(collector.body)
