"""Typed settings, read once at start-up and handed to each component.

Sources, later ones winning: built-in defaults, a TOML file
(``--config FILE`` or ``$CLOUDSEED_CONFIG``), environment variables
``CLOUDSEED_<SECTION>_<KEY>`` (e.g. ``CLOUDSEED_API_PORT=8775``), then
command-line flags, which callers pass as ``overrides``.

Each component receives its own frozen section; no module reads global
configuration. Secrets (tokens, the shared signing secret, the token key)
may be given inline, or as ``<key>_file`` pointing at a file holding them,
and are wrapped in ``Secret`` so they never print.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cloudseed.errors import ConfigError

ENV_PREFIX = "CLOUDSEED_"
# Variables with the prefix that are not settings: the config path itself and
# the CLI's client options (CLOUDSEED_TEST_* belong to the test suite).
NON_SETTING_ENV = frozenset({"CLOUDSEED_CONFIG", "CLOUDSEED_URL", "CLOUDSEED_TOKEN",
                             "CLOUDSEED_CA_FILE", "CLOUDSEED_CLIENT_CERT",
                             "CLOUDSEED_CLIENT_KEY"})


# Enumerated settings: a value outside the enum refuses to load, naming the choices
# (a typo must never silently select a default behaviour).
class ApiMode(StrEnum):
    PROXY = "proxy"
    DIRECT = "direct"


class ProxyImplementation(StrEnum):
    BUILTIN = "builtin"
    HAPROXY = "haproxy"
    # One built-in front for every namespace of the host (proxy/front.py).
    SHARED = "shared"


class FrontAnswers(StrEnum):
    """Who answers a guest on the shared front (dataplane.front_answers)."""

    # Relayed to the agent, which signs and forwards to the API (Nova/Neutron's chain).
    RELAY = "relay"
    # Resolved and answered in the front's own process (proxy/colocated.py).
    CO_LOCATED = "co-located"


class DriveFormatSetting(StrEnum):
    ISO9660 = "iso9660"
    VFAT = "vfat"
    NOCLOUD = "nocloud"


class Secret:
    """A secret value that never shows itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def default_data_dir() -> Path:
    """Where state lives: systemd's StateDirectory, /var/lib/cloudseed for root, else XDG's."""
    # Set by systemd for a unit with StateDirectory= (the shipped units run as a
    # user whose XDG home would be wrong); several directories are ':'-separated.
    state_directory = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_directory:
        return Path(state_directory)
    if os.geteuid() == 0:
        return Path("/var/lib/cloudseed")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cloudseed"


@dataclass(frozen=True)
class StoreSettings:
    """The inventory store: SQLite in the data directory, or PostgreSQL shared by hosts."""

    # SQLAlchemy URL. Empty means SQLite in data_dir/cloudseed.db.
    url: str = ""
    # Where state lives: the SQLite store, generated secrets, data plane and drive files.
    data_dir: Path = field(default_factory=default_data_dir)
    # How often SQLite readers look for a new revision (PostgreSQL is woken
    # by NOTIFY and uses this only as a fallback).
    poll_interval_seconds: float = 0.1

    def resolved_url(self) -> str:
        return self.url or f"sqlite:///{self.data_dir / 'cloudseed.db'}"


@dataclass(frozen=True)
class ControlSettings:
    """``cloudseed control``: the inventory's HTTP API (bearer tokens, optional TLS)."""

    # Address the control API listens on.
    host: str = "127.0.0.1"
    # Port of the control API (Nova's compute API is 8774 too).
    port: int = 8774
    # Bearer tokens accepted by the control API (comma separated in env).
    tokens: tuple[Secret, ...] = ()
    # TLS: PEM certificate (chain) and key; empty = plain HTTP (loopback only, please).
    tls_cert_file: str = ""
    # PEM private key of tls_cert_file.
    tls_key_file: str = ""
    # If set, clients must present a certificate this CA signed (the CLI: --client-cert).
    tls_client_ca_file: str = ""


