"""One host's data plane: settings + store → plan → reconcile, for the CLI and doctor."""

from __future__ import annotations

from dataclasses import dataclass, field

from cloudseed.dataplane import plug, reconcile
from cloudseed.dataplane.plan import DesiredState, PlanContext, plan
from cloudseed.dataplane.plug import PlugRecord
from cloudseed.dataplane.runner import Runner
from cloudseed.errors import NotFound
from cloudseed.model import Port
from cloudseed.settings import Settings
from cloudseed.store.protocol import Reader


@dataclass
class DataplaneHost:
    settings: Settings
    reader: Reader
    runner: Runner = field(default_factory=Runner)

    @property
    def plan_context(self) -> PlanContext:
        return PlanContext.from_settings(self.settings)

    @property
    def context(self) -> reconcile.Context:
        ctx = self.plan_context
        return reconcile.Context(ctx.state_dir, ctx.root_netns,
                                 self.settings.dataplane.stop_grace_seconds)

    def desired(self) -> DesiredState:
        return plan(reconcile.load_inventory(self.reader), self.plan_context)

    def sync(self, desired: DesiredState | None = None) -> list[reconcile.Action]:
        """Make the host match ``desired`` (default: the plan of the store as it is now)."""
        return reconcile.sync(self.runner, desired or self.desired(), self.context)

    def pending(self) -> tuple[DesiredState, list[reconcile.Action]]:
        desired = self.desired()
        observed = reconcile.observe(self.runner, desired, self.context)
        return desired, reconcile.diff(desired, observed, self.context)

    def teardown(self) -> list[str]:
        return reconcile.teardown(self.runner, self.context)

    def server_port(self, server: str, port_id: str | None = None) -> tuple[str, Port]:
        """The server's id and the port to plug (the given one, else its first)."""
        server_id = self.reader.get_server(server).id
        ports = list(self.reader.list_ports(server_id=server_id))
        if port_id:
            ports = [p for p in ports if p.id == port_id]
        if not ports:
            raise NotFound("port", port_id or server, f"server {server} has no port"
                           + (f" {port_id}" if port_id else "") + "; register one first")
        return server_id, ports[0]

    def plug(self, server: str, *, netns: str | None = None, tap: str | None = None,
             port_id: str | None = None, create: bool = False, tap_netns: str | None = None,
             tap_user: str = "") -> PlugRecord:
        server_id, port = self.server_port(server, port_id)
        if netns:
            mtu = self.reader.get_network(port.network_id).mtu
            return plug.plug_namespace(self.runner, self.context, server_id, port, netns, mtu=mtu)
        assert tap
        return plug.plug_tap(self.runner, self.context, server_id, port, tap, create=create,
                             device_netns=tap_netns, owner=tap_user)

    def unplug(self, server: str) -> PlugRecord:
        try:
            server_id = self.reader.get_server(server).id
        except NotFound:
            server_id = server  # the server may be gone from the store already
        return plug.unplug(self.runner, self.context, server_id)
