"""The real ``cloudseed`` command, as an OpenStack user types it, against a real control API.

``--nic`` (one port per NIC, in order), ``--network`` as its shorthand,
``--config-drive True|False``, ``-c``/``-f value`` on every show and list
command, bad files and a closed pipe: each is one process of the installed
console script talking HTTP to a control API on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.cli import cloudseed_argv, run_cloudseed
from tests.support.control import RunningControl, running_control
from tests.support.keygen import ssh_public_key

from cloudseed.store import open_store


class Cli:
    def __init__(self, api: RunningControl) -> None:
        self.api = api
        self.env = {"CLOUDSEED_URL": api.url, "CLOUDSEED_TOKEN": api.token}

    def given(self, path: str, body: dict[str, Any]) -> Any:
        """Set-up straight through the control API (fast); the CLI is what is tested."""
        reply = self.api.call("POST", path, body)
        assert reply.status in {200, 201}, reply.body
        return reply.json()

    def run(self, *argv: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = run_cloudseed(*argv, env=self.env)
        assert done.returncode == expect, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *argv: str) -> Any:
        return json.loads(self.run(*argv, "-f", "json").stdout)

    def fails(self, *argv: str, expect: int = 1) -> str:
        """A refused command: exit ``expect``, one line on stderr, nothing on stdout."""
        done = self.run(*argv, expect=expect)
        assert done.stdout == ""
        return one_line(done.stderr)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.delenv("CLOUDSEED_CONFIG", raising=False)
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store, running_control(store) as api:
        yield Cli(api)


@pytest.fixture
def nets(cli: Cli) -> None:
    cli.given("/v1/networks", {"name": "net1", "subnets": [
        {"name": "net1-v4", "cidr": "10.0.0.0/24"},
        {"name": "net1-v6", "cidr": "fd00:1::/64", "ipv6_address_mode": "dhcpv6-stateful"}]})
    cli.given("/v1/networks", {"name": "net2", "subnets": [{"cidr": "10.0.2.0/24"}]})


def addresses(port: dict[str, Any]) -> list[str]:
    return [f["ip_address"] for f in port["fixed_ips"]]


def test_each_nic_is_one_port_in_the_order_given(cli: Cli, nets: None) -> None:
    server = cli.json(
        "server", "create", "vm",
        "--nic", "net-id=net1,v4-fixed-ip=10.0.0.10,v6-fixed-ip=fd00:1::10,mac=fa:16:3e:00:00:10",
        "--network", "net2",
        "--nic", "net-id=net2,v4-fixed-ip=10.0.2.20",
        "--network", "net1",
    )
    ports = server["ports"]
    net_names = {n["id"]: n["name"] for n in cli.json("network", "list")}
    assert [net_names[p["network_id"]] for p in ports] == ["net1", "net2", "net2", "net1"]
    assert addresses(ports[0]) == ["10.0.0.10", "fd00:1::10"]
    assert ports[0]["mac_address"] == "fa:16:3e:00:00:10"
    assert addresses(ports[2]) == ["10.0.2.20"]
    assert len({p["id"] for p in ports}) == 4
    assert len({p["mac_address"] for p in ports}) == 4


def test_two_networks_make_two_nics(cli: Cli, nets: None) -> None:
    server = cli.json("server", "create", "vm", "--network", "net1", "--network", "net2")
    assert len(server["ports"]) == 2
    assert server["ports"][0]["network_id"] != server["ports"][1]["network_id"]


def test_nic_with_an_existing_port_and_none(cli: Cli, nets: None) -> None:
    p1 = cli.given("/v1/ports", {"name": "p1", "network": "net2"})
    p2 = cli.given("/v1/ports", {"name": "p2", "network": "net1"})
    server = cli.json("server", "create", "vm", "--nic", "port-id=p1", "--port", "p2")
    assert [p["id"] for p in server["ports"]] == [p1["id"], p2["id"]]
    bare = cli.json("server", "create", "bare", "--nic", "none")
    assert bare["ports"] == []


def test_nic_tags_reach_the_ports(cli: Cli, nets: None) -> None:
    cli.given("/v1/ports", {"name": "p1", "network": "net2"})
    server = cli.json("server", "create", "vm", "--nic", "net-id=net1,tag=nic-a",
                      "--nic", "port-id=p1,tag=nic-b", "--network", "net2")
    assert [p["tag"] for p in server["ports"]] == ["nic-a", "nic-b", None]


def test_bad_nic_is_a_usage_error_naming_the_part(cli: Cli) -> None:
    # The whole grammar is tests/unit/cli/test_nic.py; this is the real command's exit.
    nic = "net-id=net1,v4-fixed-ip=fd00:1::5"
    done = cli.run("server", "create", "vm", "--nic", nic, expect=2)
    assert f"--nic {nic}: v4-fixed-ip=fd00:1::5 is not an IPv4 address" in done.stderr


def test_nic_combinations_refused(cli: Cli, nets: None) -> None:
    err = cli.fails("server", "create", "vm", "--nic", "none", "--network", "net1", expect=2)
    assert "--nic none cannot be combined" in err
    err = cli.fails("server", "create", "vm", expect=2)
    assert "--nic" in err
    err = cli.fails("server", "create", "vm", "--network", "net1", "--network", "net2",
                    "--fixed-ip", "10.0.0.9", expect=2)
    assert "--nic net-id=NET,v4-fixed-ip=IP" in err
    # The API still names the field of a bad address inside a good grammar.
    err = cli.fails("server", "create", "vm", "--nic", "net-id=net2,v4-fixed-ip=10.9.9.9")
    assert "networks[0].fixed_ips[0]" in err
    assert cli.json("server", "list") == []


def test_config_drive_true_or_false(cli: Cli, nets: None) -> None:
    for i, (flag, expected) in enumerate([
        (("--config-drive", "True"), True), (("--config-drive", "false"), False),
        (("--config-drive",), True), ((), False),
    ]):
        server = cli.json("server", "create", f"vm{i}", "--network", "net1", *flag)
        assert server["config_drive"] is expected, flag


def test_config_drive_refuses_other_words(cli: Cli) -> None:
    done = cli.run("server", "create", "vm", "--network", "n", "--config-drive", "maybe",
                   expect=2)
    assert "'maybe': use True or False" in done.stderr


@pytest.fixture
def inventory(cli: Cli, nets: None, tmp_path: Path) -> dict[str, Any]:
    cli.given("/v1/keypairs", {"name": "k1", "public_key": ssh_public_key(tmp_path)})
    cli.given("/v1/routers", {"name": "r1", "subnets": ["net2"]})
    cli.given("/v1/ports", {"name": "p9", "network": "net2"})
    server = cli.given("/v1/servers", {"name": "vm", "networks": [{"network": "net1"}],
                                       "key_name": "k1"})
    return {"server": server}


# Every list and show command, and the id (key pairs: name) it must print alone.
LISTS = [("network", "list"), ("subnet", "list"), ("router", "list"), ("port", "list"),
         ("server", "list"), ("keypair", "list")]
SHOWS = [("network", "show", "net1"), ("subnet", "show", "net1-v4"), ("router", "show", "r1"),
         ("port", "show", "p9"), ("server", "show", "vm"), ("keypair", "show", "k1")]


@pytest.mark.parametrize("argv", LISTS, ids=" ".join)
def test_every_list_prints_bare_values_of_chosen_columns(
    cli: Cli, inventory: dict[str, Any], argv: tuple[str, ...]
) -> None:
    column = "name" if argv[0] == "keypair" else "id"
    records = cli.json(*argv)
    assert records
    done = cli.run(*argv, "-f", "value", "-c", column)
    assert done.stdout.splitlines() == [r[column] for r in records]
    chosen = cli.json(*argv, "-c", column, "-c", "name")
    assert chosen == [{column: r[column], "name": r["name"]} for r in records]


@pytest.mark.parametrize("argv", SHOWS, ids=" ".join)
def test_every_show_prints_bare_values_of_chosen_fields(
    cli: Cli, inventory: dict[str, Any], argv: tuple[str, ...]
) -> None:
    record = cli.json(*argv)
    column = "name" if argv[0] == "keypair" else "id"
    assert cli.run(*argv, "-f", "value", "-c", column).stdout == f"{record[column]}\n"
    assert cli.json(*argv, "-c", "name", "-c", column) == {
        "name": record["name"], column: record[column]}
    table = cli.run(*argv, "-c", "name").stdout
    assert record["name"] in table
    assert record[column] not in table or column == "name"


def test_columns_by_title_and_value_rows(cli: Cli, inventory: dict[str, Any]) -> None:
    ports = cli.json("port", "list")
    rows = cli.run("port", "list", "-f", "value", "-c", "MAC Address", "-c", "ID").stdout
    assert rows.splitlines() == [f"{p['mac_address']} {p['id']}" for p in ports]
    # Without -c, value prints the table's columns, one record per line.
    lines = cli.run("server", "list", "-f", "value").stdout.splitlines()
    server = inventory["server"]
    assert lines == [f"{server['id']} vm vm {addresses(server['ports'][0])[0]}, "
                    f"{addresses(server['ports'][0])[1]} k1"]
    err = cli.fails("server", "list", "-c", "colour", expect=2)
    assert err.startswith("cloudseed: -c colour: no such column; choose from id, name")


# -- bad files --------------------------------------------------------------------


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "missing": tmp_path / "missing.yaml",
        "directory": tmp_path / "adir",
        "latin1": tmp_path / "latin1.txt",
        "binary": tmp_path / "random.bin",
        "unreadable": tmp_path / "secret.txt",
    }
    files["directory"].mkdir()
    files["latin1"].write_bytes("name: caf\xe9\n".encode("latin-1"))
    files["binary"].write_bytes(bytes(range(256)) * 4)
    files["unreadable"].write_text("ok\n")
    files["unreadable"].chmod(0)
    return files


FIXES = {
    "missing": "no such file; check the path",
    "directory": "is a directory",
    "latin1": "not UTF-8",
    "binary": "not UTF-8",
    "unreadable": "permission denied",
}
# (argv with FILE in it, which kinds fail: user-data and injected files are bytes,
# so a binary or Latin-1 file is fine there).
FILE_ARGS = [
    (("import", "FILE"), list(FIXES)),
    (("keypair", "create", "k", "--public-key", "FILE"), list(FIXES)),
    (("server", "create", "vm", "--network", "net1", "--user-data", "FILE"),
     ["missing", "directory", "unreadable"]),
    (("server", "create", "vm", "--network", "net1", "--file", "/etc/x=FILE"),
     ["missing", "directory", "unreadable"]),
    (("--config", "FILE", "db", "current"), list(FIXES)),
]


def without_dac_override() -> list[str]:
    """A prefix that makes root obey file modes, so 'unreadable' means unreadable."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test unreadable files as root"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


