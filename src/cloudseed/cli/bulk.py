"""``cloudseed import FILE`` and ``cloudseed export``: the whole inventory as one document.

Import validates the file locally first (fast feedback with the field path,
before uploading megabytes), then sends it to the control API, which
validates it again as a whole and applies it in one transaction. Progress
goes to stderr so stdout stays the result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from cloudseed.cli.context import (
    CliError,
    ControlClient,
    add_client_options,
    add_format_option,
    output,
    read_text,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    importer = subparsers.add_parser(
        "import",
        help="Apply an inventory document (YAML or JSON); all of it or nothing",
        description="Apply an inventory document (YAML or JSON). Entities are matched by id, "
        "else by name; applying the same file twice changes nothing. Nothing is deleted.",
    )
    importer.add_argument("file", metavar="FILE", help="document path, or - for stdin")
    importer.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add_client_options(importer)
    add_format_option(importer)
    importer.set_defaults(func=import_document)

    exporter = subparsers.add_parser(
        "export",
        help="Write the whole inventory as an importable document",
        description="Write the whole inventory (with ids) as a document that "
        "`cloudseed import` turns back into the same state.",
    )
    exporter.add_argument(
        "-f",
        "--format",
        dest="format",
        choices=("yaml", "json"),
        default="yaml",
        help="output format (default: yaml)",
    )
    exporter.add_argument("-o", "--output", metavar="FILE", help="write here, not to stdout")
    add_client_options(exporter)
    exporter.set_defaults(func=export_document)


def _progress(quiet: bool, message: str) -> None:
    if not quiet:
        print(f"cloudseed import: {message}", file=sys.stderr, flush=True)


def import_document(args: argparse.Namespace) -> int:
    started = time.monotonic()
    text = read_text(args.file, "import", "YAML or JSON")
    _progress(args.quiet, f"read {len(text) / 1e6:.1f} MB from {args.file}; validating")
    from cloudseed.control.bodies import parse_body
    from cloudseed.control.bulk import load_document_text
    from cloudseed.control.document import Document

    data = load_document_text(text)
    document = parse_body(Document, data)
    counts = ", ".join(
        f"{len(getattr(document, kind))} {kind}"
        for kind in ("keypairs", "networks", "routers", "ports", "servers")
    )
    _progress(args.quiet, f"valid: {counts}; sending to the control API to apply")
    result = ControlClient.from_args(args).post("/v1/import", data)
    changed = "changed" if result["changed"] else "nothing to change"
    _progress(
        args.quiet,
        f"done in {time.monotonic() - started:.1f} s: {changed}, revision {result['revision']}",
    )
    output(args, result)
    return 0


def export_document(args: argparse.Namespace) -> int:
    document = ControlClient.from_args(args).get("/v1/export")
    if args.format == "json":
        text = json.dumps(document, indent=2) + "\n"
    else:
        text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise CliError(f"export -o {args.output}: {exc.strerror}; check the path") from None
    else:
        sys.stdout.write(text)
    return 0
