"""doctor's report: ✓/✗ per hop, the fix under each ✗, the first broken hop named."""

from __future__ import annotations

import json

from cloudseed.doctor import Hop, first_failure, render, to_json

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
