"""doctor's report: ✓/✗ per hop, the fix under each ✗, the first broken hop named."""

from __future__ import annotations

import json
from pathlib import Path

from cloudseed.doctor import Hop, first_failure, render, to_json
from cloudseed.doctor_http import shared_secret
from cloudseed.secret_files import ensure_secret_file, secrets_dir
from cloudseed.settings import load_settings

HOPS = [
    Hop("server", True, "vm1 (id)"),
    Hop("redirect", None, "not needed: the DHCP namespace holds 169.254.169.254"),
    Hop("proxy", False, "proxy-network-n1 is not running", "cloudseed dataplane sync"),
    Hop("agent", False, "nothing answers on /run/a.sock", "start it: cloudseed agent"),
]


def test_render_marks_each_hop_and_gives_the_fix_under_failures() -> None:
    text = render(HOPS)
    assert "✓ server" in text
    assert "- redirect" in text
    assert "✗ proxy" in text
    assert "fix: cloudseed dataplane sync" in text
    assert text.rstrip().endswith("first broken hop: proxy")


def test_json_names_the_first_failure() -> None:
    report = json.loads(to_json(HOPS))
    assert report["ok"] is False
    assert report["first_failure"] == "proxy"
    assert [h["name"] for h in report["hops"]] == ["server", "redirect", "proxy", "agent"]


def test_all_healthy_has_no_failure() -> None:
    healthy = [Hop("server", True, "ok"), Hop("guest", None, "not plugged")]
    assert first_failure(healthy) is None
    assert render(healthy).rstrip().endswith("every hop is healthy")


def test_a_hop_it_cannot_see_is_never_called_healthy() -> None:
    hops = [Hop("server", True, "ok"),
            Hop("guest", None, "not plugged by cloudseed", seen=False)]
    assert first_failure(hops) is None
    text = render(hops)
    assert "every hop is healthy" not in text
    assert text.rstrip().endswith("not seen: guest")
    assert json.loads(to_json(hops))["not_seen"] == ["guest"]


def test_shared_secret_comes_from_settings_else_the_file_serve_generated(
    tmp_path: Path,
) -> None:
    settings = load_settings(environ={}, overrides={"store.data_dir": str(tmp_path)})
    secret, why = shared_secret(settings)
    assert secret == ""
    assert "has not generated" in why
    assert str(tmp_path / "secrets" / "shared_secret") in why
    ensure_secret_file(secrets_dir(settings) / "shared_secret")
    secret, source = shared_secret(settings)
    assert secret == (tmp_path / "secrets" / "shared_secret").read_text().strip()
    assert source == str(tmp_path / "secrets" / "shared_secret")
    given = load_settings(environ={}, overrides={"store.data_dir": str(tmp_path),
                                                 "shared_secret": "s3"})
    assert shared_secret(given) == ("s3", "the settings")