@dataclass(frozen=True)
class ApiSettings:
    """``cloudseed api``: the guest-facing metadata API."""

    # Address the guest-facing metadata API listens on.
    host: str = "0.0.0.0"  # noqa: S104 - guests reach the API from their networks
    # Port of the metadata API (Nova's metadata_listen_port).
    port: int = 8775
    # Listen on this Unix socket instead of host:port, if set.
    unix_socket: str = ""
    # Pre-forked worker processes sharing the listening socket (1-256).
    workers: int = 1
    # "proxy": identity from signed X-Instance-ID headers (behind an agent);
    # "direct": identity from the source address (flat network, no agent).
    mode: ApiMode = ApiMode.PROXY
    # Direct mode only (behind an agent every request has the agent's address):
    # connections one guest address may hold (429 beyond; at most api's cap / 4).
    max_connections_per_source: int = 64
    # Direct mode only: requests one guest address may have in flight (429 beyond).
    max_requests_per_source: int = 16
    # Direct mode only: X-Forwarded-For is believed only from these networks.
    trusted_proxy_cidrs: tuple[str, ...] = ()
    # Appended to hostnames as Nova's [api] dhcp_domain does; empty = FQDN as given.
    dhcp_domain: str = "novalocal"
    # Key for IMDSv2 session tokens; empty = the store's own key (made once per
    # store), so every API host and restart agrees without configuring one.
    token_key: Secret = field(default_factory=lambda: Secret(""))
    # Key rotation: tokens made with this key verify too; it issues none.
    token_key_also_accepted: Secret = field(default_factory=lambda: Secret(""))
    # JSON object served as vendor_data.json (Nova's vendordata_jsonfile_path).
    vendordata_static_file: str = ""
    # Injected files (meta_data.json "files", /openstack/content/NNNN) over
    # HTTP too. Off by default, as Nova: they go on the config drive only,
    # since any process in the guest can read the metadata service.
    serve_injected_files: bool = False
    # "name@url" targets for vendor_data2.json.
    vendordata_dynamic_targets: tuple[str, ...] = ()
    # Dynamic vendor data: connect timeout per target.
    vendordata_connect_timeout_seconds: float = 5.0
    # Dynamic vendor data: read timeout per target.
    vendordata_read_timeout_seconds: float = 5.0
    # Circuit breaker per dynamic target: after this many consecutive failures
    # the target is skipped for vendordata_breaker_reset_seconds.
    vendordata_breaker_failures: int = 3
    # How long a tripped target is skipped before it is tried again.
    vendordata_breaker_reset_seconds: float = 30.0
    # /healthz and /metrics live on their own listener, never on guest paths.
    # Worker N of a pre-forked API listens on admin_port + N; empty admin_host
    # turns the admin listener off.
    admin_host: str = "127.0.0.1"
    # Port of the admin listener (/healthz, /metrics) of worker 0.
    admin_port: int = 9775
    # One JSON line per guest request on stderr (never a signature or token).
    access_log: bool = True
    # Servers held per worker, the first this many by id read in bulk before the
    # worker is ready (api/prefetch.py); the oldest is dropped beyond this. With
    # the ready map a worker holds at most 2,000 (the rest are a map read away).
    cache_max_servers: int = 20000
    # SIGTERM/SIGHUP: how long old workers may finish in-flight requests.
    graceful_timeout_seconds: float = 30.0
    # ?wait_for_change=true: the longest (and default) timeout_sec. Keep it
    # below agent.api_timeout_seconds and proxy.agent_timeout_seconds (10 and
    # 15 s by default), so the relays never cut a long-poll (1-300).
    wait_for_change_max_seconds: float = 8.0
    # The per-host ready map (issue #17): one renderer process renders every
    # server once per change into a memory-mapped file that every worker on the
    # host reads, so a guest's first request needs neither the store nor a
    # render. Off: each worker reads and renders on its own (api/prefetch.py).
    # Not used with vendordata_dynamic_targets (fetched per server, per worker).
    ready_map: bool = True
    # Maps live here, one directory per store (named by the store's random id);
    # empty = <store.data_dir>/ready.
    ready_map_dir: str = ""
    # Upper bound of the map file (address space reserved, disk used as filled).
    ready_map_max_gib: int = 64
    # Sections rendered ahead for every server (the rest render in the worker
    # on first request): cloud-init's OpenStack reads, its EC2 reads, and
    # "latest" of both trees.
    ready_sections: tuple[str, ...] = (
        "openstack/2018-08-27", "openstack/latest", "ec2/latest", "ec2/2009-04-04")


