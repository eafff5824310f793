"""The metadata API's settings, checked and parsed once before serving.

Every misconfiguration refuses to start with a message that names the
setting: proxy mode without a shared secret, an unknown mode, a bad CIDR, a
vendordata file that is not a JSON object, a malformed ``name@url`` target.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType

from cloudseed.api.identify import IpNetwork, parse_networks
from cloudseed.api.vendordata import Target, load_static_vendordata, parse_targets
from cloudseed.errors import CloudseedError, ConfigError
from cloudseed.http.wire import Limits
from cloudseed.log import get_logger
from cloudseed.render import RenderOptions
from cloudseed.render.options import DocumentSigner
from cloudseed.render.sections import CONTENT_SECTION, locate
from cloudseed.render.tree import EC2_ROOT, OPENSTACK_ROOT, normalise_path
from cloudseed.settings import ApiMode, AuditSettings, Settings
from cloudseed.store.protocol import Reader

_log = get_logger("cloudseed.api")

# The map is address space reserved up front; beyond a TiB is a typo.
MAX_READY_MAP_GIB = 1024
# HMAC keys shorter than this are guessable; 16 bytes = 128 bits.
MIN_TOKEN_KEY_BYTES = 16
# An identity token long enough to be presented, short enough to be a proof.
MIN_IDENTITY_TTL_SECONDS = 60
MAX_IDENTITY_TTL_SECONDS = 3600


EMPTY_VENDORDATA: Mapping[str, object] = MappingProxyType({})

# The setting's enum (validated when settings load) is the API's mode.
Mode = ApiMode


# The largest legitimate guest body is a 1020-byte password POST.
GUEST_MAX_BODY_BYTES = 65536
# Connections one worker holds: above the waiters it allows (api/waiting.py),
# since behind an agent each long-poll is one of the agent's connections.
GUEST_MAX_CONNECTIONS = 24576

@dataclass(frozen=True)
class ApiConfig:
    mode: Mode
    shared_secret: bytes
    trusted_networks: tuple[IpNetwork, ...]
    token_key: bytes
    # Rotation: verified as well as the current one, never used to sign or issue.
    shared_secret_also_accepted: bytes
    token_key_also_accepted: bytes
    dhcp_domain: str
    static_vendordata: Mapping[str, object]
    serve_injected_files: bool
    targets: tuple[Target, ...]
    connect_timeout_seconds: float
    read_timeout_seconds: float
    breaker_failures: int
    breaker_reset_seconds: float
    access_log: bool
    cache_max_servers: int
    # The guest listener's wire limits: per-source fairness in direct mode only.
    limits: Limits
    audit: AuditSettings
    wait_max_seconds: float
    region: str
    issuer: str
    identity_token_ttl_seconds: int
    # The per-host ready map (ready/): its directory and size, or None when off.
    ready_map: Path | None
    ready_map_max_bytes: int
    # Section ids (``render.sections``) rendered ahead into it.
    ready_sections: tuple[str, ...]

    def render_options(
        self, signer: DocumentSigner | None, today: date,
        dynamic_vendordata: Mapping[str, object] = EMPTY_VENDORDATA,
    ) -> RenderOptions:
        """What the worker and the renderer render with: one place, so both agree."""
        return RenderOptions(
            region=self.region,
            identity_signer=signer,
            today=today,
            dhcp_domain=self.dhcp_domain,
            static_vendordata=self.static_vendordata,
            dynamic_vendordata=dynamic_vendordata,
            injected_files=self.serve_injected_files,
        )


def new_token_key() -> bytes:
    """A random key for when none is configured and the store's cannot be read."""
    return secrets.token_bytes(32)


def stored_token_key(settings: Settings, store: Reader) -> bytes | None:
    """The IMDSv2 token key when ``api.token_key`` is unset: the store's (made by
    migration 0009), so every API host, worker and co-located front issues and
    verifies with the same key, and a guest's token outlives any restart.

    None when a key is configured, or when the store cannot be read right now:
    then this process makes its own (``new_token_key``), and its tokens verify
    only in it -- logged, since guests then need a new token after its restart
    (cloud-init asks for one on a 401)."""
    if settings.api.token_key.reveal():
        return None
    try:
        key = store.token_key()
    except CloudseedError as error:
        why = str(error)
    else:
        if len(key) >= MIN_TOKEN_KEY_BYTES:
            return key
        why = "the store has no token key (its meta row was not made by the migrations)"
    _log.warning("the store's token key is not readable; using a key of this process's own",
                 extra={"fields": {"error": why}})
    return None


