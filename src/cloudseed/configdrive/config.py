"""The config drive's settings, checked once: the key, the format, the render options.

Every problem names the setting to fix. There is no fallback key: a drive's
``random_seed`` is only as secret as the key, so without one the build is
refused (``cloudseed serve`` generates a key; a lone control API or keeper
needs ``configdrive.seed_key`` or ``configdrive.seed_key_file``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cloudseed.api.vendordata import load_static_vendordata
from cloudseed.configdrive.build import DriveFormat, parse_format
from cloudseed.errors import ConfigError, Invalid
from cloudseed.render import RenderOptions
from cloudseed.settings import Settings

# An HMAC key shorter than this is guessable; 16 bytes = 128 bits (the
# generated key is 64 hex characters).
MIN_SEED_KEY_BYTES = 16
DRIVE_DIRECTORY = "configdrive"


@dataclass(frozen=True)
class DriveConfig:
    seed_key: bytes
    fmt: DriveFormat  # what the keeper writes; a build may ask for another
    directory: Path
    dhcp_domain: str
    static_vendordata: Mapping[str, object]

    def render_options(self, today: date) -> RenderOptions:
        # Drives carry static vendor data only: dynamic targets are network
        # calls that can fail or stall, and the image must not depend on them
        # (vendor_data2.json on a drive holds the static part).
        return RenderOptions(
            today=today,
            dhcp_domain=self.dhcp_domain,
            static_vendordata=self.static_vendordata,
        )


def drive_directory(settings: Settings) -> Path:
    """Where drive images live: configdrive.directory, else <data_dir>/configdrive."""
    drive = settings.configdrive
    return Path(drive.directory) if drive.directory else settings.data_dir / DRIVE_DIRECTORY


def check_drive_settings(settings: Settings) -> DriveConfig:
    """``settings.configdrive`` (and the API settings drives share), or ``ConfigError``."""
    drive = settings.configdrive
    key = drive.seed_key.reveal().encode()
    if not key:
        raise ConfigError(
            "configdrive.seed_key is not set, so config drives cannot be built: set "
            "configdrive.seed_key or configdrive.seed_key_file "
            "(CLOUDSEED_CONFIGDRIVE_SEED_KEY_FILE); `cloudseed serve` generates one"
        )
    if len(key) < MIN_SEED_KEY_BYTES:
        raise ConfigError(f"configdrive.seed_key must be at least {MIN_SEED_KEY_BYTES} characters")
    try:
        fmt = parse_format(drive.format, "configdrive.format")
    except Invalid as exc:
        raise ConfigError(exc.message) from None
    return DriveConfig(
        seed_key=key,
        fmt=fmt,
        directory=drive_directory(settings),
        dhcp_domain=settings.api.dhcp_domain,
        static_vendordata=load_static_vendordata(settings.api.vendordata_static_file),
    )