@pytest.mark.parametrize(("argv", "kinds"), FILE_ARGS, ids=lambda argv: " ".join(argv))  # noqa: PLW0108
def test_bad_file_is_one_line_naming_the_file_and_the_fix(
    cli: Cli, nets: None, bad_files: dict[str, Path], argv: tuple[str, ...], kinds: list[str]
) -> None:
    for kind in kinds:
        path = str(bad_files[kind])
        full = [a.replace("FILE", path) for a in argv]
        done = subprocess.run([*without_dac_override(), *cloudseed_argv(), *full],
                              env={**os.environ, **cli.env}, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 1, (kind, done.stdout, done.stderr)
        line = one_line(done.stderr)
        assert "Traceback" not in done.stderr
        assert path in line, (kind, line)
        assert FIXES[kind] in line, (kind, line)
    assert cli.json("server", "list") == []


def test_import_from_stdin_that_is_binary(cli: Cli) -> None:
    done = run_cloudseed("import", "-", env=cli.env, stdin=b"\xff\xfe\x00junk")
    assert done.returncode == 1
    assert "import -: not UTF-8 YAML or JSON" in one_line(done.stderr)


# -- a reader that goes away ----------------------------------------------------------


def test_closed_pipe_ends_quietly(cli: Cli, tmp_path: Path) -> None:
    cli.given("/v1/networks", {"name": "net1"})
    # The reader is gone before cloudseed writes a byte: every write is EPIPE.
    process = subprocess.Popen([*cloudseed_argv(), "network", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, **cli.env})
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(60) == 141
    assert err == ""


def test_head_of_a_long_listing(cli: Cli, tmp_path: Path) -> None:
    networks = [{"name": f"n{i:04d}", "subnets": [{"cidr": f"10.{i // 250}.{i % 250}.0/24"}]}
                for i in range(600)]
    cli.given("/v1/import", {"networks": networks})
    script = (f"set -o pipefail; {' '.join(cloudseed_argv())} network list -f json | head -1; "
              'echo "status=${PIPESTATUS[0]}" >&2')
    done = subprocess.run(["bash", "-c", script], env={**os.environ, **cli.env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout == "[\n"
    # 141 when the EPIPE reaches cloudseed, 0 when CPython's partial write
    # swallows it: either way one quiet line from the shell, no traceback.
    assert done.stderr.strip() in {"status=141", "status=0"}, done.stderr
