"""The built-in relay's own features: listeners, status socket, the CLI, namespaces."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.ports import free_port
from tests.support.proxy import (
    HAPROXY,
    Echo,
    echoed,
    header_values,
    http_request,
    loop_thread,
    unix_request,
    wait_for_port,
)

from cloudseed.errors import ConfigError
from cloudseed.proxy.hygiene import relayed_response_lines
from cloudseed.proxy.listen import ListenAddress
from cloudseed.proxy.relay import ProxyScope, Relay


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("169.254.169.254:80", "169.254.169.254", 80), ("0.0.0.0:9697", "0.0.0.0", 9697),
     ("[fe80::a9fe:a9fe%tap0]:80", "fe80::a9fe:a9fe%tap0", 80), ("[::]:9697", "::", 9697)],
)
def test_listen_addresses_parse(text: str, host: str, port: int) -> None:
    assert ListenAddress.parse(text) == ListenAddress(host, port)


@pytest.mark.parametrize("text", ["169.254.169.254", "fe80::1:80", "[::1]80", "1.2.3.4:x",
                                  "1.2.3.4:70000"])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        ListenAddress.parse(text)


@pytest.mark.parametrize("scope", [{}, {"router_id": "r", "network_id": "n"},
                                   {"router_id": "bad id"}, {"network_id": "x\nset-header"}])
def test_a_proxy_needs_exactly_one_clean_id(scope: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        ProxyScope(**scope)


def test_one_process_serves_ipv4_and_ipv6_listeners(tmp_path: Path) -> None:
    with loop_thread() as lt:
        agent = Echo("agent")
        lt.run(agent.listen_unix(tmp_path / "a.sock"))
        relay = Relay(ProxyScope(network_id="net-1"), str(tmp_path / "a.sock"))
        bound = lt.run(relay.start([ListenAddress("127.0.0.1", 0), ListenAddress("::1", 0)],
                                   status_socket=str(tmp_path / "status.sock")))
        try:
            for (host, port), peer in zip(bound, ["127.0.0.1", "::1"], strict=True):
                status, _, body = http_request(host, port, "GET", "/x")
                assert status == 200
                echo = echoed(body)
                assert header_values(echo, "x-forwarded-for") == [peer]
                assert header_values(echo, "x-neutron-network-id") == ["net-1"]
            http_request(*bound[0], "GET", "/x", [("X-Instance-ID", "v"), ("Forwarded", "f")])
            status, _, body = unix_request(tmp_path / "status.sock", "GET", "/metrics")
            assert status == 200
            text = body.decode()
            assert "cloudseed_proxy_requests_total 3" in text
            assert "cloudseed_proxy_identity_headers_removed_total 2" in text
            assert 'cloudseed_proxy_responses_total{status="200"} 3' in text
            status, _, body = unix_request(tmp_path / "status.sock", "GET", "/healthz")
            assert b"net-1" in body
        finally:
            lt.run(relay.stop())
            lt.run(agent.stop())


@pytest.mark.parametrize("kind", ["builtin", "haproxy"])
def test_cli_runs_the_proxy_and_stops_on_sigterm(tmp_path: Path, kind: str) -> None:
    if kind == "haproxy" and not Path(HAPROXY).exists():
        pytest.skip("haproxy is not installed")
    port = free_port()
    with loop_thread() as lt:
        agent = Echo("agent")
        lt.run(agent.listen_unix(tmp_path / "a.sock"))
        env = {**os.environ, "CLOUDSEED_STORE_DATA_DIR": str(tmp_path / "data")}
        process = subprocess.Popen(
            [sys.executable, "-m", "cloudseed.cli.main", "--log-level", "warning", "proxy",
             "--router-id", "rtr-cli", "--listen", f"127.0.0.1:{port}",
             "--agent-socket", str(tmp_path / "a.sock"), "--implementation", kind,
             "--status-socket", str(tmp_path / "status.sock")],
            env=env, stdin=subprocess.DEVNULL,
        )
        try:
            wait_for_port("127.0.0.1", port, timeout=20)
            status, _, body = http_request("127.0.0.1", port, "GET", "/x",
                                           [("X-Neutron-Router-ID", "rtr-spoof")])
            assert status == 200
            assert header_values(echoed(body), "x-neutron-router-id") == ["rtr-cli"]
            assert unix_request(tmp_path / "status.sock", "GET", "/healthz")[0] == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            lt.run(agent.stop())


NETNS = f"cstest{os.getpid()}"


@pytest.mark.privileged
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_proxy_enters_a_namespace_before_binding(tmp_path: Path) -> None:
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    process = None
    try:
        subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)
        with loop_thread() as lt:
            agent = Echo("agent")
            lt.run(agent.listen_unix(tmp_path / "a.sock"))
            process = subprocess.Popen(
                [sys.executable, "-m", "cloudseed.cli.main", "--log-level", "warning", "proxy",
                 "--network-id", "net-ns", "--listen", "127.0.0.1:80", "--netns", NETNS,
                 "--agent-socket", str(tmp_path / "a.sock")],
                stdin=subprocess.DEVNULL,
            )
            probe = (
                "import http.client,sys,time\n"
                "for _ in range(200):\n"
                "    try:\n"
                "        c=http.client.HTTPConnection('127.0.0.1',80,timeout=2);"
                "c.request('GET','/in-ns');r=c.getresponse();print(r.read().decode());break\n"
                "    except OSError: time.sleep(0.05)\n"
            )
            out = subprocess.run(["ip", "netns", "exec", NETNS, sys.executable, "-c", probe],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
            echo = echoed(out.encode())
            assert echo["path"] == "/in-ns"
            assert header_values(echo, "x-neutron-network-id") == ["net-ns"]
            # Port 80 on the host's own loopback stays untouched.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", 80), timeout=0.5).close()
            lt.run(agent.stop())
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        subprocess.run(["ip", "netns", "delete", NETNS], check=False)


@pytest.mark.parametrize(
    ("value", "hops"), [(b"1", 1), (b"64", 64), (b"0", 0), (b"65", 0), (b"-1", 0), (b"2x", 0)])
def test_the_hop_limit_is_taken_out_of_the_relayed_headers(value: bytes, hops: int) -> None:
    # Out of range or not a number: the reply keeps the socket's TTL (0 = none).
    content_type, lines, hop_limit = relayed_response_lines(
        [(b"content-type", b"text/plain"), (b"x-cloudseed-hop-limit", value), (b"etag", b'"e"')])
    assert (content_type, lines, hop_limit) == (b"text/plain", b'etag: "e"\r\n', hops)
