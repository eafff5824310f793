"""``cloudseed configdrive …``: drive images for one server, or kept for all of them.

- ``build SERVER -o FILE``: asks the control API for the image (so it is the
  same bytes whoever builds it, under the key only the server side holds)
  and writes it atomically;
- ``keep``: long-running; follows the store and keeps
  ``<data_dir>/configdrive/<server-id>.iso`` for every server created with
  ``--config-drive`` (``cloudseed serve`` runs it as the ``configdrive`` tier).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from cloudseed.cli.context import (
    CliError,
    ControlClient,
    add_group,
    command,
    load_cli_settings,
    quote,
)
from cloudseed.configdrive.atomic import write_atomically
from cloudseed.configdrive.build import DRIVE_FORMATS, DRIVE_LABEL, parse_format
from cloudseed.configdrive.keeper import IMAGE_FILE_MODE

DEFAULT_FORMAT = "iso9660"
# How long the keeper waits on the change feed before looking at its stop flag.
KEEP_WAIT_SECONDS = 1.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(
        subparsers, "configdrive", "Config drive images (ISO9660 or vfat config-2, NoCloud cidata)"
    )
    build = command(
        group,
        "build",
        "Build a server's config drive image through the control API and write it to a file",
        output=False,
    )
    build.add_argument("server", metavar="SERVER", help="server id or name")
    build.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        required=True,
        help="image file to write (replaced atomically); '-' writes to stdout",
    )
    build.add_argument(
        "--format",
        dest="drive_format",
        choices=DRIVE_FORMATS,
        default=DEFAULT_FORMAT,
        help=f"image format (default: {DEFAULT_FORMAT}); nocloud is a cidata seed",
    )
    build.set_defaults(func=build_drive_file)

    keep = command(
        group,
        "keep",
        "Keep an image for every config-drive server up to date (runs until stopped)",
        client=False,
        output=False,
    )
    keep.add_argument("--store-url", help="store URL (default: store.url / SQLite in data_dir)")
    keep.add_argument(
        "--directory",
        metavar="DIR",
        help="where images live (default: configdrive.directory or <data_dir>/configdrive)",
    )
    keep.add_argument(
        "--format",
        dest="drive_format",
        choices=DRIVE_FORMATS,
        help="image format (default: configdrive.format, iso9660)",
    )
    keep.set_defaults(func=keep_drives)


def build_drive_file(args: argparse.Namespace) -> int:
    fmt = parse_format(args.drive_format)
    path = f"/v1/servers/{quote(args.server)}/configdrive?format={fmt}"
    image = ControlClient.from_args(args).get_bytes(path)
    summary = f"{len(image)} bytes, {fmt} (label {DRIVE_LABEL[fmt]}), server {args.server}"
    if args.output == "-":
        sys.stdout.buffer.write(image)
        sys.stdout.buffer.flush()
        print(f"wrote stdout: {summary}", file=sys.stderr)
        return 0
    output = Path(args.output).expanduser()
    try:
        write_atomically(output, image, IMAGE_FILE_MODE)
    except OSError as exc:
        raise CliError(f"-o {output}: {exc.strerror or exc}") from None
    print(f"wrote {output}: {summary}")
    return 0


def keep_drives(args: argparse.Namespace) -> int:
    overrides = {"configdrive.directory": args.directory, "configdrive.format": args.drive_format}
    settings = load_cli_settings(args, overrides)
    from cloudseed.configdrive.config import check_drive_settings
    from cloudseed.configdrive.keeper import DriveKeeper
    from cloudseed.log import configure_logging
    from cloudseed.store import open_store_from_settings

    config = check_drive_settings(settings)  # ConfigError names the setting to fix
    configure_logging(getattr(args, "log_level", "info"))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The keeper only reads; migrating is `cloudseed serve`'s or `cloudseed db`'s job.
    store = open_store_from_settings(settings.store, upgrade=False)
    try:
        # ``today`` only cuts the /openstack listing, which is not on a drive,
        # so one date for the life of the process changes no image.
        options = config.render_options(datetime.now(UTC).date())
        keeper = DriveKeeper(store, config.directory, options, config.seed_key, config.fmt)
        print(
            f"cloudseed configdrive keep: {config.fmt} images in {config.directory}",
            file=sys.stderr,
        )
        keeper.run(stop, KEEP_WAIT_SECONDS)
    finally:
        store.close()
    return 0
