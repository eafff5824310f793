"""The ``cloudseed`` CLI, in process, against a real control API on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.control import RunningControl, running_control
from tests.support.keygen import ssh_public_key

from cloudseed.cli.main import main
from cloudseed.store import SqlStore


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def run(self, *argv: str, expect: int = 0) -> tuple[str, str]:
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        assert code == expect, (argv, out, err)
        return out, err

    def json(self, *argv: str) -> Any:
        return json.loads(self.run(*argv, "-f", "json")[0])


@pytest.fixture
def api(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningControl]:
    with running_control(store) as running:
        monkeypatch.setenv("CLOUDSEED_URL", running.url)
        monkeypatch.setenv("CLOUDSEED_TOKEN", running.token)
        monkeypatch.delenv("CLOUDSEED_CONFIG", raising=False)
        yield running


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def test_network_router_and_subnet_commands(api: RunningControl, cli: Cli) -> None:
    net = cli.json(
        "network",
        "create",
        "net1",
        "--subnet-range",
        "10.0.0.0/24",
        "--dns",
        "10.0.0.2",
        "--mtu",
        "1450",
        "--ipv6-range",
        "fd00::/64",
        "--ipv6-mode",
        "slaac",
    )
    assert [s["cidr"] for s in net["subnets"]] == ["10.0.0.0/24", "fd00::/64"]
    assert net["subnets"][0]["dns_nameservers"] == ["10.0.0.2"]
    cli.run(
        "network",
        "create",
        "flat",
        "--subnet-range",
        "192.168.0.0/24",
        "--gateway",
        "none",
        "--no-dhcp",
    )
    assert cli.json("subnet", "show", "flat-v4")["gateway_ip"] is None
    table, _ = cli.run("network", "list")
    assert "| ID" in table
    assert "10.0.0.0/24" in table
    cli.run("router", "create", "r1")
    router = cli.json("router", "add", "subnet", "r1", "net1")
    assert len(router["subnet_ids"]) == 2
    router = cli.json("router", "remove", "subnet", "r1", "net1-v6")
    assert router["subnet_ids"] == [net["subnets"][0]["id"]]
    assert yaml.safe_load(cli.run("router", "list", "-f", "yaml")[0])[0]["name"] == "r1"
    cli.run("subnet", "create", "extra", "--network", "flat", "--subnet-range", "192.168.1.0/24")
    assert len(cli.json("subnet", "list", "--network", "flat")) == 2
    cli.run("subnet", "delete", "extra")
    cli.run("router", "delete", "r1")
    cli.run("network", "delete", "flat")
    assert [n["name"] for n in cli.json("network", "list")] == ["net1"]


def test_server_lifecycle(api: RunningControl, cli: Cli, tmp_path: Path) -> None:
    cli.run("network", "create", "net1", "--subnet-range", "10.0.0.0/24")
    key_file = tmp_path / "key.pub"
    key_file.write_text(ssh_public_key(tmp_path))
    keypair = cli.json("keypair", "create", "k1", "--public-key", str(key_file))
    assert keypair["fingerprint"].count(":") == 15
    user_data = tmp_path / "user-data"
    user_data.write_bytes(b"#cloud-config\nhostname: x\n")
    motd = tmp_path / "motd"
    motd.write_text("hello\n")
    server = cli.json(
        "server",
        "create",
        "web 1",
        "--network",
        "net1",
        "--fixed-ip",
        "10.0.0.10",
        "--mac",
        "fa:16:3e:00:00:10",
        "--key-name",
        "k1",
        "--user-data",
        str(user_data),
        "--property",
        "role=web",
        "--property",
        "tier=1",
        "--file",
        f"/etc/motd={motd}",
        "--config-drive",
        "--availability-zone",
        "az1",
        "--flavor",
        "m1.large",
        "--root-gb",
        "20",
        "--ephemeral-gb",
        "5",
        "--swap-mb",
        "512",
        "--image",
        "img-1",
        "--project",
        "proj-1",
        "--imds-tokens",
        "required",
        "--imds-hop-limit",
        "2",
    )
    assert server["hostname"] == "web-1"
    assert server["ports"][0]["fixed_ips"][0]["ip_address"] == "10.0.0.10"
    assert server["ports"][0]["mac_address"] == "fa:16:3e:00:00:10"
    assert server["metadata"] == {"role": "web", "tier": "1"}
    assert server["imds"] == {"tokens": "required", "endpoint": "enabled", "hop_limit": 2,
                              "tags": False}
    assert server["config_drive"] is True
    assert (server["root_gb"], server["ephemeral_gb"], server["swap_mb"]) == (20, 5, 512)
    shown, _ = cli.run("server", "show", "web 1")
    assert "ephemeral 5 GB" in shown
    assert "10.0.0.10" in shown
    assert "role='web'" in shown
    assert "i-" in shown
    cli.run("server", "set", "web 1", "--property", "tier=2", "--imds-endpoint", "disabled",
            "--imds-tags", "enabled")
    cli.run("server", "unset", "web 1", "--property", "role")
    server = cli.json("server", "show", server["id"])
    assert server["metadata"] == {"tier": "2"}
    # Options not named keep their values (hop limit 2).
    assert server["imds"] == {"tokens": "required", "endpoint": "disabled", "hop_limit": 2,
                              "tags": True}
    assert api.store.set_password_once(server["id"], "ZW5jcnlwdGVk")
    assert cli.json("server", "password", "show", "web 1") == {"password": "ZW5jcnlwdGVk"}
    cli.run("server", "password", "clear", "web 1")
    assert cli.json("server", "password", "show", "web 1") == {"password": ""}
    listed, _ = cli.run("server", "list")
    assert "web 1" in listed
    assert [p["server_id"] for p in cli.json("port", "list", "--server", "web 1")] == [server["id"]]
    cli.run("server", "delete", "web 1")
    assert cli.json("server", "list") == []
    assert cli.json("port", "list") == []
    cli.run("keypair", "delete", "k1")


def test_disk_sizes_must_be_whole_numbers(api: RunningControl, cli: Cli) -> None:
    cli.run("network", "create", "net1", "--subnet-range", "10.0.0.0/24")
    with pytest.raises(SystemExit) as exit_:
        main(["server", "create", "vm", "--network", "net1", "--swap-mb", "-1"])
    assert exit_.value.code == 2
    err = cli.capsys.readouterr().err
    assert "--swap-mb" in err
    assert "whole number" in err
    assert cli.json("server", "list") == []


def test_port_commands(api: RunningControl, cli: Cli) -> None:
    cli.run("network", "create", "net1", "--subnet-range", "10.0.0.0/24")
    port = cli.json(
        "port",
        "create",
        "p1",
        "--network",
        "net1",
        "--fixed-ip",
        "subnet=net1-v4,ip-address=10.0.0.99",
    )
    assert port["fixed_ips"][0]["ip_address"] == "10.0.0.99"
    server = cli.json("server", "create", "vm", "--port", "p1")
    assert server["ports"][0]["id"] == port["id"]
    _, err = cli.run("port", "delete", "p1", expect=1)
    assert "belongs to server" in err
    # Taking a port another server owns is refused unless the caller says move=true.
    _, err = cli.run("server", "create", "thief", "--nic", "port-id=p1", expect=1)
    assert "move" in err
    assert cli.json("port", "show", "p1")["server_id"] == server["id"]
    assert [s["name"] for s in cli.json("server", "list")] == ["vm"]
    moved = cli.json("server", "create", "vm2", "--nic", "port-id=p1,move=true")
    assert cli.json("port", "show", "p1")["server_id"] == moved["id"]
    cli.run("server", "delete", "vm2", "--keep-ports")
    cli.run("server", "delete", "vm", "--keep-ports")
    assert cli.json("port", "show", "p1")["server_id"] is None
    cli.run("port", "delete", "p1")


def test_errors_are_one_line_naming_the_fix(
    api: RunningControl, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, err = cli.run("server", "show", "nope", expect=1)
    assert err == "cloudseed: 404: server 'nope' not found\n"
    metadata = [f"--property=k{i}=v" for i in range(129)]
    _, err = cli.run("server", "create", "vm", "--network", "nowhere", *metadata, expect=1)
    assert "metadata" in err
    assert "128" in err
    monkeypatch.delenv("CLOUDSEED_TOKEN")
    _, err = cli.run("server", "list", expect=1)
    assert "401" in err
    assert "CLOUDSEED_TOKEN" in err
    _, err = cli.run("server", "list", "--token", "wrong", expect=1)
    assert "403" in err
    _, err = cli.run("server", "list", "--url", "http://127.0.0.1:9", expect=1)
    assert "cannot reach the control API at http://127.0.0.1:9" in err
    assert "cloudseed serve" in err
    _, err = cli.run("keypair", "create", "k", "--public-key", "/nonexistent", expect=1)
    assert "/nonexistent" in err
    assert "Traceback" not in err


def test_import_and_export_round_trip(api: RunningControl, cli: Cli, tmp_path: Path) -> None:
    document = {
        "networks": [{"name": "net1", "subnets": [{"cidr": "10.0.0.0/24"}]}],
        "routers": [{"name": "r1", "subnets": ["net1"]}],
        "servers": [{"name": f"vm{i}", "ports": [{"network": "net1"}]} for i in range(5)],
    }
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(document))
    out, err = cli.run("import", str(path), "-f", "json")
    assert json.loads(out)["created"]["servers"] == 5
    assert "5 servers" in err
    assert "done" in err
    revision = api.store.revision()
    exported = tmp_path / "export.json"
    cli.run("export", "-f", "json", "-o", str(exported))
    out, err = cli.run("import", str(exported), "-f", "json")
    assert json.loads(out)["changed"] is False
    assert "nothing to change" in err
    assert api.store.revision() == revision
    yaml_out, _ = cli.run("export")
    assert yaml.safe_load(yaml_out) == json.loads(exported.read_text())


def test_import_of_an_invalid_file_names_the_field_and_writes_nothing(
    api: RunningControl, cli: Cli, tmp_path: Path
) -> None:
    document = {"servers": [{"name": f"vm{i}"} for i in range(50)]}
    document["servers"][31]["user_data"] = "***"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    _, err = cli.run("import", str(path), expect=1)
    assert "servers[31].user_data" in err
    assert api.store.list_servers() == []


def test_import_refuses_yaml_aliases_before_expanding_them(
    api: RunningControl, cli: Cli, tmp_path: Path
) -> None:
    # Nine levels of nine aliases: 387 million strings once re-encoded as JSON.
    lines = ['a0: &a0 "lol"']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines.append("servers: [{name: vm, metadata: {x: *a9}}]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    _, err = cli.run("import", str(path), expect=1)
    assert "aliases (*name) are not accepted" in err
    assert "line 2" in err
    assert api.store.list_servers() == []


def test_db_upgrade_migrates_the_configured_store(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    out, _ = cli.run("db", "upgrade", "--store-url", url)
    assert "schema is at" in out
    out, _ = cli.run("db", "current", "--store-url", url)
    lines = [line for line in out.splitlines() if "current" in line or "head" in line]
    assert len({line.split("|")[2].strip() for line in lines}) == 1


def test_identity_commands_show_publish_and_rotate_keys(api: RunningControl, cli: Cli) -> None:
    first = cli.json("identity", "keys")
    assert [key["signing"] for key in first] == [True]  # made when the control API started
    pem, _ = cli.run("identity", "certificate")
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE" not in pem
    rotated = cli.json("identity", "rotate")
    assert rotated["signing"] is True
    assert rotated["kid"] != first[0]["kid"]
    jwks = json.loads(cli.run("identity", "jwks")[0])
    assert [key["kid"] for key in jwks["keys"]] == [rotated["kid"], first[0]["kid"]]
    table, _ = cli.run("identity", "keys")
    assert rotated["kid"] in table
