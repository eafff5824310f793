"""Guest attributes on the metadata API: the guest's own key/value pairs (GCE-style).

Paths (``latest`` only; cloudseed's own, not part of a Nova or EC2 version)::

    /openstack/latest/guest_attributes/                    GET: namespaces, "ns/" per line
    /openstack/latest/guest_attributes/<namespace>/        GET: its keys, one per line
    /openstack/latest/guest_attributes/<namespace>/<key>   GET, PUT (body = value), DELETE

and the same under ``/latest/guest-attributes/`` on the EC2 tree (GCE's
spelling, as in ``/computeMetadata/v1/instance/guest-attributes/``).

The server is the one the chain (or the direct-mode address) identified and
the session-token rule has been applied before this module sees the request
(``app.py``); what is left is the grammar, the body and the store. Every rule
(names, value, key count, write budget) is checked in the store's write
transaction (``store/rules.py``), so workers and hosts share one count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from cloudseed.errors import Invalid, MethodNotAllowed, NotFound
from cloudseed.http.message import Request, Response
from cloudseed.model import GuestAttribute
from cloudseed.render.document import TEXT_PLAIN
from cloudseed.render.tree import listing_body
from cloudseed.store import rules
from cloudseed.store.protocol import Store

# app.py's ``_run_store``: a blocking call on the worker's store threads.
RunStore = Callable[..., Awaitable[Any]]
# (response, server id): what app.py's handlers return ("" before identification).
Outcome = tuple[Response, str]

DIRECTORY_METHODS = ("GET", "HEAD")
KEY_METHODS = ("GET", "HEAD", "PUT", "DELETE")


def check_method(method: str, inside: str) -> None:
    """Before identification, as for every route: 405 with ``Allow``."""
    allowed = KEY_METHODS if inside.count("/") >= 1 else DIRECTORY_METHODS
    if method not in allowed:
        raise MethodNotAllowed(method, allowed)


class GuestAttributes:
    """Answers one identified, authorised guest request under a guest-attributes path."""

    def __init__(self, store: Store, run_store: RunStore, clock: Callable[[], float]):
        self._store = store
        self._run_store = run_store
        self._clock = clock

    def answer(self, request: Request, inside: str, server_id: str) -> Awaitable[Outcome]:
        parts = inside.split("/") if inside else []
        if len(parts) > 2:
            raise Invalid("key", "a key holds no '/': use <namespace>/<key>")
        # Checked here too (the store checks again) so a bad GET is a 400, not a 404.
        for name, field in zip(parts, ("namespace", "key"), strict=False):
            rules.check_guest_attribute_name(name, field)
        if len(parts) < 2:
            return self._listing(server_id, parts[0] if parts else None)
        namespace, key = parts
        if request.method == "PUT":
            attribute = GuestAttribute(server_id, namespace, key, _value(request), "")
            return self._write(partial(_put, self._store, attribute, self._clock()), attribute)
        if request.method == "DELETE":
            attribute = GuestAttribute(server_id, namespace, key, "", "")
            return self._write(partial(_delete, self._store, attribute, self._clock()), attribute)
        return self._read_one(server_id, namespace, key)

    async def _listing(self, server_id: str, namespace: str | None) -> Outcome:
        held = await self._attributes(server_id)
        if namespace is None:
            items: Sequence[str] = sorted({f"{a.namespace}/" for a in held})
        else:
            items = [a.key for a in held if a.namespace == namespace]
            if not items:
                raise NotFound("namespace", namespace, f"no guest attributes in {namespace}/")
        return Response(200, listing_body(items), content_type=TEXT_PLAIN), server_id

    async def _read_one(self, server_id: str, namespace: str, key: str) -> Outcome:
        for attribute in await self._attributes(server_id):
            if attribute.namespace == namespace and attribute.key == key:
                return Response(200, attribute.value.encode(), content_type=TEXT_PLAIN), server_id
        raise _missing(namespace, key)

    async def _attributes(self, server_id: str) -> Sequence[GuestAttribute]:
        held: Sequence[GuestAttribute] = await self._run_store(
            self._store.list_guest_attributes, server_id)
        return held

    async def _write(self, write: Callable[[], bool], attribute: GuestAttribute) -> Outcome:
        # Nothing is acknowledged before the transaction commits: a store
        # outage is a 503 (StoreUnavailable) and the guest writes again.
        if not await self._run_store(write):
            raise _missing(attribute.namespace, attribute.key)
        return Response(200, b"", content_type=TEXT_PLAIN), attribute.server_id


def _value(request: Request) -> str:
    try:
        value = request.body.decode("utf-8")  # strict: lone surrogates, junk bytes refused
    except UnicodeDecodeError as exc:
        raise Invalid("value", f"not UTF-8 (byte {exc.start})") from None
    rules.check_guest_attribute_value(value)  # before the store is asked at all
    return value


def _missing(namespace: str, key: str) -> NotFound:
    return NotFound("key", f"{namespace}/{key}", f"no guest attribute {namespace}/{key}")


def _put(store: Store, attribute: GuestAttribute, now: float) -> bool:
    with store.write() as writer:
        writer.put_guest_attribute(attribute, now=now)
    return True


def _delete(store: Store, attribute: GuestAttribute, now: float) -> bool:
    with store.write() as writer:
        return writer.delete_guest_attribute(
            attribute.server_id, attribute.namespace, attribute.key, now=now)