@dataclass(frozen=True)
class IdentitySettings:
    """Signed instance identity: AWS's identity document and the audience JWT."""

    # The identity document's "region" (the OpenStack region name).
    region: str = "RegionOne"
    # The JWT's "iss": who vouches for the guest (a URL if verifiers want one).
    issuer: str = "cloudseed"
    # Lifetime of an identity token (60-3600).
    token_ttl_seconds: int = 600


@dataclass(frozen=True)
class AuditSettings:
    """The access audit: reads of sensitive documents and guest writes, per server."""

    # Record them (the metadata API's workers append them in batches).
    enabled: bool = True
    # How often a worker writes what it recorded; a crash loses at most this much.
    flush_seconds: float = 1.0
    # Records a worker holds while the store is away; newer ones are dropped
    # (and counted in /metrics) beyond this.
    max_pending: int = 10000
    # Records kept per server (the oldest go first).
    keep_per_server: int = 1000
    # Records older than this are deleted.
    max_age_days: int = 90


@dataclass(frozen=True)
class AgentSettings:
    """``cloudseed agent``: maps a proxy's (namespace, guest IP) to a server, signs, forwards."""

    # Unix socket the agent listens on; the namespace proxies connect to it.
    socket_path: str = "/run/cloudseed/metadata_proxy"
    # File mode of the agent socket.
    socket_mode: int = 0o660
    # Where the agent forwards signed requests: the metadata API.
    api_url: str = "http://127.0.0.1:8775"
    # How long the agent waits for the API's answer before a 504.
    api_timeout_seconds: float = 10.0
    # Address of the agent's /healthz and /metrics listener.
    metrics_host: str = "127.0.0.1"
    # Port of the agent's /healthz and /metrics listener.
    metrics_port: int = 9698
    # Unix socket for /healthz and /metrics instead of metrics_host:port, if set.
    metrics_socket: str = ""
    # Owner of the agent socket, "user" or "user:group"; empty = the agent's own.
    socket_owner: str = ""
    # A network node serves hundreds of namespaces' proxies (Neutron: 4096).
    socket_backlog: int = 4096
    # How long the agent waits to connect to the API.
    api_connect_timeout_seconds: float = 2.0
    # TLS to the API (https api_url): CA bundle, client certificate and key.
    api_ca_file: str = ""
    # Client certificate the agent shows the API, if it asks for one.
    api_cert_file: str = ""
    # Private key of api_cert_file.
    api_key_file: str = ""
    # Per-server token bucket. cloud-init reads ~30 paths per boot stage; a
    # burst of 120 covers two stages plus retries, 10/s after that.
    rate_limit_enabled: bool = True
    # Requests per second per server once the burst is spent.
    rate_limit_per_second: float = 10.0
    # Requests a server may make at once.
    rate_limit_burst: int = 120


@dataclass(frozen=True)
class ProxySettings:
    """``cloudseed proxy``: the per-namespace proxy in front of the agent."""

    # The agent's Unix socket the proxy forwards to (agent.socket_path).
    agent_socket: str = "/run/cloudseed/metadata_proxy"
    # "builtin" (cloudseed's own) or "haproxy" (a generated config and haproxy);
    # "shared" only with --listeners-file (the data plane's one front for every namespace).
    implementation: ProxyImplementation = ProxyImplementation.BUILTIN
    # Longer than agent.api_timeout_seconds, so the agent's 504 reaches the guest.
    agent_timeout_seconds: float = 15.0
    # Neutron's haproxy maxconn.
    max_connections: int = 1024
    # Per guest address (built-in proxy; see http/fairness.py). cloud-init uses
    # one connection at a time; 64 leaves room for several agents in a guest,
    # and is cut to max_connections / 4 so that one guest can never fill the proxy.
    max_connections_per_source: int = 64
    # Requests one guest may have waiting on the agent at once; more get 429.
    max_requests_per_source: int = 16
    # Slow clients: the whole header block, then the body, within these.
    header_timeout_seconds: float = 10.0
    # Time allowed for the request body after the headers.
    body_timeout_seconds: float = 10.0
    # haproxy: config files live in <haproxy_config_dir>/<uuid>.conf;
    # empty = <store.data_dir>/ns-metadata-proxy (Neutron's layout).
    haproxy_config_dir: str = ""
    # The haproxy executable for the haproxy implementation.
    haproxy_binary: str = "/usr/sbin/haproxy"


