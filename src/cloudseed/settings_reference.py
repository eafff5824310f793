"""The settings schema as text: the example TOML, the effective TOML, the Markdown reference.

Everything here is derived from ``cloudseed.settings`` itself: the dataclasses
give each setting's name, type and default, and the comment lines written
above each field there are its description. So ``cloudseed config example``
and docs/CONFIGURATION.md list exactly the settings that load, and a setting
added without a comment fails ``tests/unit/test_settings_reference.py``.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import json
import textwrap
import typing
import urllib.parse
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cloudseed import settings as settings_module
from cloudseed.settings import ENV_PREFIX, Secret, Settings, default_data_dir

MASK = "********"
# Defaults that depend on who runs the command; the reference states the rule.
_DYNAMIC_DEFAULTS: dict[Any, str] = {
    default_data_dir: "$STATE_DIRECTORY under systemd, else /var/lib/cloudseed as root, "
                      "else $XDG_DATA_HOME/cloudseed",
}
COMMENT_WIDTH = 88


@dataclass(frozen=True)
class SettingDoc:
    section: str  # "" for the top-level settings
    name: str
    hint: Any
    description: str
    field: dataclasses.Field[Any]

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.dotted.replace(".", "_").upper()

    @property
    def is_secret(self) -> bool:
        return self.hint is Secret or typing.get_args(self.hint)[:1] == (Secret,)


@dataclass(frozen=True)
class SectionDoc:
    name: str  # "" for the top level
    description: str
    settings: tuple[SettingDoc, ...]


@cache
def _comments() -> dict[tuple[str, str], str]:
    """(class name, field name) → the comment lines above the field, as one paragraph."""
    source = inspect.getsource(settings_module)
    lines = source.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above: list[str] = []
            index = item.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#"):
                above.insert(0, lines[index].strip().lstrip("#").strip())
                index -= 1
            found[(node.name, item.target.id)] = " ".join(above).replace("``", "`")
    return found


def _section_description(cls: type[Any]) -> str:
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature: no docstring
        doc = ""
    doc = inspect.cleandoc(doc).replace("``", "`")
    return doc.split("\n\n")[0].replace("\n", " ")


def sections() -> tuple[SectionDoc, ...]:
    """Every setting, the top-level ones first (TOML wants them before any table)."""
    comments = _comments()
    hints = typing.get_type_hints(Settings)
    top: list[SettingDoc] = []
    tables: list[SectionDoc] = []
    for top_field in dataclasses.fields(Settings):
        hint = hints[top_field.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            inner = typing.get_type_hints(hint)
            docs = tuple(
                SettingDoc(top_field.name, f.name, inner[f.name],
                           comments.get((hint.__name__, f.name), ""), f)
                for f in dataclasses.fields(hint)
            )
            tables.append(SectionDoc(top_field.name, _section_description(hint), docs))
        else:
            top.append(SettingDoc("", top_field.name, hint,
                                  comments.get(("Settings", top_field.name), ""), top_field))
    return (SectionDoc("", "Settings shared by several tiers.", tuple(top)), *tables)


def toml_value(value: Any, key: str = "", *, mask: bool = False) -> str:
    """One value in TOML syntax; with ``mask`` a set secret shows as ``MASK``."""
    if isinstance(value, Secret):
        return toml_value(MASK if mask and value else value.reveal())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # File modes read best in octal, as chmod takes them.
        return f"0o{value:o}" if key.endswith("_mode") else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(item, mask=mask) for item in value) + "]"
    if isinstance(value, enum.Enum):
        value = value.value
    if mask and isinstance(value, str):
        value = _mask_url_password(value)
    # A JSON string is a TOML basic string, except that TOML wants DEL escaped.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def _mask_url_password(text: str) -> str:
    """``postgresql://u:pw@h/db`` → ``postgresql://u:********@h/db``: a store URL may hold one."""
    parts = urllib.parse.urlsplit(text)
    if not parts.scheme or parts.password is None:
        return text
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username or ''}:{MASK}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def render_toml(settings: Settings, *, comments: bool, mask: bool) -> str:
    """``settings`` as a TOML file that loads back to the same values (unless masked)."""
    out: list[str] = []
    for section in sections():
        owner = getattr(settings, section.name) if section.name else settings
        if comments and out:
            out.append("")
        if comments:
            out.extend(_comment(section.description))
        if section.name:
            out.append(f"[{section.name}]")
        for doc in section.settings:
            if comments:
                out.extend(_comment(f"{doc.description} ({_type_name(doc)}; {doc.env_var})"))
            out.append(f"{doc.name} = {toml_value(getattr(owner, doc.name), doc.name, mask=mask)}")
    return "\n".join(out) + "\n"


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, COMMENT_WIDTH - 2)]


def example_toml() -> str:
    """``cloudseed config example``: every setting at its default, each with its comment."""
    header = ("# cloudseed settings: every setting with its default. Delete what you keep\n"
              "# at its default; `cloudseed config check FILE` validates the result.\n"
              "# Secrets may be given as <key>_file = \"/path\" instead.\n\n")
    return header + render_toml(Settings(), comments=True, mask=False)


def effective_toml(settings: Settings) -> str:
    """``cloudseed config show``: what this process would run with, secrets masked."""
    return render_toml(settings, comments=False, mask=True)


def _type_name(doc: SettingDoc) -> str:
    hint = doc.hint
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(member.value) for member in hint)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        item_name = "secret" if item is Secret else "string"
        return f"list of {item_name}s, comma separated in the environment"
    names = {str: "string", int: "integer", float: "number", bool: "boolean",
             Path: "path", Secret: "secret, or <key>_file"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _default_text(doc: SettingDoc) -> str:
    factory = doc.field.default_factory
    if factory in _DYNAMIC_DEFAULTS:
        return _DYNAMIC_DEFAULTS[factory]
    default = doc.field.default if factory is dataclasses.MISSING else factory()
    return "`" + toml_value(default, doc.name) + "`"


def reference_markdown() -> str:
    """docs/CONFIGURATION.md."""
    out = [
        "# Configuration reference",
        "",
        "Generated from `cloudseed/settings.py` by `cloudseed config example --format "
        "markdown`; do not edit by hand (a test compares this file with the generated one).",
        "",
        "Settings come from, later ones winning: the defaults below, a TOML file "
        "(`--config FILE` or `$CLOUDSEED_CONFIG`), environment variables "
        "`CLOUDSEED_<SECTION>_<KEY>`, then command-line flags. A secret may be given as "
        "`<key>_file` naming a file that holds it. `cloudseed config example` writes all of "
        "this as a TOML file, `cloudseed config show` prints the effective settings (secrets "
        "masked), `cloudseed config check FILE` validates a file.",
    ]
    for section in sections():
        title = f"`[{section.name}]`" if section.name else "Top level"
        out += ["", f"## {title}", "", section.description, "",
                "| setting | type | default | environment | what it does |",
                "|---|---|---|---|---|"]
        for doc in section.settings:
            cells = (f"`{doc.name}`", _type_name(doc), _default_text(doc), f"`{doc.env_var}`",
                     doc.description)
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(out) + "\n"
