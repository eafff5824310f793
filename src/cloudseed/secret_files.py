"""Secrets that ``cloudseed serve`` generates on first start.

A one-machine stack needs a shared signing secret (agent → API), a token key
(IMDSv2 tokens), a control API token and a config drive seed key. When the
operator has not configured them, they are generated once into
``<data_dir>/secrets/`` (mode 0600) and handed to every tier as ``*_FILE``
environment variables — by path, never by value, so they appear in no
process listing and no log.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cloudseed.settings import Settings

# 32 random bytes, hex: the HMAC-SHA256 key size.
SECRET_BYTES = 32


def ensure_secret_file(path: Path) -> Path:
    """Create ``path`` with a fresh secret unless it exists; return it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
    return path


def secrets_dir(settings: Settings) -> Path:
    """Where ``serve`` keeps the secrets it generated (``doctor`` reads them there)."""
    return settings.data_dir / "secrets"


def secret_environment(settings: Settings) -> dict[str, str]:
    """``CLOUDSEED_*_FILE`` variables for every secret the settings lack."""
    folder = secrets_dir(settings)
    env: dict[str, str] = {}
    if not settings.shared_secret:
        env["CLOUDSEED_SHARED_SECRET_FILE"] = str(ensure_secret_file(folder / "shared_secret"))
    if not settings.api.token_key:
        env["CLOUDSEED_API_TOKEN_KEY_FILE"] = str(ensure_secret_file(folder / "token_key"))
    if not settings.control.tokens:
        env["CLOUDSEED_CONTROL_TOKENS_FILE"] = str(ensure_secret_file(folder / "control_token"))
    if not settings.configdrive.seed_key:
        env["CLOUDSEED_CONFIGDRIVE_SEED_KEY_FILE"] = str(
            ensure_secret_file(folder / "configdrive_seed_key")
        )
    return env