@dataclass(frozen=True)
class DataplaneSettings:
    """``cloudseed dataplane`` and ``cloudseed doctor`` (Neutron's L3/DHCP agent options)."""

    # Files, pid records and dnsmasq host/option files; empty = <store.data_dir>/dataplane.
    state_dir: str = ""
    # Parent namespace that holds the bridges and outer veth ends; empty = the host's own.
    root_netns: str = ""
    # "builtin" (a cloudseed proxy per namespace), "haproxy" (a haproxy per namespace,
    # Neutron's layout) or "shared" (one cloudseed front listening in every namespace).
    proxy_implementation: ProxyImplementation = ProxyImplementation.BUILTIN
    # With "shared": "relay" (the front relays to the agent, which signs for the API:
    # the split, Nova/Neutron-compatible chain) or "co-located" (the front resolves from
    # the agent's address map and answers from the metadata app in its own process; for
    # hosts that hold the store's API settings -- docs/DEPLOYMENTS.md).
    front_answers: FrontAnswers = FrontAnswers.RELAY
    # Neutron's force_metadata: serve metadata from the DHCP namespace on every network.
    force_metadata: bool = False
    # Neutron's enable_isolated_metadata: serve it there on networks without a router.
    enable_isolated_metadata: bool = True
    # Port the router namespace's REDIRECT rule sends 169.254.169.254:80 to (Neutron's 9697).
    router_proxy_port: int = 9697
    # Domain dnsmasq gives guests (Neutron's dns_domain).
    dns_domain: str = "openstacklocal"
    # DHCP lease time (Neutron's dhcp_lease_duration).
    dhcp_lease_seconds: int = 86400
    # Neutron's ProcessMonitor stops with SIGTERM and kills after 5 s.
    stop_grace_seconds: float = 5.0
    # The command that runs `cloudseed proxy` inside namespaces; empty = this installation.
    cloudseed_command: tuple[str, ...] = ()
    # dnsmasq's --user; empty = the user running sync, who owns (and can read) its
    # files even in a 0700 data dir. "nobody" only with a state_dir others can read.
    dnsmasq_user: str = ""


@dataclass(frozen=True)
class ConfigDriveSettings:
    """``cloudseed configdrive`` and the control API's drive endpoint.

    Host names and static vendor data come from ``api.dhcp_domain`` and
    ``api.vendordata_static_file``, so a drive says what the API says.
    """

    # HMAC key the drives' random_seed is derived from (configdrive.seed). No
    # default: a known key would make every guest's seed predictable;
    # `cloudseed serve` generates one into the data dir.
    seed_key: Secret = field(default_factory=lambda: Secret(""))
    # Format of the images `cloudseed configdrive keep` maintains:
    # iso9660 (Nova's default), vfat or nocloud.
    format: DriveFormatSetting = DriveFormatSetting.ISO9660
    # Where `keep` maintains <server-id>.iso|.img; empty = <store.data_dir>/configdrive.
    directory: str = ""


