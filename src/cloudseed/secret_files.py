"""Secrets that ``cloudseed serve`` hands to its tiers: by file path, never by value.

A one-machine stack needs a shared signing secret (agent → API), a control API
token and a config drive seed key. When the operator has not configured them,
they are generated once into ``<data_dir>/secrets/`` (mode 0600, directory
0700). The IMDSv2 token key is not one of them: unset, it is the store's
(``api.config.stored_token_key``), the same for every host on the store.

Every tier gets its secrets as ``CLOUDSEED_*_FILE`` environment variables —
paths, so no secret appears in a process's environment or command line
(``/proc/<pid>/environ`` and ``cmdline`` are readable by the same user, and
ps shows the latter to everyone). A secret the operator gave ``serve`` by
value in its environment, and a store URL that carries a password, are
written to ``<data_dir>/secrets/from-env/`` and passed the same way; their
variables are taken out of the environment the tiers inherit.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import typing
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from cloudseed.settings import ENV_PREFIX, Secret, Settings

# 32 random bytes, hex: the HMAC-SHA256 key size.
SECRET_BYTES = 32
SECRET_FILE_MODE = 0o600
SECRET_DIR_MODE = 0o700
STORE_URL_ENV = f"{ENV_PREFIX}STORE_URL"
# Secrets `serve` generates when they are not configured: env variable → file name.
GENERATED = {
    f"{ENV_PREFIX}SHARED_SECRET": "shared_secret",
    f"{ENV_PREFIX}CONTROL_TOKENS": "control_token",
    f"{ENV_PREFIX}CONFIGDRIVE_SEED_KEY": "configdrive_seed_key",
}


def ensure_secret_file(path: Path) -> Path:
    """Create ``path`` with a fresh secret unless it exists; return it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=SECRET_DIR_MODE)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
    return path


def secrets_dir(settings: Settings) -> Path:
    """Where ``serve`` keeps the secrets it generated (``doctor`` reads them there)."""
    return settings.data_dir / "secrets"


def secret_settings(settings: Settings) -> Iterator[tuple[str, str]]:
    """(environment variable, value) of every secret setting, set or not."""
    for section in dataclasses.fields(settings):
        value = getattr(settings, section.name)
        if dataclasses.is_dataclass(value):
            hints = typing.get_type_hints(type(value))
            for item in dataclasses.fields(value):
                if _is_secret(hints[item.name]):
                    name = f"{ENV_PREFIX}{section.name}_{item.name}".upper()
                    yield name, _reveal(getattr(value, item.name))
        elif _is_secret(typing.get_type_hints(type(settings))[section.name]):
            yield f"{ENV_PREFIX}{section.name}".upper(), _reveal(value)


def secret_environment(
    settings: Settings, inherited: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """``CLOUDSEED_*_FILE`` variables for the tiers; secret values leave ``inherited``.

    ``inherited`` is the environment the tiers will inherit (``serve`` passes
    ``os.environ``): every secret given there by value is moved into a file
    and its variable removed. Without it nothing is removed.
    """
    folder = secrets_dir(settings)
    inherited = {} if inherited is None else inherited
    env: dict[str, str] = {}
    for name, value in secret_settings(settings):
        if name in inherited:
            inherited.pop(name)
            env[f"{name}_FILE"] = str(_write_secret(folder / "from-env" / name.lower(), value))
        elif not value and name in GENERATED:
            env[f"{name}_FILE"] = str(ensure_secret_file(folder / GENERATED[name]))
    url = settings.store.resolved_url()
    if _has_password(url):
        inherited.pop(STORE_URL_ENV, None)
        env[f"{STORE_URL_ENV}_FILE"] = str(_write_secret(folder / "from-env" / "store_url", url))
    else:
        env[STORE_URL_ENV] = url
    return env


def _write_secret(path: Path, value: str) -> Path:
    from cloudseed.configdrive.atomic import write_atomically  # keeps CLI start-up light

    path.parent.mkdir(parents=True, exist_ok=True, mode=SECRET_DIR_MODE)
    path.parent.chmod(SECRET_DIR_MODE)
    write_atomically(path, (value + "\n").encode(), SECRET_FILE_MODE)
    return path


def _has_password(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        return bool(make_url(url).password)
    except Exception:  # unparseable: treat as secret, the tier will name the error
        return True


def _is_secret(hint: object) -> bool:
    return hint is Secret or typing.get_args(hint)[:1] == (Secret,)


def _reveal(value: Secret | tuple[Secret, ...]) -> str:
    if isinstance(value, Secret):
        return value.reveal()
    return ",".join(item.reveal() for item in value)


def without_secrets(environ: typing.Mapping[str, str]) -> dict[str, str]:
    """``environ`` less every secret given by value: for children that need none of them.

    The data plane's proxies and dnsmasq talk to sockets, not to the store; a
    password exported for ``cloudseed dataplane sync`` must not live on in them.
    """
    names = {name for name, _ in secret_settings(Settings())} | {"PGPASSWORD"}
    url = environ.get(STORE_URL_ENV)
    if url and _has_password(url):
        names.add(STORE_URL_ENV)
    return {key: value for key, value in environ.items() if key not in names}
