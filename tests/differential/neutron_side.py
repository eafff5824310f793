"""Neutron's real metadata agent and haproxy configuration (runs in Neutron's venv).

Not part of cloudseed: the drop-in tests run this file with the python of a
venv holding neutron from PyPI (``tests/support/openstack_venv.py``).

    python neutron_side.py agent SPEC.json     # serve neutron-metadata-agent; prints "ready"
    python neutron_side.py haproxy SPEC.json   # print the haproxy config Neutron generates

The agent is Neutron's own ``MetadataProxyHandler`` on its own
``MetadataProxyServer`` (a Unix socket), configured as ``metadata_agent.ini``
would; only its RPC to neutron-server (``MetadataPluginAPI.get_ports``) is
answered from the ports in SPEC, and state reporting is off.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any


def _conf(spec: dict[str, Any]) -> Any:
    from neutron.common import config
    from neutron.conf.agent import common as agent_conf
    from neutron.conf.agent.metadata import config as meta
    from oslo_config import cfg

    conf = cfg.CONF
    config.register_common_config_options()
    meta.register_meta_conf_opts(meta.SHARED_OPTS)
    meta.register_meta_conf_opts(meta.UNIX_DOMAIN_METADATA_PROXY_OPTS)
    meta.register_meta_conf_opts(meta.METADATA_PROXY_HANDLER_OPTS)
    meta.register_meta_conf_opts(
        meta.METADATA_RATE_LIMITING_OPTS, cfg=conf, group=meta.RATE_LIMITING_GROUP
    )
    meta.register_meta_conf_opts(meta.METADATA_HAPROXY_OPTS, cfg=conf, group=meta.HAPROXY_GROUP)
    agent_conf.register_agent_state_opts_helper(conf)
    conf([], project="neutron", default_config_files=[], default_config_dirs=[])
    # metadata_agent.ini, as DEPLOYMENTS.md tells an operator to write it.
    conf.set_override("metadata_proxy_socket", spec["socket"])
    conf.set_override("nova_metadata_host", "127.0.0.1")
    conf.set_override("nova_metadata_port", spec.get("nova_port", 8775))
    conf.set_override("metadata_proxy_shared_secret", spec["secret"])
    conf.set_override("metadata_workers", 2)
    return conf


def agent(path: str) -> None:
    with open(path) as handle:
        spec = json.load(handle)
    conf = _conf(spec)
    from neutron.agent.metadata import agent as metadata_agent
    from neutron.agent.metadata import proxy_base

    ports: list[dict[str, Any]] = spec["ports"]
    # neutron-server answers from an indexed table; so does this stand-in, so
    # a benchmark fleet of thousands of ports costs Neutron no linear scan.
    by_ip: dict[str, list[dict[str, Any]]] = {}
    for port in ports:
        for fixed in port["fixed_ips"]:
            by_ip.setdefault(fixed["ip_address"], []).append(port)

    def get_ports(self: Any, context: Any, filters: dict[str, Any]) -> list[dict[str, Any]]:
        # neutron-server's answer to the agent's port query, from memory.
        ips = filters.get("fixed_ips", {}).get("ip_address", [])
        networks = set(filters.get("network_id", []))
        candidates = [p for ip in ips for p in by_ip.get(ip, ())] if ips else ports
        return [p for p in candidates if not networks or p["network_id"] in networks]

    metadata_agent.MetadataPluginAPI.__init__ = lambda self, topic: None
    metadata_agent.MetadataPluginAPI.get_ports = get_ports
    metadata_agent.MetadataProxyHandler._conf = conf
    if os.path.exists(spec["socket"]):
        os.unlink(spec["socket"])
    server = proxy_base.MetadataProxyServer(
        conf.metadata_workers, spec["socket"], metadata_agent.MetadataProxyHandler
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()
    server.shutdown()


def haproxy(path: str) -> None:
    with open(path) as handle:
        spec = json.load(handle)
    conf = _conf(spec)
    from neutron.agent.metadata import driver

    configurator = driver.HaproxyConfigurator(
        network_id=spec["network_id"],
        router_id=None,
        unix_socket_path=spec["socket"],
        host="127.0.0.1",
        port=spec["port"],
        user=str(os.getuid()),
        group=str(os.getgid()),
        state_path=spec["state_path"],
        pid_file=os.path.join(spec["state_path"], "haproxy.pid"),
        rate_limiting_config=conf.metadata_rate_limiting,
        haproxy_config=conf.metadata_haproxy,
    )
    sys.stdout.write(configurator.haproxy_cfg)


if __name__ == "__main__":
    {"agent": agent, "haproxy": haproxy}[sys.argv[1]](sys.argv[2])