@dataclass(frozen=True)
class LibvirtSettings:
    """``cloudseed libvirt import|hook|sync``: servers from libvirt domains."""

    # Connection for `libvirt sync` (read-only); test:///default is libvirt's test driver.
    uri: str = "qemu:///system"
    # Where libvirt keeps network definitions; the hook reads them here because a
    # hook must not call back into libvirtd (it waits for the hook: deadlock).
    network_dir: str = "/etc/libvirt/qemu/networks"
    # The hook also writes the domain's config drive to
    # <configdrive.directory>/<uuid>.iso before the domain starts.
    hook_config_drive: bool = False
    # libvirtd waits for its hook; a control API that does not answer must not hang it.
    hook_timeout_seconds: float = 10.0
    # A failed registration stops the domain from starting (libvirt's rule for a
    # hook that exits non-zero); off by default: the guest boots without metadata.
    hook_failure_blocks_start: bool = False


@dataclass(frozen=True)
class Settings:
    store: StoreSettings = field(default_factory=StoreSettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    dataplane: DataplaneSettings = field(default_factory=DataplaneSettings)
    configdrive: ConfigDriveSettings = field(default_factory=ConfigDriveSettings)
    libvirt: LibvirtSettings = field(default_factory=LibvirtSettings)
    # HMAC key shared by the agent (signs) and the API (verifies): Nova's and
    # Neutron's metadata_proxy_shared_secret.
    shared_secret: Secret = field(default_factory=lambda: Secret(""))
    # Secret rotation: the API also accepts signatures made with this one
    # (agents never sign with it). See docs/OPERATIONS.md.
    shared_secret_also_accepted: Secret = field(default_factory=lambda: Secret(""))

    @property
    def data_dir(self) -> Path:
        return self.store.data_dir


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from file, environment and overrides (``"api.port": 8776``)."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"config file {path}: no such file; check the path, create it or drop --config"
            ) from None
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ConfigError(
                f"config file {path}: {reason}; give a TOML file this user can read"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"config file {path}: not UTF-8 text; save it as UTF-8 TOML"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    merged = _merge_env(raw, env)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        target = merged.setdefault(section, {}) if section else merged
        target[key] = value
    settings: Settings = _build(Settings, merged, "")
    return settings


def _merge_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    # Every section, from the defaults (the fields' types are only strings here).
    defaults = Settings()
    sections = {f.name for f in dataclasses.fields(Settings)
                if dataclasses.is_dataclass(getattr(defaults, f.name))}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        if name.startswith(f"{ENV_PREFIX}TEST_"):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section in sections and key:
            merged.setdefault(section, {})[key] = value
        else:
            merged[rest] = value
    return merged


def _build(cls: type[Any], data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for raw_key, raw_value in data.items():
        key, value = raw_key, raw_value
        if raw_key.endswith("_file") and raw_key[: -len("_file")] in known:
            key = raw_key[: -len("_file")]
            try:
                value = Path(raw_value).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"{where}{key}_file: cannot read {raw_value}: {exc.strerror}"
                ) from None
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{where}{key}_file: {raw_value} is not UTF-8 text; write the value as text"
                ) from None
        if key not in known:
            raise ConfigError(
                f"unknown setting {where}{key}; `cloudseed config example` lists every setting"
            )
        values[key] = _coerce(hints[key], value, f"{where}{key}")
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table")
        return _build(hint, value, f"{where}.")
    origin = typing.get_origin(hint)
    try:
        if hint is Secret:
            return Secret(str(value))
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                    raise ValueError(value)
                return value.lower() in {"1", "true", "yes"}
            return bool(value)
        if hint is int:
            return int(value, 0) if isinstance(value, str) else int(value)
        if hint is float:
            return float(value)
        if hint is Path:
            return Path(value)
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            if value not in {member.value for member in hint}:
                choices = ", ".join(repr(member.value) for member in hint)
                raise ConfigError(f"{where}: {value!r} is not one of {choices}")
            return hint(value)
        if hint is str:
            return str(value)
        if origin is tuple:
            (item_hint, _) = typing.get_args(hint)
            items = (
                [v.strip() for v in value.split(",") if v.strip()]
                if isinstance(value, str)
                else list(value)
            )
            return tuple(_coerce(item_hint, item, where) for item in items)
        if origin in (typing.Union, types.UnionType):
            return value
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: {value!r} is not a valid {getattr(hint, '__name__', hint)}"
        ) from None
    return value
