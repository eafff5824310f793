"""The control API's route table: path, method, body and response models, action.

One table serves dispatch (``api.py``) and the OpenAPI document
(``openapi.py``), so the documentation lists exactly the routes that exist
with exactly the models that validate them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cloudseed.configdrive.build import DRIVE_FORMATS, drive_file_name
from cloudseed.control import audit, bulk, identity, schemas
from cloudseed.control import guest_attributes as attrs
from cloudseed.control.bodies import parse_body
from cloudseed.control.service import ControlService
from cloudseed.http.message import Response

# (service, path parameters, query parameters, raw body) → JSON-ready result,
# or a ready Response for routes that answer with something other than JSON.
Action = Callable[[ControlService, Mapping[str, str], Mapping[str, str], bytes], Any]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # "/v1/servers/{server}/metadata/{key}"
    action: Action
    summary: str
    status: int = 200
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    query: tuple[str, ...] = ()
    # Allowed values of query parameters, for the OpenAPI document.
    query_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The media type of a 2xx body; anything but JSON is returned as a Response.
    produces: str = "application/json"
    # Long-running routes (import) run on the bulk executor.
    bulk: bool = False
    # Served without a bearer token: public keys that verifiers fetch.
    public: bool = False
    # A long-poll route: with ``?wait=S`` the action is re-run (on each change
    # of the server, control/waiting.py) until this says its result is done.
    wait_until: Callable[[Any], bool] | None = None

    @property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.pattern)


OCTET_STREAM = "application/octet-stream"
_PARAM = re.compile(r"\{(\w+)\}")
_COMPILED: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = re.compile("^" + _PARAM.sub(r"(?P<\1>[^/]+)", pattern) + "$")
        _COMPILED[pattern] = compiled
    return compiled


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in {"1", "true", "yes"}


def _network_create(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    return s.create_network(parse_body(schemas.NetworkCreate, b))


def _subnet_create(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    return s.create_subnet(p["network"], parse_body(schemas.SubnetCreate, b))


def _router_create(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    return s.create_router(parse_body(schemas.RouterCreate, b))


def _router_add(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    return s.router_add_subnet(p["router"], parse_body(schemas.RouterSubnetAdd, b).subnet)


def _port_create(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    return s.create_port(parse_body(schemas.PortCreate, b))


def _server_create(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    return s.create_server(parse_body(schemas.ServerCreate, b))


def _server_update(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    return s.update_server(p["server"], parse_body(schemas.ServerUpdate, b))


def _metadata_replace(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    body = parse_body(schemas.MetadataBody, b)
    return {"metadata": s.replace_metadata(p["server"], body.metadata)}


def _metadata_merge(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    body = parse_body(schemas.MetadataBody, b)
    return {"metadata": s.merge_metadata(p["server"], body.metadata)}


def _meta_set(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    body = parse_body(schemas.MetaItemBody, b)
    return {"meta": s.set_metadata_item(p["server"], p["key"], body.meta)}


def _keypair_create(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    return s.create_keypair(parse_body(schemas.KeypairCreate, b))


def _config_drive(s: ControlService, p: Mapping[str, str], q: Mapping[str, str], b: bytes) -> Any:
    server, fmt, image = s.build_config_drive(p["server"], q.get("format"))
    disposition = f'attachment; filename="{drive_file_name(server.name, fmt)}"'
    return Response(200, image, [("Content-Disposition", disposition)], content_type=OCTET_STREAM)


def _import(s: ControlService, p: Mapping[str, str], q: Any, b: bytes) -> Any:
    document = bulk.load_document_bytes(b)
    return bulk.apply_document(s.store, document).to_dict()


ROUTES: tuple[Route, ...] = (
    # networks and subnets
    Route("GET", "/v1/networks", lambda s, p, q, b: {"networks": s.list_networks()},
          "List networks with their subnets", response=schemas.NetworkList),
    Route("POST", "/v1/networks", _network_create, "Create a network (and its subnets)",
          201, schemas.NetworkCreate, schemas.NetworkOut),
    Route("GET", "/v1/networks/{network}", lambda s, p, q, b: s.get_network(p["network"]),
          "Show a network", response=schemas.NetworkOut),
    Route("DELETE", "/v1/networks/{network}",
          lambda s, p, q, b: s.delete_network(p["network"]),
          "Delete a network and its subnets (refused while ports use it)", 204),
    Route("GET", "/v1/networks/{network}/subnets",
          lambda s, p, q, b: {"subnets": s.list_subnets(p["network"])},
          "List the subnets of a network", response=schemas.SubnetList),
    Route("POST", "/v1/networks/{network}/subnets", _subnet_create, "Add a subnet",
          201, schemas.SubnetCreate, schemas.SubnetOut),
    Route("GET", "/v1/subnets", lambda s, p, q, b: {"subnets": s.list_subnets()},
          "List subnets", response=schemas.SubnetList),
    Route("GET", "/v1/subnets/{subnet}", lambda s, p, q, b: s.get_subnet(p["subnet"]),
          "Show a subnet", response=schemas.SubnetOut),
    Route("DELETE", "/v1/subnets/{subnet}", lambda s, p, q, b: s.delete_subnet(p["subnet"]),
          "Delete a subnet (refused while ports or routers use it)", 204),
    # routers
    Route("GET", "/v1/routers", lambda s, p, q, b: {"routers": s.list_routers()},
          "List routers", response=schemas.RouterList),
    Route("POST", "/v1/routers", _router_create, "Create a router",
          201, schemas.RouterCreate, schemas.RouterOut),
    Route("GET", "/v1/routers/{router}", lambda s, p, q, b: s.get_router(p["router"]),
          "Show a router", response=schemas.RouterOut),
    Route("DELETE", "/v1/routers/{router}", lambda s, p, q, b: s.delete_router(p["router"]),
          "Delete a router", 204),
    Route("POST", "/v1/routers/{router}/subnets", _router_add,
          "Attach a subnet (or every subnet of a network) to a router",
          200, schemas.RouterSubnetAdd, schemas.RouterOut),
    Route("DELETE", "/v1/routers/{router}/subnets/{subnet}",
          lambda s, p, q, b: s.router_remove_subnet(p["router"], p["subnet"]),
          "Detach a subnet (or a network's subnets) from a router",
          response=schemas.RouterOut),
    # ports
    Route("GET", "/v1/ports",
          lambda s, p, q, b: {"ports": s.list_ports(q.get("network"), q.get("server"))},
          "List ports", response=schemas.PortList, query=("network", "server")),
    Route("POST", "/v1/ports", _port_create, "Create a port",
          201, schemas.PortCreate, schemas.PortOut),
    Route("GET", "/v1/ports/{port}", lambda s, p, q, b: s.get_port(p["port"]),
          "Show a port", response=schemas.PortOut),
    Route("DELETE", "/v1/ports/{port}", lambda s, p, q, b: s.delete_port(p["port"]),
          "Delete a port that no server owns", 204),
    # servers
    Route("GET", "/v1/servers", lambda s, p, q, b: {"servers": s.list_servers()},
          "List servers", response=schemas.ServerList),
    Route("POST", "/v1/servers", _server_create,
          "Create a server (with a new port on each given network)",
          201, schemas.ServerCreate, schemas.ServerOut),
    Route("GET", "/v1/servers/{server}", lambda s, p, q, b: s.get_server(p["server"]),
          "Show a server", response=schemas.ServerOut),
    Route("PATCH", "/v1/servers/{server}", _server_update,
          "Rename a server or change its host name, IMDS options or config drive",
          200, schemas.ServerUpdate, schemas.ServerOut),
    Route("DELETE", "/v1/servers/{server}",
          lambda s, p, q, b: s.delete_server(p["server"], _flag(q, "keep_ports")),
          "Delete a server and its ports (keep_ports=true frees them instead)",
          204, query=("keep_ports",)),
    Route("GET", "/v1/servers/{server}/metadata",
          lambda s, p, q, b: {"metadata": s.get_metadata(p["server"])},
          "Show all server metadata", response=schemas.MetadataBody),
    Route("PUT", "/v1/servers/{server}/metadata", _metadata_replace,
          "Replace all server metadata", 200, schemas.MetadataBody, schemas.MetadataBody),
    Route("POST", "/v1/servers/{server}/metadata", _metadata_merge,
          "Merge items into the server metadata", 200,
          schemas.MetadataBody, schemas.MetadataBody),
    Route("GET", "/v1/servers/{server}/metadata/{key}",
          lambda s, p, q, b: {"meta": s.get_metadata_item(p["server"], p["key"])},
          "Show one metadata item", response=schemas.MetaItemBody),
    Route("PUT", "/v1/servers/{server}/metadata/{key}", _meta_set,
          "Set one metadata item (the body holds exactly that key)",
          200, schemas.MetaItemBody, schemas.MetaItemBody),
    Route("DELETE", "/v1/servers/{server}/metadata/{key}",
          lambda s, p, q, b: s.delete_metadata_item(p["server"], p["key"]),
          "Delete one metadata item", 204),
    Route("GET", "/v1/servers/{server}/password",
          lambda s, p, q, b: {"password": s.get_password(p["server"])},
          "Show the password the guest posted (encrypted by the guest)",
          response=schemas.PasswordOut),
    Route("DELETE", "/v1/servers/{server}/password",
          lambda s, p, q, b: s.clear_password(p["server"]),
          "Clear the password so the guest may post a new one", 204),
    Route("GET", "/v1/servers/{server}/phone_home",
          lambda s, p, q, b: s.get_phone_home(p["server"]),
          "Show what the guest's cloud-init phone_home reported (host keys, boot time); "
          "wait=S (at most 300) answers once the report exists or after S seconds, "
          "429 when too many requests already wait",
          response=schemas.PhoneHomeOut, query=("wait",),
          wait_until=lambda view: bool(view["booted"])),
    Route("DELETE", "/v1/servers/{server}/phone_home",
          lambda s, p, q, b: s.clear_phone_home(p["server"]),
          "Clear the phone-home report so the guest's next boot may report again", 204),
    Route("GET", "/v1/servers/{server}/guest_attributes",
          lambda s, p, q, b: attrs.list_attributes(s.store, p["server"]),
          "The key/value pairs the guest wrote (guest attributes)",
          response=schemas.GuestAttributeList),
    Route("DELETE", "/v1/servers/{server}/guest_attributes",
          lambda s, p, q, b: attrs.clear_attributes(s.store, p["server"]),
          "Clear every guest attribute of the server", 204),
    Route("GET", "/v1/servers/{server}/guest_attributes/{namespace}/{key}",
          lambda s, p, q, b: attrs.get_attribute(s.store, p["server"], p["namespace"], p["key"]),
          "One guest attribute", response=schemas.GuestAttributeOut),
    Route("DELETE", "/v1/servers/{server}/guest_attributes/{namespace}/{key}",
          lambda s, p, q, b: attrs.clear_attribute(s.store, p["server"], p["namespace"],
                                                   p["key"]),
          "Clear one guest attribute", 204),
    Route("GET", "/v1/servers/{server}/audit",
          lambda s, p, q, b: audit.server_audit(s.store, p["server"], q),
          "The server's access audit: sensitive reads and guest writes, newest first",
          response=schemas.AuditOut, query=("limit", "before")),
    Route("GET", "/v1/known_hosts",
          lambda s, p, q, b: {"known_hosts": s.known_hosts(q.get("server"))},
          "known_hosts lines for the servers (or the one server=) that reported host keys",
          response=schemas.KnownHostsOut, query=("server",)),
    Route("GET", "/v1/servers/{server}/configdrive", _config_drive,
          "The server's config drive image (format: iso9660, vfat or nocloud; "
          "default configdrive.format)",
          query=("format",), query_values=(("format", DRIVE_FORMATS),), produces=OCTET_STREAM),
    # instance identity (public: what any verifier needs; rotation needs the token)
    Route("GET", "/v1/identity/certificate",
          lambda s, p, q, b: Response(200, identity.certificate(s.store).encode(),
                                      content_type=identity.PEM_MEDIA_TYPE),
          "The certificates that verify identity documents (signing key first), PEM",
          produces=identity.PEM_MEDIA_TYPE, public=True),
    Route("GET", "/v1/identity/jwks.json", lambda s, p, q, b: identity.key_set(s.store),
          "The keys that verify identity tokens, as a JSON Web Key Set",
          response=schemas.JwksOut, public=True),
    Route("GET", "/v1/identity/keys", lambda s, p, q, b: identity.keys(s.store),
          "List the published identity keys (ids and ages, never the keys)",
          response=schemas.IdentityKeyList),
    Route("POST", "/v1/identity/rotate",
          lambda s, p, q, b: identity.rotate(s.store, s.settings.identity.issuer),
          "Create a new signing key; the previous one stays published, older ones go",
          201, response=schemas.IdentityKeyOut),
    # key pairs
    Route("GET", "/v1/keypairs", lambda s, p, q, b: {"keypairs": s.list_keypairs()},
          "List key pairs", response=schemas.KeypairList),
    Route("POST", "/v1/keypairs", _keypair_create, "Import a public key",
          201, schemas.KeypairCreate, schemas.KeypairOut),
    Route("GET", "/v1/keypairs/{keypair}", lambda s, p, q, b: s.get_keypair(p["keypair"]),
          "Show a key pair", response=schemas.KeypairOut),
    Route("DELETE", "/v1/keypairs/{keypair}",
          lambda s, p, q, b: s.delete_keypair(p["keypair"]),
          "Delete a key pair (refused while servers use it)", 204),
    # bulk
    Route("POST", "/v1/import", _import,
          "Apply an inventory document: all of it, or nothing (idempotent)",
          200, bulk.Document, schemas.ImportResult, bulk=True),
    Route("GET", "/v1/export", lambda s, p, q, b: bulk.export_document(s.store),
          "The whole inventory as an importable document", response=bulk.Document,
          bulk=True),
)  # fmt: skip
