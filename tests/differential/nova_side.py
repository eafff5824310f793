"""Nova's real metadata code for one in-memory instance (runs in Nova's venv).

Not part of cloudseed: the differential test runs this file with the python
of a venv holding nova from PyPI (``tests/support/openstack_venv.py``).

Only what Nova would ask its database and Neutron is answered from memory,
the way Nova's own tests do it (``nova/tests/unit/test_metadata.py``:
``get_metadata_by_instance_id``, the security-group API and the instance
lookups of the password POST are stubbed); everything that builds and
serves the documents is Nova's: ``MetadataRequestHandler``,
``InstanceMetadata``, ``netutils``, ``block_device``, the password handler,
StaticJSON vendor data and ``ConfigDriveBuilder``.

    python nova_side.py serve SPEC.json        # prints the port, serves until stdin closes
    python nova_side.py configdrive SPEC.json DIR   # Nova's config-drive files into DIR
    NOVA_SIDE_SPECS=SPEC.json uwsgi --wsgi-file nova_side.py …   # under a WSGI server

SPEC is the instance as JSON (written by ``tests/differential/spec.py``). The
benchmark (``bench/anchors.py``) serves its whole fleet with the third form:
uwsgi with N workers, as Nova 34 ships its metadata API only as a WSGI app.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server


def _configure(spec: dict[str, Any]) -> Any:
    import nova.conf
    from oslo_log import log

    conf = nova.conf.CONF
    log.register_options(conf)  # as nova.config.parse_args does
    conf([], project="nova", default_config_files=[], default_config_dirs=[])
    conf.set_override("service_metadata_proxy", True, "neutron")
    conf.set_override("metadata_proxy_shared_secret", spec["secret"], "neutron")
    # The tests want no cache: every request rebuilds the instance's metadata,
    # so a stored password is seen at once (Nova's 15 s cache would hide it).
    # The benchmark asks for Nova's default (15 s).
    conf.set_override("metadata_cache_expiration", spec.get("metadata_cache_seconds", 0), "api")
    conf.set_override("local_metadata_per_cell", True, "api")
    conf.set_override("dhcp_domain", spec["dhcp_domain"], "api")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as vendor:
        json.dump(spec["static_vendordata"], vendor)
    conf.set_override("vendordata_jsonfile_path", vendor.name, "api")
    return conf


def _network_info(spec: dict[str, Any]) -> Any:
    from nova.network import model

    vifs = []
    for vif in spec["vifs"]:
        net = vif["network"]
        subnets = []
        for sub in net["subnets"]:
            extra: dict[str, Any] = {}
            if sub["dhcp_server"]:
                extra["dhcp_server"] = sub["dhcp_server"]
            if sub["ipv6_address_mode"]:
                extra["ipv6_address_mode"] = sub["ipv6_address_mode"]
            subnets.append(
                model.Subnet(
                    cidr=sub["cidr"],
                    gateway=model.IP(address=sub["gateway"], type="gateway")
                    if sub["gateway"]
                    else None,
                    dns=[model.IP(address=d, type="dns") for d in sub["dns"]],
                    routes=[
                        model.Route(cidr=cidr, gateway=model.IP(address=gw, type="gateway"))
                        for cidr, gw in sub["routes"]
                    ],
                    ips=[
                        model.FixedIP(
                            address=ip["address"],
                            floating_ips=[
                                model.IP(address=f, type="floating") for f in ip["floating"]
                            ],
                        )
                        for ip in sub["ips"]
                    ],
                    **extra,
                )
            )
        network = model.Network(id=net["id"], subnets=subnets, mtu=net["mtu"])
        vifs.append(
            model.VIF(
                id=vif["id"],
                address=vif["address"],
                network=network,
                type=vif["type"],
                devname=vif["devname"],
            )
        )
    return model.NetworkInfo(vifs)


def _instance(spec: dict[str, Any]) -> Any:
    from nova import context, objects
    from nova.api.metadata import password
    from nova.objects import virt_device_metadata as devices

    ctxt = context.get_admin_context()
    key = spec["key"]
    flavor = spec["flavor"]
    # What Nova's libvirt driver records for a tagged NIC: its PCI slot.
    nics = [
        devices.NetworkInterfaceMetadata(
            bus=devices.PCIDeviceBus(address=f"0000:00:{3 + i:02x}.0"),
            mac=vif["address"],
            tags=[vif["tag"]],
        )
        for i, vif in enumerate(spec["vifs"])
        if vif["tag"]
    ]
    inst = objects.Instance(
        context=ctxt,
        id=spec["ec2_id"],
        uuid=spec["uuid"],
        user_id=spec["user_id"],
        project_id=spec["project_id"],
        key_name=key["name"] if key else None,
        key_data=key["public_key"] if key else None,
        host="compute-1",
        launch_index=spec["launch_index"],
        reservation_id=spec["reservation_id"],
        user_data=spec["user_data_b64"],
        image_ref=spec["image_ref"],
        kernel_id="",
        ramdisk_id="",
        vcpus=1,
        root_device_name="/dev/vda",
        # libvirt's names for the flavor's disks (nova.virt.libvirt.blockinfo).
        default_ephemeral_device="/dev/vdb" if flavor["ephemeral_gb"] else None,
        default_swap_device=(
            ("/dev/vdc" if flavor["ephemeral_gb"] else "/dev/vdb") if flavor["swap"] else None
        ),
        hostname=spec["hostname"],
        display_name=spec["name"],
        metadata=dict(spec["metadata"]),
        system_metadata=password.convert_password(ctxt, spec["password"])
        if spec["password"]
        else {},
        device_metadata=objects.InstanceDeviceMetadata(devices=nics),
        numa_topology=None,
        security_groups=objects.SecurityGroupList(),
        availability_zone=spec["availability_zone"],
    )
    inst.keypairs = objects.KeyPairList(
        objects=[objects.KeyPair(name=key["name"], type=key["type"], public_key=key["public_key"])]
        if key
        else []
    )
    inst.ec2_ids = objects.EC2Ids(
        instance_id=f"i-{spec['ec2_id']:08x}", ami_id=spec["ami_id"], kernel_id=None, ramdisk_id=None
    )
    inst.info_cache = objects.InstanceInfoCache(
        context=ctxt, instance_uuid=inst.uuid, network_info=_network_info(spec)
    )
    inst.flavor = objects.Flavor(
        name=flavor["name"],
        memory_mb=2048,
        vcpus=1,
        root_gb=flavor["root_gb"],
        ephemeral_gb=flavor["ephemeral_gb"],
        swap=flavor["swap"],
        flavorid="1",
        extra_specs={},
    )
    return inst


class _Instances:
    """The database: each instance built from its spec on first read, then kept
    (the password POST's ``save()`` writes into the kept object). The first read
    of an instance stands in for Nova's database query, at a fraction of its cost."""

    def __init__(self, specs: list[dict[str, Any]]) -> None:
        self._specs = {spec["uuid"]: spec for spec in specs}
        self._built: dict[str, Any] = {}

    def get(self, uuid: str) -> Any:
        from nova import exception

        instance = self._built.get(uuid)
        if instance is None:
            spec = self._specs.get(uuid)
            if spec is None:
                raise exception.InstanceNotFound(instance_id=uuid)
            instance = self._built[uuid] = _instance(spec)
        return instance


def _stub_database(instances: _Instances) -> None:
    """Answer Nova's database and Neutron questions from ``instances``."""
    from nova import objects
    from nova.api.metadata import base
    from nova.network import security_group_api

    def by_instance_id(instance_id: str, address: str, ctxt: Any = None) -> Any:
        return base.InstanceMetadata(instances.get(instance_id), address)

    def get_by_uuid(cls: Any, ctxt: Any, uuid: str, /, **kwargs: Any) -> Any:
        return instances.get(uuid)

    base.get_metadata_by_instance_id = by_instance_id
    objects.Instance.get_by_uuid = classmethod(get_by_uuid)
    # instance.save(): the in-memory instance is the database row.
    objects.Instance.save = lambda self, *args, **kwargs: None
    objects.Instance.get_bdms = lambda self: objects.BlockDeviceMappingList(objects=[])
    security_group_api.get_instance_security_groups = lambda ctxt, inst: [{"name": "default"}]


def _load(path: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from nova import objects

    objects.register_all()
    with open(path) as handle:
        specs: list[dict[str, Any]] = json.load(handle)
    conf = _configure(specs[0])
    return specs, conf


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(path: str) -> None:
    specs, _ = _load(path)
    from nova.api.metadata import handler

    _stub_database(_Instances(specs))
    server = make_server("127.0.0.1", 0, handler.MetadataRequestHandler(), handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write(f"{server.server_port}\n")
    sys.stdout.flush()
    sys.stdin.read()  # the test closes stdin (or exits) to stop us
    server.shutdown()


def configdrive(path: str, out: str) -> None:
    specs, _ = _load(path)
    from nova.api.metadata import base
    from nova.virt import configdrive as builder

    spec = specs[0]
    instances = _Instances([spec])
    instance = instances.get(spec["uuid"])
    _stub_database(instances)
    # As the libvirt driver builds it: injected files as content, the
    # network info, and the admin password as extra_md when there is one.
    files = [(p, base64.b64decode(c)) for p, c in spec["files"]]
    metadata = base.InstanceMetadata(
        instance, content=files, extra_md={}, network_info=_network_info(spec)
    )
    drive = builder.ConfigDriveBuilder(instance_md=metadata)
    drive._write_md_files(out)


def wsgi_application(path: str) -> Any:
    """Nova's metadata handler as a WSGI app for the specs in ``path``; built in
    uwsgi's master, before it forks its workers."""
    specs, _ = _load(path)
    from nova.api.metadata import handler

    _stub_database(_Instances(specs))
    return handler.MetadataRequestHandler()


if __name__ != "__main__" and "NOVA_SIDE_SPECS" in os.environ:
    application = wsgi_application(os.environ["NOVA_SIDE_SPECS"])

if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        configdrive(sys.argv[2], sys.argv[3])
