"""The guest's write-once POSTs: its password (Nova's password service) and
cloud-init's phone home.

Both reach the store on the worker's store threads and answer as Nova does: 200
with an empty text/html body (what webob makes of a handler returning None), and
409 (``AlreadySet``) for a second write until the operator clears the first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cloudseed.api.guest_attributes import Outcome, RunStore
from cloudseed.api.observe import ApiMetrics
from cloudseed.api.phonehome import InstanceMismatch, check_instance, read_form, report_from_form
from cloudseed.api.routes import Route
from cloudseed.errors import AlreadySet
from cloudseed.http.message import Request, Response
from cloudseed.http.status import error_response_text
from cloudseed.log import get_logger
from cloudseed.model import PhoneHome, Server
from cloudseed.render.document import TEXT_HTML
from cloudseed.render.ec2 import instance_id as ec2_instance_id
from cloudseed.store.protocol import Store

_log = get_logger("cloudseed.api")


class GuestWrites:
    """``forget``: the worker stops serving what it holds of a server it wrote
    (the feed tells the other workers)."""

    def __init__(self, store: Store, run_store: RunStore, metrics: ApiMetrics,
                 forget: Callable[[str], Awaitable[None]]) -> None:
        self._store = store
        self._run_store = run_store
        self._metrics = metrics
        self._forget = forget

    async def password(self, server_id: str, password: str) -> Outcome:
        if not password:
            # As Nova: an empty body stores nothing and the password stays
            # unset, so a POST whose body a proxy lost (Neutron's agent reads
            # one recv) cannot lock the guest out; over a set password it is
            # 409 like any other POST.
            if await self._run_store(self._store.get_password, server_id):
                return _already_set("the password is already set", server_id)
            return _stored(server_id)
        stored = await self._run_store(self._store.set_password_once, server_id, password)
        if not stored:
            return _already_set("the password is already set", server_id)
        # This worker shows the new value at once; others learn it from the feed.
        await self._forget(server_id)
        return _stored(server_id)

    def phone_home(self, request: Request, route: Route, server: Server) -> Awaitable[Outcome]:
        form = read_form(request)
        instance = ec2_instance_id(server.ec2_id)
        try:
            check_instance(route.inside, server.id, instance)
            check_instance(form.get("instance_id", ""), server.id, instance)
        except InstanceMismatch:
            self._metrics.phone_home_mismatches.inc()
            _log.warning("phone-home names another instance",
                         extra={"fields": {"server_id": server.id}})
            raise
        return self._store_phone_home(report_from_form(form, server.id))

    async def _store_phone_home(self, report: PhoneHome) -> Outcome:
        stored = await self._run_store(self._store.record_phone_home_once, report)
        if stored is None:
            # Write-once per boot: the operator clears it for the next boot.
            return _already_set("this boot already phoned home", report.server_id)
        return _stored(report.server_id)


def _stored(server_id: str) -> Outcome:
    return Response(200, b"", content_type=TEXT_HTML), server_id


def _already_set(reason: str, server_id: str) -> Outcome:
    return error_response_text(AlreadySet(reason)), server_id
