"""What the host holds now: the kernel's objects and the state directory's records.

``observe`` reads each namespace's links and addresses once, the nft table of
each router namespace (all of it in one pass over netlink: ``netlink.py``),
the files and firewall records under the state directory, and the supervised
processes. ``reconcile.diff`` compares the
result with the plan.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cloudseed.dataplane import firewall, supervise
from cloudseed.dataplane.desired import DesiredState, Inventory, Names
from cloudseed.dataplane.netlink import LinkState
from cloudseed.dataplane.runner import Runner
from cloudseed.store.protocol import Reader


@dataclass(frozen=True, slots=True)
class TableRecord:
    script: str
    listing: str


@dataclass(frozen=True)
class Observed:
    namespaces: frozenset[str]
    root_links: dict[str, LinkState]
    ns_links: dict[str, dict[str, LinkState]]
    tables: dict[str, str | None]
    table_records: dict[str, TableRecord]
    files: dict[str, str | None]
    processes: dict[str, supervise.ProcessState]
    root_exists: bool = True


@dataclass(frozen=True, slots=True)
class Context:
    """What applying needs besides the runner."""

    state_dir: str
    root_netns: str
    stop_grace_seconds: float = 5.0


def load_inventory(reader: Reader) -> Inventory:
    return Inventory(
        networks=tuple(reader.list_networks()),
        subnets=tuple(reader.list_subnets()),
        routers=tuple(reader.list_routers()),
        ports=tuple(reader.list_ports()),
        servers=tuple(reader.list_servers()),
    )


def observe(runner: Runner, desired: DesiredState, context: Context) -> Observed:
    names = Names(context.root_netns)
    all_namespaces = runner.namespaces()
    root = context.root_netns
    root_exists = not root or root in all_namespaces
    ours = sorted(n for n in all_namespaces if names.is_ours(n))
    with_table = {t.namespace for t in desired.tables} & set(ours)
    # One pass over every namespace, root first: links, addresses and our table.
    reads = runner.read_namespaces([root, *ours] if root_exists else ours, firewall.TABLE,
                                   with_table)
    root_links = reads[root].links if root in reads else {}
    ns_links = {n: reads[n].links if n in reads else {} for n in ours}
    tables: dict[str, str | None] = {}
    for name in with_table:
        table = reads[name].table if name in reads else None
        tables[name] = firewall.normalize_listing(table) if table is not None else None
    records = _read_table_records(context.state_dir)
    paths = {f.path for f in desired.files} | set(_known_files(context.state_dir))
    files = {path: _read_text(path) for path in paths}
    return Observed(
        namespaces=frozenset(all_namespaces),
        root_links=root_links,
        ns_links=ns_links,
        tables=tables,
        table_records=records,
        files=files,
        processes=supervise.observe(context.state_dir),
        root_exists=root_exists,
    )


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _known_files(state_dir: str) -> Iterable[str]:
    for sub in ("dhcp", "haproxy", "front"):
        root = Path(state_dir) / sub
        if root.is_dir():
            yield from (str(p) for p in root.rglob("*") if p.is_file()
                        and p.suffix not in {".pid", ".tmp", ".log"})


def records_dir(state_dir: str) -> Path:
    return Path(state_dir) / "firewall"


def _read_table_records(state_dir: str) -> dict[str, TableRecord]:
    records: dict[str, TableRecord] = {}
    directory = records_dir(state_dir)
    if directory.is_dir():
        for path in directory.glob("*.json"):
            try:
                data = json.loads(path.read_text())
                records[path.stem] = TableRecord(str(data["script"]), str(data["listing"]))
            except (OSError, ValueError, KeyError):
                continue
    return records
