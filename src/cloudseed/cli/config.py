"""``cloudseed config example|show|check``: the settings, readable and checkable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cloudseed.cli.context import EXIT_USAGE, CliError, add_group, load_cli_settings
from cloudseed.errors import CloudseedError
from cloudseed.settings import load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "config", "Settings: an example file, the effective "
                      "values, a check")
    example_help = ("Print every setting with its default and what it does, as TOML "
                    "(cloudseed config example > /etc/cloudseed.toml)")
    example_cmd = group.add_parser("example", help=example_help, description=example_help)
    example_cmd.add_argument(
        "--format", dest="output", choices=("toml", "markdown"), default="toml",
        help="toml (a settings file) or markdown (docs/CONFIGURATION.md); default: toml")
    example_cmd.set_defaults(func=example)

    show_help = ("Print the settings this command line would run with (--config, "
                 "$CLOUDSEED_CONFIG, CLOUDSEED_* variables), secrets masked")
    show_cmd = group.add_parser("show", help=show_help, description=show_help)
    show_cmd.set_defaults(func=show)

    check_help = ("Check that FILE loads: known settings, valid values, readable *_file "
                  "secrets; the environment is not consulted")
    check_cmd = group.add_parser("check", help=check_help, description=check_help)
    check_cmd.add_argument("file", metavar="FILE", help="the TOML settings file")
    check_cmd.set_defaults(func=check)


def example(args: argparse.Namespace) -> int:
    from cloudseed.settings_reference import example_toml, reference_markdown

    sys.stdout.write(reference_markdown() if args.output == "markdown" else example_toml())
    return 0


def show(args: argparse.Namespace) -> int:
    from cloudseed.settings_reference import effective_toml

    sys.stdout.write(effective_toml(load_cli_settings(args)))
    return 0


def check(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file", EXIT_USAGE)
    try:
        load_settings(path, environ={})
    except CloudseedError as exc:
        raise CliError(f"{path}: {exc.message}") from None
    print(f"{path}: ok")
    return 0
