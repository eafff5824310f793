"""``cloudseed install-units``: the shipped systemd units, written for this installation."""

from __future__ import annotations

import argparse
from pathlib import Path

from cloudseed.cli.context import CliError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    description = (
        "Write cloudseed's systemd units (cloudseed.service for the whole stack; "
        "cloudseed-control, -api, -agent and -dataplane for multi-host deployments, and "
        "optional socket units for control and agent) "
        "to ROOT/etc/systemd/system and the cloudseed user to ROOT/etc/sysusers.d, "
        "with ExecStart pointing at this installation's cloudseed.")
    parser = subparsers.add_parser("install-units", help="write cloudseed's systemd units",
                                   description=description)
    parser.add_argument("--root", default="/", metavar="DIR",
                        help="install under DIR instead of / (packaging, images, tests)")
    parser.add_argument("--config-file", default=None, metavar="PATH",
                        help="settings file the units pass as --config "
                        "(default: /etc/cloudseed.toml)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cloudseed.dataplane.desired import default_cloudseed_command
    from cloudseed.systemd import DEFAULT_CONFIG, install

    config_file = args.config_file or DEFAULT_CONFIG
    if not config_file.startswith("/"):
        raise CliError(f"--config-file {config_file!r}: systemd needs an absolute path")
    try:
        written = install(Path(args.root), default_cloudseed_command(), config_file)
    except OSError as exc:
        raise CliError(f"cannot write under {args.root}: {exc.strerror} "
                       "(run as root, or pass --root DIR)") from None
    for path in written:
        print(path)
    print(f"next: cloudseed config example > {config_file} (then edit), systemd-sysusers, "
          "systemctl daemon-reload, systemctl enable --now cloudseed.service "
          "(one host) or the per-tier units, and cloudseed-dataplane.service where guests are")
    return 0
