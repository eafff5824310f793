"""Rotating the control token and the TLS certificate without a restart:
``cloudseed control`` re-reads its settings on SIGHUP."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.tls import TlsFiles, make_tls

START_SECONDS = 30.0


def _config(path: Path, token: str, certs: TlsFiles, store: Path) -> None:
    path.write_text(
        f'[store]\nurl = "sqlite:///{store}"\n'
        f'[control]\nport = 0\ntokens = ["{token}"]\n'
        f'tls_cert_file = "{certs.server_cert}"\ntls_key_file = "{certs.server_key}"\n'
    )


def _status(url: str, token: str, ca: Path) -> int:
    request = urllib.request.Request(url + "/v1/networks")
    request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:
            json.loads(reply.read())
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _listening_url(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"listening on (https://\S+)", line)
        if found:
            return found.group(1)
        if not line and process.poll() is not None:
            break
    raise AssertionError("cloudseed control did not start")


def test_sighup_swaps_token_and_certificate_without_a_restart(tmp_path: Path) -> None:
    first, second = make_tls(tmp_path / "ca1"), make_tls(tmp_path / "ca2")
    config = tmp_path / "cloudseed.toml"
    store = tmp_path / "store.db"
    _config(config, "token-a-0123456789", first, store)
    env = {"PATH": os.environ.get("PATH", ""), "CLOUDSEED_CONFIG": str(config)}
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudseed.cli.main", "control"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = _listening_url(process)
        assert _status(url, "token-a-0123456789", first.ca) == 200

        _config(config, "token-b-0123456789", second, store)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            try:
                if _status(url, "token-b-0123456789", second.ca) == 200:
                    break
            except urllib.error.URLError:
                pass  # still the old certificate
            time.sleep(0.1)
        assert _status(url, "token-b-0123456789", second.ca) == 200
        assert _status(url, "token-a-0123456789", second.ca) == 403
        assert process.poll() is None  # the same process: no restart

        # A broken file is refused and the working settings stay.
        config.write_text(config.read_text().replace(str(second.server_key), "/nonexistent"))
        process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert _status(url, "token-b-0123456789", second.ca) == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.stderr is not None
    assert "reload refused: control.tls_key_file: cannot read /nonexistent" in (
        process.stderr.read())
