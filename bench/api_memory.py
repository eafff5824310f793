"""An API worker's prefetched servers at fleet scale: RSS, bytes per server, start time.

    python -m bench.api_memory --servers 100000 [--servers 1000000] [--store-url URL]

The fleet is ``bench.agent_memory``'s (one port per server, bulk INSERTs).
A fresh process builds the real ``MetadataApp`` with ``api.cache_max_servers``
= N and starts it (identity keys, the bulk read of every server, the change
feed), then reports ``rss_before_mib`` (modules imported), ``rss_mib`` and
``peak_rss_mib`` after start, ``bytes_per_server`` and ``start_s``. What is
held per server is its ``ServerView`` and an unrendered ``ServerDocuments``;
a section a guest asks for adds its rendered bytes on top.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.agent_memory import fill
from bench.procfs import own_status_mib

# The budget for an API worker at a million servers.
BUDGET_MIB = 1024


def _child(store_url: str, servers: int) -> None:
    import gc

    from cloudseed.api.app import build_metadata_app
    from cloudseed.settings import ApiSettings, Secret, Settings
    from cloudseed.store import open_store

    store = open_store(store_url, upgrade=False)
    settings = Settings(api=ApiSettings(mode="proxy", access_log=False,  # type: ignore[arg-type]
                                        cache_max_servers=servers),
                        shared_secret=Secret("bench-secret"))

    async def main() -> None:
        gc.collect()
        before = own_status_mib("VmRSS")
        app = build_metadata_app(store, settings, token_key=b"k" * 32)
        started = time.perf_counter()
        await app.start()
        elapsed = time.perf_counter() - started
        gc.collect()
        print(json.dumps({"held": len(app.servers), "start_s": round(elapsed, 2),
                          "rss_before_mib": round(before, 1),
                          "rss_mib": round(own_status_mib("VmRSS"), 1),
                          "peak_rss_mib": round(own_status_mib("VmHWM"), 1)}), flush=True)
        await app.stop()

    asyncio.run(main())
    store.close()


def measure(servers: int, store_url: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cloudseed-api-memory-") as tmp:
        url = store_url or f"sqlite:///{tmp}/cloudseed.db"
        fill(url, servers)
        out = subprocess.run(
            [sys.executable, "-m", "bench.api_memory", "--child", url, str(servers)],
            capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent.parent).stdout
        report: dict[str, Any] = json.loads(out.splitlines()[-1])
        grown = report["rss_mib"] - report["rss_before_mib"]
        report.update({
            "servers": servers,
            "store": "postgresql" if url.startswith("postgres") else "sqlite",
            "bytes_per_server": round(grown * 2**20 / servers),
            "mib_at_1m_servers": round(grown * 1_000_000 / servers + report["rss_before_mib"]),
        })
        report["within_budget_at_1m"] = report["mib_at_1m_servers"] <= BUDGET_MIB
        return report


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, action="append",
                        help="fleet size (repeatable; default 100000)")
    parser.add_argument("--store-url", default=os.environ.get("CLOUDSEED_BENCH_STORE_URL"),
                        help="an empty store to fill (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    for n in args.servers or [100_000]:
        print(json.dumps(measure(n, args.store_url)), flush=True)


if __name__ == "__main__":
    main()
