"""The router namespace's metadata rules (nftables), built pure and applied whole.

Neutron's L3 agent (``neutron/agent/metadata/driver.py``) redirects
169.254.169.254 tcp/80 arriving on the internal legs (``qr-+``) to the
proxy's port, and accepts traffic on that port only when it was redirected.
We say the same in one nftables table: the REDIRECT in a ``dstnat`` chain,
and ``ct status dnat`` (true exactly for redirected connections) in place of
Neutron's mark-then-accept pair.

The table is replaced atomically in one ``nft -f`` transaction (through
libnftables, in-process: ``nftlib.py``). Whether the
kernel still holds what we applied is judged by comparing its own listing
(counters stripped) with the listing recorded right after the last apply,
as ``iptables_manager`` checks that its apply converged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from cloudseed.dataplane import nftlib
from cloudseed.dataplane.runner import Runner

TABLE_FAMILY = "inet"
TABLE_NAME = "cloudseed_metadata"
TABLE = (TABLE_FAMILY, TABLE_NAME)
# Comments name the rules so doctor can find them and read their counters.
REDIRECT_COMMENT = "metadata-redirect"
REDIRECT_V6_COMMENT = "metadata-redirect-v6"
ACCEPT_COMMENT = "metadata-accept-redirected"
DROP_COMMENT = "metadata-drop-direct"

METADATA_V4_IP = "169.254.169.254"
METADATA_V6_IP = "fe80::a9fe:a9fe"
METADATA_PORT = 80

# "table …" first makes the delete safe when the table is absent.
REPLACE_PRELUDE = f"table {TABLE_FAMILY} {TABLE_NAME}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n"

_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def render_router_table(interface_glob: str, proxy_port: int, ipv6: bool) -> str:
    """The nft script that (re)creates the metadata table; idempotent as a whole."""
    v6 = (
        f'        iifname "{interface_glob}" ip6 daddr {METADATA_V6_IP} tcp dport '
        f'{METADATA_PORT} counter redirect to :{proxy_port} comment "{REDIRECT_V6_COMMENT}"\n'
        if ipv6
        else ""
    )
    return (
        REPLACE_PRELUDE
        + f"table {TABLE_FAMILY} {TABLE_NAME} {{\n"
        "    chain prerouting {\n"
        "        type nat hook prerouting priority dstnat; policy accept;\n"
        f'        iifname "{interface_glob}" ip daddr {METADATA_V4_IP} tcp dport '
        f'{METADATA_PORT} counter redirect to :{proxy_port} comment "{REDIRECT_COMMENT}"\n'
        f"{v6}"
        "    }\n"
        "    chain input {\n"
        "        type filter hook input priority filter; policy accept;\n"
        f"        tcp dport {proxy_port} ct status dnat counter accept "
        f'comment "{ACCEPT_COMMENT}"\n'
        f'        tcp dport {proxy_port} counter drop comment "{DROP_COMMENT}"\n'
        "    }\n"
        "}\n"
    )


def normalize_listing(listing: str) -> str:
    """A kernel listing without its counters: what must not drift."""
    return _COUNTER.sub("counter", listing).strip()


@dataclass(frozen=True, slots=True)
class RuleCounter:
    comment: str
    packets: int
    bytes: int


def list_table(runner: Runner, netns: str) -> str | None:
    return list_tables(runner, [netns]).get(netns)


def list_tables(runner: Runner, namespaces: Collection[str]) -> dict[str, str | None]:
    """Each namespace's table listing, counters stripped (None: no table, or no namespace)."""
    reads = runner.read_namespaces(sorted(namespaces), TABLE, namespaces)
    listings: dict[str, str | None] = {}
    for name in namespaces:
        read = reads.get(name)
        listings[name] = normalize_listing(read.table) if read and read.table is not None else None
    return listings


def creation_script(script: str) -> str:
    """``script`` for a namespace that holds no table yet: create it, do not replace it.

    The replace prelude's delete makes the kernel wait for a grace period
    (~14 ms a namespace, most of a 1,000-router sync from empty);
    ``create table`` instead fails if a table appeared since it was
    observed, so the next sync replaces it. Same table, same listing.
    """
    if not script.startswith(REPLACE_PRELUDE):
        return script
    return f"create table {TABLE_FAMILY} {TABLE_NAME}\n" + script.removeprefix(REPLACE_PRELUDE)


def apply_table(
    runner: Runner, netns: str, script: str, record: Callable[[str], None], *,
    absent: bool = False,
) -> None:
    """Replace the table (create it when ``absent``), then give ``record`` its listing.

    The kernel's own listing is what later observations are compared with.
    In-process (libnftables) inside ``netns``; inside ``Runner.batch`` it is queued.
    """
    def apply() -> None:
        nft = nftlib.load()
        nft.run(creation_script(script) if absent else script)
        record(normalize_listing(nft.listing(*TABLE) or ""))

    runner.in_netns(netns, f"nft -f - (table {TABLE_FAMILY} {TABLE_NAME})", apply)


def delete_table(runner: Runner, netns: str) -> None:
    runner.nft(
        f"table {TABLE_FAMILY} {TABLE_NAME}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n",
        netns=netns,
    )


def rule_counters(runner: Runner, netns: str) -> dict[str, RuleCounter]:
    """Counters of our commented rules, by comment (empty when the table is absent)."""
    text = runner.nft_text("-j", "list", "table", TABLE_FAMILY, TABLE_NAME, netns=netns)
    if not text:
        return {}
    counters: dict[str, RuleCounter] = {}
    for item in json.loads(text).get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict) or "comment" not in rule:
            continue
        packets = bytes_ = 0
        for expr in rule.get("expr", []):
            if isinstance(expr, dict) and isinstance(expr.get("counter"), dict):
                packets = int(expr["counter"].get("packets", 0))
                bytes_ = int(expr["counter"].get("bytes", 0))
        comment = str(rule["comment"])
        counters[comment] = RuleCounter(comment, packets, bytes_)
    return counters
