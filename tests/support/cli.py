"""Run the installed ``cloudseed`` command as an operator does: a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def cloudseed_argv() -> list[str]:
    """The console script next to this interpreter, else ``python -m cloudseed``."""
    script = Path(sys.executable).with_name("cloudseed")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cloudseed"]


def run_cloudseed(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``cloudseed ARGS`` with ``env`` added to this environment; never raises on failure."""
    done = subprocess.run(
        [*cloudseed_argv(), *args],
        input=stdin,
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )
