"""haproxy config generation and the supervised process (real haproxy 2.6)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from tests.support.ports import free_port
from tests.support.processes import alive, wait_until
from tests.support.proxy import HAPROXY, http_request, wait_for_port

from cloudseed.errors import ConfigError
from cloudseed.proxy.haproxy import HaproxyConfig, HaproxyProcess, config_for, render_config
from cloudseed.proxy.hygiene import IDENTITY_HEADER_REGEX, is_identity_header
from cloudseed.proxy.listen import ListenAddress
from cloudseed.proxy.relay import ProxyScope
from cloudseed.settings import ProxySettings

pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy is not installed")


def _config(tmp_path: Path, port: int = 9697, **kw: object) -> HaproxyConfig:
    listeners = [ListenAddress("127.0.0.1", port)]
    return config_for(ProxyScope(network_id="net-1"), listeners, str(tmp_path / "agent.sock"),
                      tmp_path, ProxySettings(), **kw)  # type: ignore[arg-type]


def test_config_is_valid_for_haproxy(tmp_path: Path) -> None:
    listeners = [ListenAddress("169.254.169.254", 80), ListenAddress("fe80::a9fe:a9fe%lo", 80),
                 ListenAddress("0.0.0.0", 9697), ListenAddress("::", 9698)]
    config = config_for(ProxyScope(router_id="rtr-1"), listeners, "/run/agent.sock", tmp_path,
                        ProxySettings(), status_socket=str(tmp_path / "status.sock"))
    path = tmp_path / "c.conf"
    path.write_text(render_config(config))
    result = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()


def test_config_deletes_identity_then_sets_own_header_then_forwardfor(tmp_path: Path) -> None:
    text = render_config(_config(tmp_path))
    lines = [line.strip() for line in text.splitlines()]
    delete = lines.index(f"http-request del-header {IDENTITY_HEADER_REGEX} -m reg")
    set_header = lines.index("http-request set-header X-Neutron-Network-ID net-1")
    refuse_put = next(i for i, line in enumerate(lines) if "METH_PUT client_forwarded" in line)
    assert refuse_put < delete < set_header < lines.index("option forwardfor")
    assert f"server metadata unix@{tmp_path / 'agent.sock'}" in lines
    assert "maxconn 1024" in lines


@pytest.mark.parametrize(
    "name",
    ["x-forwarded-for", "x_forwarded_for", "forwarded", "x-instance-id", "x_instance_id",
     "x-instance-id-signature", "x-tenant-id", "x-neutron-router-id", "x-neutron-anything",
     "x_neutron_network_id", "x-forwarded-host", "x-instance", "accept", "x-tenant"],
)
def test_haproxy_regex_and_builtin_rule_agree(name: str) -> None:
    assert bool(re.match(IDENTITY_HEADER_REGEX, name)) == is_identity_header(name)


def test_bind_lines_for_each_listener_shape(tmp_path: Path) -> None:
    listeners = [ListenAddress.parse("169.254.169.254:80"),
                 ListenAddress.parse("[fe80::a9fe:a9fe%tap1]:80"),
                 ListenAddress.parse("[::]:9697")]
    text = render_config(config_for(ProxyScope(router_id="r"), listeners, "/s", tmp_path,
                                    ProxySettings()))
    assert "bind 169.254.169.254:80\n" in text
    assert "bind fe80::a9fe:a9fe:80 interface tap1\n" in text
    assert "bind :::9697 v4v6\n" in text


def test_ensure_writes_per_uuid_config_and_ignores_pidfile_changes(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, port)
    process = HaproxyProcess(config.uuid, tmp_path, binary=HAPROXY)
    try:
        assert process.ensure(render_config(config))
        assert process.config_path == tmp_path / "net-1.conf"
        wait_for_port("127.0.0.1", port)
        first = process.pid
        moved = render_config(config).replace(config.pidfile, "/elsewhere/x.pid")
        assert not process.ensure(moved)  # only the pidfile differs: no restart
        assert process.pid == first
        changed = render_config(_config(tmp_path, free_port()))
        assert process.ensure(changed)  # a real change: replaced
        assert process.pid not in (0, first)
        assert wait_until(lambda: not alive(first))  # the old one soft-stopped
    finally:
        process.stop()


def test_rejected_config_refuses_to_start(tmp_path: Path) -> None:
    process = HaproxyProcess("bad", tmp_path, binary=HAPROXY)
    with pytest.raises(ConfigError):
        process.ensure("global\n    no-such-keyword\n")
    assert process.pid == 0
    assert not process.config_path.exists()


def test_crashed_haproxy_is_respawned(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, port)
    process = HaproxyProcess(config.uuid, tmp_path, binary=HAPROXY)
    try:
        process.ensure(render_config(config))
        wait_for_port("127.0.0.1", port)
        os.kill(process.pid, signal.SIGKILL)
        assert wait_until(process.check)
        assert process.restarts == 1
        wait_for_port("127.0.0.1", port)
        assert not process.check()  # running: nothing to do
    finally:
        process.stop()


def test_inherited_listener_survives_haproxy_restarts(tmp_path: Path) -> None:
    """haproxy binds fd@3, which we hold: connections made while it is down wait."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = config_for(ProxyScope(network_id="net-1"), [ListenAddress("127.0.0.1", port)],
                        str(tmp_path / "agent.sock"), tmp_path, ProxySettings(),
                        inherited_fds=(3,))
    assert "bind fd@3\n" in render_config(config)
    process = HaproxyProcess(config.uuid, tmp_path, binary=HAPROXY,
                             sockets=[("proxy", listener)])
    try:
        process.ensure(render_config(config))
        os.kill(process.pid, signal.SIGKILL)
        # haproxy is dead; the kernel accepts the connection into our socket's backlog.
        client = socket.create_connection(("127.0.0.1", port), timeout=10.0)
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert wait_until(process.check)
        answer = client.recv(100)
        client.close()
        assert answer.startswith(b"HTTP/1.1 503")  # haproxy answered (no agent): not refused
    finally:
        process.stop()
        listener.close()


def test_status_socket_serves_healthz_and_prometheus_metrics(tmp_path: Path) -> None:
    port = free_port()
    status = tmp_path / "status.sock"
    config = _config(tmp_path, port, status_socket=str(status))
    process = HaproxyProcess(config.uuid, tmp_path, binary=HAPROXY)
    try:
        process.ensure(render_config(config))
        wait_for_port("127.0.0.1", port)
        http_request("127.0.0.1", port, "GET", "/")  # agent absent: 503, still counted
        from tests.support.proxy import unix_request

        code, _, body = unix_request(status, "GET", "/healthz")
        assert code == 200
        assert b'"status":"ok"' in body
        code, _, body = unix_request(status, "GET", "/metrics")
        assert code == 200
        assert b'haproxy_frontend_http_requests_total{proxy="listener"}' in body
    finally:
        process.stop()
