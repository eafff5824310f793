"""How a worker renders a server it does not hold: read from the store, dynamic
vendor data fetched (failures left out, logged and counted), documents with
today's render options and the newest identity key.

``MetadataApp`` asks here only after the ready map (``api/ready.py``) had no
current entry; the prefetch renders its bulk reads with ``rendered``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from cloudseed.api.cache import FOREVER, RenderedServer
from cloudseed.api.config import EMPTY_VENDORDATA, ApiConfig
from cloudseed.api.guest_attributes import RunStore
from cloudseed.api.observe import ApiMetrics
from cloudseed.api.vendordata import Failure, VendordataClient
from cloudseed.errors import NotFound
from cloudseed.identity import Keyring
from cloudseed.log import get_logger
from cloudseed.model import ServerView
from cloudseed.render import RenderOptions
from cloudseed.render.sections import ServerDocuments
from cloudseed.store.protocol import Store

_log = get_logger("cloudseed.api")


class ServerLoader:
    """``identity``: the signer of identity tokens and of signed documents, updated by
    the app when the store's keys change."""

    def __init__(self, store: Store, run_store: RunStore, config: ApiConfig,
                 metrics: ApiMetrics, *, clock: Callable[[], float],
                 monotonic: Callable[[], float]) -> None:
        self._store = store
        self._run_store = run_store
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self.identity = Keyring()
        self._vendordata = VendordataClient(
            config.targets,
            connect_timeout_seconds=config.connect_timeout_seconds,
            read_timeout_seconds=config.read_timeout_seconds,
            breaker_failures=config.breaker_failures,
            breaker_reset_seconds=config.breaker_reset_seconds,
            clock=monotonic,
        )

    async def load(self, server_id: str) -> RenderedServer | None:
        """The server from the store (None: there is none), its sections rendered on
        first request."""
        try:
            view = await self._run_store(self._store.server_view, server_id)
        except NotFound:
            return None
        vendordata = await self._vendordata.fetch(view)
        self._log_vendordata_failures(server_id, vendordata.failures)
        return self.rendered(view, vendordata.data, vendordata.refresh_at)

    def rendered(
        self,
        view: ServerView,
        dynamic_vendordata: Mapping[str, object] = EMPTY_VENDORDATA,
        refresh_at: float = FOREVER,
    ) -> RenderedServer:
        """A server's documents (sections render on first request) with today's options."""
        self._metrics.renders.inc()
        return RenderedServer.of(ServerDocuments(view, self.options(dynamic_vendordata)),
                                 refresh_at)

    def options(self, dynamic_vendordata: Mapping[str, object] = EMPTY_VENDORDATA
                ) -> RenderOptions:
        return self._config.render_options(
            self.identity.signer, datetime.fromtimestamp(self._clock(), UTC).date(),
            dynamic_vendordata)

    def _log_vendordata_failures(self, server_id: str, failures: Sequence[Failure]) -> None:
        for failure in failures:
            self._metrics.vendordata_failures.inc(failure.target, failure.reason)
            _log.warning(
                "vendordata target left out",
                extra={
                    "fields": {
                        "target": failure.target,
                        "reason": failure.reason,
                        "server_id": server_id,
                    }
                },
            )
