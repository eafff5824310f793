"""The haproxy option: the built-in proxy's rules as an haproxy config, and its process.

Neutron runs one haproxy per namespace (anchors §2.1). We generate the same
shape — ``global``/``defaults``/``listen listener``, ``server metadata`` on
the agent's Unix socket — with the hygiene Neutron lacked: *every* client
identity header is deleted by one regex (``proxy.hygiene``), our own
router/network header is *set*, ``option forwardfor`` then adds the one
``X-Forwarded-For`` (haproxy applies it after the ``http-request`` rules),
and a PUT carrying a client ``X-Forwarded-For``/``Forwarded`` is refused
with 400 before any of that. Size limits answer 414/431/413 like our HTTP
core; ``timeout http-request`` covers slow headers and, with
``http-buffer-request``, slow bodies (408).

Differences from the built-in proxy, by design of haproxy: the agent down is
503 (haproxy's "no server available") rather than 502; a request with both
Content-Length and Transfer-Encoding is forwarded chunked with the length
dropped (RFC 9112 §6.3) rather than refused; header bytes count haproxy's
whole header block.

The process is run as Neutron does: config file ``<dir>/<uuid>.conf``,
compared with the file on disk ignoring the ``pidfile`` line, replaced
when it changes and respawned when haproxy dies (``cloudseed.supervisor``'s
policy), stopped with SIGUSR1 (soft stop) then SIGKILL after the grace.
A listener handed over by our supervisor is bound as ``fd@N``.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cloudseed.auth.headers import HOP_LIMIT as HOP_LIMIT_HEADER
from cloudseed.errors import ConfigError
from cloudseed.http.fairness import per_source_connection_cap
from cloudseed.log import get_logger
from cloudseed.proxy.hygiene import IDENTITY_HEADER_REGEX
from cloudseed.proxy.listen import ListenAddress
from cloudseed.proxy.relay import (
    AGENT_CONNECT_TIMEOUT_SECONDS,
    KEEP_ALIVE_SECONDS,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_TARGET_BYTES,
    ProxyScope,
    guest_limits,
)
from cloudseed.settings import ProxySettings
from cloudseed.supervisor import STOP_GRACE_SECONDS, Child, Supervisor, spawn

log = get_logger("proxy.haproxy")

# Room for MAX_BODY_BYTES of buffered body plus the header block.
BUFSIZE_BYTES = 32768
# Sources the per-source table can tell apart; a namespace has at most a few
# thousand guests, and a full table only stops tracking new sources.
STICK_TABLE_SOURCES = 65536
# Neutron's timeout_client is its keep-alive timeout plus 2 s.
CLIENT_TIMEOUT_SECONDS = KEEP_ALIVE_SECONDS + 2


@dataclass(frozen=True)
class HaproxyConfig:
    uuid: str  # the router's or network's id: names the files
    scope: ProxyScope
    listeners: tuple[ListenAddress, ...]
    agent_socket: str
    pidfile: str
    settings: ProxySettings = field(default_factory=ProxySettings)
    status_socket: str = ""
    user: str = ""
    group: str = ""
    # e.g. "/dev/log local0 info" or "stderr format raw local0 info"; empty = no logs.
    log_target: str = ""
    # Listening sockets our supervisor hands over, as fd numbers (``http.inherit``):
    # bound as fd@N instead of the addresses, so they outlive any one haproxy.
    inherited_fds: tuple[int, ...] = ()


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '\\n"'


def _bind(address: ListenAddress) -> str:
    host, _, zone = address.host.partition("%")
    if ":" in host:
        line = f"bind {host}:{address.port}"
        if host == "::":
            line += " v4v6"
    else:
        line = f"bind {host}:{address.port}"
    if zone:
        line += f" interface {zone}"
    return line


def _refuse(status: int, message: str, condition: str) -> str:
    return (
        f"    http-request deny status {status} content-type text/plain "
        f"string {_quote(message)} if {condition}"
    )


def render_config(config: HaproxyConfig) -> str:
    s = config.settings
    header_name, header_value = config.scope.header
    lines = ["global"]
    if config.log_target:
        lines += [
            f"    log {config.log_target}",
            f"    log-tag haproxy-metadata-proxy-{config.uuid}",
        ]
    if config.user:
        lines.append(f"    user {config.user}")
    if config.group:
        lines.append(f"    group {config.group}")
    lines += [
        f"    maxconn {s.max_connections}",
        "    nbthread 1",
        f"    tune.bufsize {BUFSIZE_BYTES}",
        f"    pidfile {config.pidfile}",
        "",
        "defaults",
        "    mode http",
    ]
    if config.log_target:
        lines += ["    log global", "    option httplog", "    option dontlognull"]
    lines += [
        "    option http-keep-alive",
        "    option http-buffer-request",
        "    http-reuse safe",
        # Unix-socket connects fail at once; one quick retry covers an agent
        # restart without keeping the guest waiting past a second. An agent
        # that died mid-request (closed with no byte of answer) is asked again
        # once, on the socket its replacement inherits -- for GET/HEAD only:
        # a POST (a password) may have been applied before it died.
        "    retries 1",
        "    retry-on conn-failure empty-response",
        f"    timeout connect {_ms(AGENT_CONNECT_TIMEOUT_SECONDS)}",
        f"    timeout client {_ms(CLIENT_TIMEOUT_SECONDS)}",
        f"    timeout server {_ms(s.agent_timeout_seconds)}",
        f"    timeout http-request {_ms(max(s.header_timeout_seconds, s.body_timeout_seconds))}",
        f"    timeout http-keep-alive {_ms(KEEP_ALIVE_SECONDS)}",
        "",
        "listen listener",
    ]
    if config.inherited_fds:
        lines += [f"    bind fd@{fd}" for fd in config.inherited_fds]
    else:
        lines += [f"    {_bind(address)}" for address in config.listeners]
    per_source = per_source_connection_cap(guest_limits(s))
    if per_source:
        # The built-in proxy's per-source cap (http/fairness.py), as haproxy
        # says it: count each source's connections, close those over the cap
        # at once. Requests in flight need no rule of their own: haproxy
        # answers one request per connection at a time.
        lines += [
            f"    stick-table type ipv6 size {STICK_TABLE_SOURCES} expire 60s store conn_cur",
            "    tcp-request connection track-sc0 src",
            f"    tcp-request connection reject if {{ sc0_conn_cur gt {per_source} }}",
        ]
    lines += [
        "    acl client_forwarded req.hdr_cnt(x-forwarded-for) gt 0",
        "    acl client_forwarded req.hdr_cnt(x_forwarded_for) gt 0",
        "    acl client_forwarded req.hdr_cnt(forwarded) gt 0",
        _refuse(414, "request target too long", f"{{ url_len gt {MAX_TARGET_BYTES} }}"),
        _refuse(431, "request headers too large", f"{{ req.hdr_cnt gt {MAX_HEADERS} }}"),
        _refuse(431, "request headers too large", f"{{ req.hdrs,length gt {MAX_HEADER_BYTES} }}"),
        _refuse(413, f"request body larger than {MAX_BODY_BYTES} bytes",
                f"{{ req.hdr_val(content-length) gt {MAX_BODY_BYTES} }}"),
        _refuse(413, f"request body larger than {MAX_BODY_BYTES} bytes",
                f"{{ req.body_size gt {MAX_BODY_BYTES} }}"),
        _refuse(400, "X-Forwarded-For is not allowed on a PUT request",
                "METH_PUT client_forwarded"),
        "    http-request disable-l7-retry unless METH_GET",
        f"    http-request del-header {IDENTITY_HEADER_REGEX} -m reg",
        f"    http-request set-header {header_name} {header_value}",
        # The token reply's hop limit is for a tier that can set a reply's IP
        # TTL; haproxy cannot, so it only keeps the header from the guest.
        f"    http-response del-header {HOP_LIMIT_HEADER}",
        # After the http-request rules: the only X-Forwarded-For is ours.
        "    option forwardfor",
        f"    server metadata unix@{config.agent_socket}",
    ]
    if config.status_socket:
        lines += [
            "",
            "listen status",
            f"    bind unix@{config.status_socket} mode 660",
            "    http-request return status 200 content-type application/json "
            + 'string "{\\"status\\":\\"ok\\"}\\n" if { path /healthz }',
            "    http-request use-service prometheus-exporter if { path /metrics }",
            "    http-request return status 404 content-type text/plain "
            + "string \"try /healthz or /metrics\\n\"",
        ]
    return "\n".join(lines) + "\n"


def _without_pidfile(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("pidfile"))


class HaproxyProcess:
    """One haproxy under ``cloudseed.supervisor``, in the foreground of our process tree.

    ``sockets``: listening sockets we opened (``fd@3``.. in the config), so
    haproxy restarts and config changes never close the listener. A config
    change starts the new haproxy before the old one soft-stops (SIGUSR1:
    it stops accepting, finishes what it has, then exits).
    """

    def __init__(
        self,
        uuid: str,
        config_dir: str | Path,
        *,
        binary: str = "/usr/sbin/haproxy",
        netns: str = "",
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
        sockets: Sequence[tuple[str, socket.socket]] = (),
    ) -> None:
        self.uuid = uuid
        self.config_dir = Path(config_dir)
        self.binary = binary
        self.netns = netns
        self.stop_grace_seconds = stop_grace_seconds
        self.sockets = tuple(sockets)
        self.supervisor = Supervisor([], name=f"haproxy {uuid}")

    @property
    def config_path(self) -> Path:
        return self.config_dir / f"{self.uuid}.conf"

    @property
    def pidfile(self) -> Path:
        return self.config_dir / f"{self.uuid}.pid"

    @property
    def pid(self) -> int:
        children = self.supervisor.children
        return children[0].pid if children else 0

    @property
    def restarts(self) -> int:
        children = self.supervisor.children
        return children[0].restarts if children else 0

    def is_running(self) -> bool:
        return self.pid != 0

    def ensure(self, config_text: str) -> bool:
        """Make haproxy run ``config_text``. Returns True when it (re)started."""
        current = None
        if self.config_path.exists():
            current = self.config_path.read_text()
        same = current is not None and _without_pidfile(current) == _without_pidfile(config_text)
        if same and self.is_running():
            return False
        self.config_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".conf.tmp")
        tmp.write_text(config_text)
        self._check(tmp)
        os.replace(tmp, self.config_path)
        # -db: stay in the foreground so that we, not a pidfile, own its life.
        fresh = Child("haproxy", self._command("-db", "-f", str(self.config_path)),
                      sockets=self.sockets, stop_signal=signal.SIGUSR1)
        children = self.supervisor.children
        if children and children[0].pid:
            self.supervisor.replace(children[0], fresh)
        else:
            self.supervisor.children = [fresh]
            self.supervisor.start()
        return True

    def check(self) -> bool:
        """Respawn haproxy if it died (with the supervisor's back-off); True when it did."""
        before = self.restarts
        self.supervisor.poll()
        return self.restarts != before

    def stop(self) -> None:
        """Soft stop (SIGUSR1), then SIGKILL after the grace period."""
        self.supervisor.stop(self.stop_grace_seconds)
        self.supervisor.children = []
        self.supervisor.stopping = False

    def _command(self, *args: str) -> list[str]:
        command = [self.binary, *args]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        return command

    def _check(self, path: Path) -> None:
        # With the same fds as the real run: haproxy checks that fd@N exists.
        read_end, write_end = os.pipe()
        try:
            pid = spawn([self.binary, "-c", "-q", "-f", str(path)], os.environ,
                        sockets=self.sockets, stdout=write_end)
        finally:
            os.close(write_end)
        with os.fdopen(read_end, "rb") as output:
            errors = output.read()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            path.unlink(missing_ok=True)
            raise ConfigError(f"haproxy rejected the generated config: {errors.decode()[-2000:]}")


def config_for(
    scope: ProxyScope,
    listeners: Sequence[ListenAddress],
    agent_socket: str,
    config_dir: str | Path,
    settings: ProxySettings,
    *,
    status_socket: str = "",
    inherited_fds: Sequence[int] = (),
) -> HaproxyConfig:
    uuid = scope.router_id or scope.network_id
    return HaproxyConfig(
        uuid=uuid,
        scope=scope,
        listeners=tuple(listeners),
        agent_socket=agent_socket,
        pidfile=str(Path(config_dir) / f"{uuid}.pid"),
        settings=settings,
        status_socket=status_socket,
        inherited_fds=tuple(inherited_fds),
    )
