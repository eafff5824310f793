"""One call from a server view to drive image bytes, in any of the three formats.

- ``iso9660``: Nova's config drive, ISO9660 + Joliet + Rock Ridge, ``config-2``;
- ``vfat``: Nova's legacy 64 MiB vfat config drive, ``config-2``;
- ``nocloud``: a NoCloud seed, ISO9660 + Joliet + Rock Ridge, ``cidata``.

``build_drive`` is what callers use: it derives the seed from the operator's
key and the drive's content. ``build_image`` takes a seed, for tests and
golden images. Pure: the same inputs always give the same bytes. Content
that does not fit raises ``LimitExceeded`` (field ``configdrive``) before the
image is written.
"""

from __future__ import annotations

import re
from typing import Literal, cast, get_args

from cloudseed.configdrive.filemap import FileMap
from cloudseed.configdrive.iso9660 import build_iso9660
from cloudseed.configdrive.layout import drive_content, drive_files
from cloudseed.configdrive.nocloud import NOCLOUD_LABEL, nocloud_files
from cloudseed.configdrive.seed import drive_seed
from cloudseed.configdrive.vfat import build_vfat
from cloudseed.errors import Invalid
from cloudseed.model import ServerView
from cloudseed.render import RenderOptions

DriveFormat = Literal["iso9660", "vfat", "nocloud"]
DRIVE_FORMATS: tuple[str, ...] = get_args(DriveFormat)
# The label cloud-init's ConfigDrive datasource looks for (anchors §10.3).
CONFIG_DRIVE_LABEL = "config-2"
# What a guest sees as the volume label, and the image's usual file suffix.
DRIVE_LABEL: dict[str, str] = {
    "iso9660": CONFIG_DRIVE_LABEL,
    "vfat": CONFIG_DRIVE_LABEL,
    "nocloud": NOCLOUD_LABEL,
}
IMAGE_SUFFIX: dict[str, str] = {"iso9660": ".iso", "nocloud": ".iso", "vfat": ".img"}
# Server names may hold anything; a download name goes into an HTTP header
# and onto file systems, so it keeps only the portable characters.
_UNPORTABLE = re.compile(r"[^A-Za-z0-9._-]+")


def parse_format(value: str, field: str = "format") -> DriveFormat:
    """``value`` as a DriveFormat, or ``Invalid`` naming ``field`` and the allowed values."""
    if value in DRIVE_FORMATS:
        return cast(DriveFormat, value)
    raise Invalid(field, f"{value!r} is not one of {', '.join(DRIVE_FORMATS)}")


def drive_file_name(server_name: str, fmt: DriveFormat) -> str:
    """``web1-config-2.iso``: a portable file name for a server's drive image."""
    stem = _UNPORTABLE.sub("_", server_name).strip("._") or "server"
    return f"{stem}-{DRIVE_LABEL[fmt]}{IMAGE_SUFFIX[fmt]}"


def build_drive(view: ServerView, options: RenderOptions, fmt: DriveFormat, key: bytes) -> bytes:
    """The drive image of ``view``, its seed derived from ``key`` and its content."""
    content = drive_content(view, options)
    seed = drive_seed(key, view.server.id, content.digest())
    return image_of(content.files(seed), fmt)


def build_image(view: ServerView, options: RenderOptions, fmt: DriveFormat, seed: bytes) -> bytes:
    """The drive image of ``view`` in format ``fmt`` with the given ``seed``."""
    return image_of(drive_files(view, options, seed), fmt)


def image_of(files: FileMap, fmt: DriveFormat) -> bytes:
    """The image in format ``fmt`` holding a config drive's ``files``."""
    if fmt == "iso9660":
        return build_iso9660(files, CONFIG_DRIVE_LABEL)
    if fmt == "vfat":
        return build_vfat(files, CONFIG_DRIVE_LABEL)
    if fmt == "nocloud":
        return build_iso9660(nocloud_files(files), NOCLOUD_LABEL)
    raise Invalid("format", f"{fmt!r} is not one of {', '.join(DRIVE_FORMATS)}")
