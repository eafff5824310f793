"""``cloudseed server audit``: who read a server's sensitive documents, and guest writes."""

from __future__ import annotations

import argparse
from urllib.parse import urlencode

from cloudseed.cli.context import ControlClient, command, output, quote

COLUMNS = ("at", "document", "method", "status", "source", "tier", "host")


def register_server_command(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = command(group, "audit",
                    "Show the server's access audit: reads of user-data, password, vendor "
                    "data, identity and injected files, and guest writes; newest first")
    audit.add_argument("server", metavar="SERVER", help="name or id")
    audit.add_argument("--limit", type=int, default=100, metavar="N",
                       help="records to show (1-1000, default 100)")
    audit.add_argument("--before", type=int, metavar="ID",
                       help="only records older than this record id (the next page)")
    audit.set_defaults(func=show_audit)


def show_audit(args: argparse.Namespace) -> int:
    query = {"limit": str(args.limit)}
    if args.before is not None:
        query["before"] = str(args.before)
    reply = ControlClient.from_args(args).get(
        f"/v1/servers/{quote(args.server)}/audit?{urlencode(query)}")
    records = reply["records"]
    if args.format == "table" and not args.columns:
        records = [{name: record[name] for name in ("id", *COLUMNS)} for record in records]
    output(args, records)
    return 0