def check_api_settings(settings: Settings, token_key: bytes | None = None) -> ApiConfig:
    """Parse and check ``settings.api``; ``token_key`` overrides an empty setting."""
    api = settings.api
    try:
        mode = Mode(api.mode)
    except ValueError:
        raise ConfigError(
            f"api.mode: {api.mode!r} is not one of {', '.join(m.value for m in Mode)}"
        ) from None
    secret = settings.shared_secret.reveal().encode()
    if mode is Mode.PROXY and not secret:
        raise ConfigError(
            "shared_secret is required when api.mode is 'proxy' (set shared_secret or "
            "shared_secret_file, as the agent has it), or use api.mode = 'direct'"
        )
    if not 1 <= api.workers <= 256:
        raise ConfigError(f"api.workers: {api.workers} is not between 1 and 256")
    if not 0 <= api.port <= 65535:
        raise ConfigError(f"api.port: {api.port} is not a TCP port")
    if api.admin_host and not 0 <= api.admin_port <= 65535 - api.workers:
        raise ConfigError(f"api.admin_port: {api.admin_port} is not a TCP port")
    for name in ("vendordata_connect_timeout_seconds", "vendordata_read_timeout_seconds"):
        if getattr(api, name) <= 0:
            raise ConfigError(f"api.{name} must be more than 0")
    if api.vendordata_breaker_failures < 1:
        raise ConfigError("api.vendordata_breaker_failures must be at least 1")
    if api.cache_max_servers < 1:
        raise ConfigError("api.cache_max_servers must be at least 1")
    for name in ("max_connections_per_source", "max_requests_per_source"):
        if getattr(api, name) < 0:
            raise ConfigError(f"api.{name} must be 0 (off) or more")
    limits = Limits(max_body_bytes=GUEST_MAX_BODY_BYTES, max_connections=GUEST_MAX_CONNECTIONS)
    if mode is Mode.DIRECT:
        limits = dataclasses.replace(
            limits, max_connections_per_source=api.max_connections_per_source,
            max_requests_per_source=api.max_requests_per_source)
    key = api.token_key.reveal().encode()
    if key and len(key) < MIN_TOKEN_KEY_BYTES:
        raise ConfigError(f"api.token_key must be at least {MIN_TOKEN_KEY_BYTES} characters")
    also_key = api.token_key_also_accepted.reveal().encode()
    if also_key and len(also_key) < MIN_TOKEN_KEY_BYTES:
        raise ConfigError(
            f"api.token_key_also_accepted must be at least {MIN_TOKEN_KEY_BYTES} characters"
        )
    identity = settings.identity
    if not MIN_IDENTITY_TTL_SECONDS <= identity.token_ttl_seconds <= MAX_IDENTITY_TTL_SECONDS:
        raise ConfigError(
            f"identity.token_ttl_seconds: {identity.token_ttl_seconds} is not between "
            f"{MIN_IDENTITY_TTL_SECONDS} and {MAX_IDENTITY_TTL_SECONDS}")
    if not identity.issuer:
        raise ConfigError("identity.issuer must not be empty (verifiers match it against iss)")
    audit = settings.audit
    if not 0.05 <= audit.flush_seconds <= 60:
        raise ConfigError(f"audit.flush_seconds: {audit.flush_seconds} is not between 0.05 and 60")
    for name in ("max_pending", "keep_per_server", "max_age_days"):
        if getattr(audit, name) < 1:
            raise ConfigError(f"audit.{name} must be at least 1")
    if not 1 <= api.wait_for_change_max_seconds <= 300:
        raise ConfigError(f"api.wait_for_change_max_seconds: {api.wait_for_change_max_seconds} "
                          "is not between 1 and 300")
    targets = parse_targets(api.vendordata_dynamic_targets)
    return ApiConfig(
        ready_map=_ready_map_dir(settings) if api.ready_map and not targets else None,
        ready_map_max_bytes=_ready_map_bytes(api.ready_map_max_gib),
        ready_sections=_ready_sections(api.ready_sections),
        wait_max_seconds=api.wait_for_change_max_seconds,
        audit=audit,
        region=identity.region,
        issuer=identity.issuer,
        identity_token_ttl_seconds=identity.token_ttl_seconds,
        mode=mode,
        shared_secret=secret,
        trusted_networks=parse_networks(api.trusted_proxy_cidrs, "api.trusted_proxy_cidrs"),
        token_key=key or token_key or new_token_key(),
        shared_secret_also_accepted=settings.shared_secret_also_accepted.reveal().encode(),
        token_key_also_accepted=also_key,
        dhcp_domain=api.dhcp_domain,
        static_vendordata=load_static_vendordata(api.vendordata_static_file),
        targets=targets,
        connect_timeout_seconds=api.vendordata_connect_timeout_seconds,
        read_timeout_seconds=api.vendordata_read_timeout_seconds,
        breaker_failures=api.vendordata_breaker_failures,
        breaker_reset_seconds=api.vendordata_breaker_reset_seconds,
        access_log=api.access_log,
        serve_injected_files=api.serve_injected_files,
        cache_max_servers=api.cache_max_servers,
        limits=limits,
    )


def _ready_map_dir(settings: Settings) -> Path:
    configured = settings.api.ready_map_dir
    return Path(configured) if configured else settings.store.data_dir / "ready"


def _ready_map_bytes(gib: int) -> int:
    if not 1 <= gib <= MAX_READY_MAP_GIB:
        raise ConfigError(f"api.ready_map_max_gib: {gib} is not between 1 and {MAX_READY_MAP_GIB}")
    return gib << 30


def _ready_sections(names: tuple[str, ...]) -> tuple[str, ...]:
    """Section ids, ``latest`` resolved; each must be a per-server section."""
    sections: list[str] = []
    for name in names:
        located = locate(normalise_path(name))
        # Not the version listings (the same for every server, rendered at once)
        # nor the injected files (never read at boot).
        if located is None or located[1] or located[0] in (EC2_ROOT, OPENSTACK_ROOT,
                                                           CONTENT_SECTION):
            raise ConfigError(
                f"api.ready_sections: {name!r} is not a version directory such as "
                "'openstack/2018-08-27', 'openstack/latest', 'ec2/latest' or 'ec2/2009-04-04'")
        if located[0] not in sections:
            sections.append(located[0])
    return tuple(sections)
