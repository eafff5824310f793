"""The systemd units cloudseed ships, rendered for this installation.

The unit files in this package are templates with three placeholders:
``@CLOUDSEED@`` (this installation's ``cloudseed`` command), ``@CONFIG@`` (the
settings file) and ``@HARDENING@`` (``user-tier.conf``, the sandbox shared by
the units that run as the cloudseed user). ``cloudseed install-units`` writes
them under ``<root>/etc/systemd/system`` and the user's sysusers.d entry.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

UNIT_DIR = Path("etc/systemd/system")
SYSUSERS_PATH = Path("etc/sysusers.d/cloudseed.conf")
DEFAULT_CONFIG = "/etc/cloudseed.toml"
HARDENING_FRAGMENT = "user-tier.conf"


def unit_names() -> tuple[str, ...]:
    package = resources.files(__name__)
    return tuple(sorted(entry.name for entry in package.iterdir()
                        if entry.name.endswith((".service", ".socket"))))


def _read(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text()


def render_units(command: Sequence[str], config_file: str = DEFAULT_CONFIG) -> dict[str, str]:
    """Unit name → its text, with this installation's command and settings file."""
    hardening = "\n".join(line for line in _read(HARDENING_FRAGMENT).splitlines()
                          if not line.startswith("#"))
    rendered: dict[str, str] = {}
    for name in unit_names():
        text = _read(name)
        text = text.replace("@CLOUDSEED@", shlex.join(command))
        text = text.replace("@CONFIG@", shlex.quote(config_file))
        rendered[name] = text.replace("@HARDENING@", hardening)
    return rendered


def install(root: Path, command: Sequence[str], config_file: str = DEFAULT_CONFIG) -> list[Path]:
    """Write every unit and the sysusers.d entry under ``root``; return the paths written."""
    written: list[Path] = []
    unit_dir = root / UNIT_DIR
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name, text in render_units(command, config_file).items():
        path = unit_dir / name
        path.write_text(text)
        path.chmod(0o644)
        written.append(path)
    sysusers = root / SYSUSERS_PATH
    sysusers.parent.mkdir(parents=True, exist_ok=True)
    sysusers.write_text(_read("sysusers.conf"))
    sysusers.chmod(0o644)
    written.append(sysusers)
    return written
