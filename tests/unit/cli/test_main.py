import argparse
import io
import json

import pytest
import yaml

from cloudseed.cli.context import emit, render_table
from cloudseed.cli.main import COMMAND_MODULES, build_parser, main

OPERATOR_GROUPS = ("network", "router", "port", "keypair", "server", "bulk", "db")


def _leaf_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _leaf_commands(sub, (*prefix, name))
    return found


def test_command_modules_list_every_group() -> None:
    for name in (
        *OPERATOR_GROUPS,
        "serve",
        "api",
        "agent",
        "proxy",
        "configdrive",
        "dataplane",
        "doctor",
        "demo",
    ):
        assert name in COMMAND_MODULES


def test_every_command_and_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _leaf_commands(build_parser())
    assert ("server", "password", "show") in commands
    assert ("router", "add", "subnet") in commands
    for command in commands:
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0, command
        assert "usage: cloudseed" in capsys.readouterr().out


def test_group_without_a_command_shows_its_help_and_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["server"]) == 2
    assert "password" in capsys.readouterr().err


def test_emit_formats() -> None:
    records = [
        {"id": "1", "name": "a", "metadata": {"k": "v"}},
        {"id": "2", "name": "b", "metadata": {}},
    ]
    out = io.StringIO()
    emit(records, "json", out=out)
    assert json.loads(out.getvalue()) == records
    out = io.StringIO()
    emit(records, "yaml", out=out)
    assert yaml.safe_load(out.getvalue()) == records
    out = io.StringIO()
    emit(records, "table", columns=("id", "metadata"), out=out)
    assert "| ID | Metadata |" in out.getvalue()
    assert "k='v'" in out.getvalue()


def test_table_cells_with_several_lines_stay_aligned() -> None:
    table = render_table(["A", "B"], [["x", "1\n22"]])
    widths = {len(line) for line in table.splitlines()}
    assert len(widths) == 1
