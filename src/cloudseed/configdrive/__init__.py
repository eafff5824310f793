"""cloudseed.configdrive: config drive and NoCloud images from the rendered tree.

    image = build_drive(view, options, "iso9660" | "vfat" | "nocloud", seed_key)

The drive's ``random_seed`` is derived from the operator's key, the server id
and the drive's content (``seed.drive_seed``), so equal data give equal bytes
whatever else changed in the store. ``config.check_drive_settings`` turns the
settings into the key, format and render options; ``DriveKeeper``
(``configdrive.keeper``) keeps one image per config-drive server up to date
from the store's change feed.
"""

from cloudseed.configdrive.build import (
    CONFIG_DRIVE_LABEL,
    DRIVE_FORMATS,
    DriveFormat,
    build_drive,
    build_image,
    parse_format,
)
from cloudseed.configdrive.layout import drive_content, drive_files
from cloudseed.configdrive.seed import drive_seed, random_seed_b64

__all__ = [
    "CONFIG_DRIVE_LABEL",
    "DRIVE_FORMATS",
    "DriveFormat",
    "build_drive",
    "build_image",
    "drive_content",
    "drive_files",
    "drive_seed",
    "parse_format",
    "random_seed_b64",
]
