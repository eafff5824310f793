"""Request path → route: what a path is, decided once per distinct path.

Guests ask the same few dozen paths over and over, so the decoded,
normalised route of each raw path is memoised; the table is bounded because
a hostile guest can send endless distinct junk.

Percent-escapes are decoded before normalising, as WSGI hands Nova a decoded
``PATH_INFO``: ``/%2e%2e/%2e%2e/etc/passwd`` is ``/../../etc/passwd``, which
normalises to ``ec2/etc/passwd`` and is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote

from cloudseed.render.sections import locate
from cloudseed.render.tree import EC2_ROOT, normalise_path
from cloudseed.render.versions import openstack_has, resolve_openstack

MAX_MEMOISED_PATHS = 4096
TOKEN_KEY = "ec2/latest/api/token"  # noqa: S105 - a path, not a secret
# /openstack/latest/phone_home and /latest/phone_home (the EC2 tree).
PHONE_HOME_NAME = "phone_home"
# GET with ?audience=: a signed identity token (api/identitytoken.py).
IDENTITY_TOKEN_KEYS = frozenset({
    "openstack/latest/identity_token",
    f"{EC2_ROOT}/latest/dynamic/instance-identity/token",
})
# The guest-attributes directory of each tree (api/guest_attributes.py):
# snake_case as the OpenStack tree's names, GCE's spelling on the EC2 tree.
GUEST_ATTRIBUTES_NAMES = {"openstack": "guest_attributes", EC2_ROOT: "guest-attributes"}


class RouteKind(Enum):
    ROOT = "root"  # GET /: the EC2 version list, before identification
    DOCUMENT = "document"
    TOKEN = "token"  # noqa: S105 - PUT /latest/api/token
    TOKEN_VERSIONED = "token_versioned"  # noqa: S105 - PUT /<version>/api/token: 403
    PASSWORD = "password"  # noqa: S105 - openstack/<version>/password
    # openstack/<version>/password where the version has no password file
    # (Folsom, an unknown version): 404 for every method, after
    # identification, as Nova -- never a stored password.
    NO_PASSWORD = "no_password"  # noqa: S105 - a route kind, not a secret
    # POST {openstack,ec2}/latest/phone_home[/<instance id>]: cloud-init's
    # phone_home report; ``inside`` holds the URL's instance id, if any.
    PHONE_HOME = "phone_home"
    IDENTITY_TOKEN = "identity_token"  # noqa: S105 - a route kind, not a secret
    # {openstack,ec2}/latest/guest{_,-}attributes[/<namespace>[/<key>]];
    # ``inside`` holds "<namespace>/<key>" (or less, for a listing).
    GUEST_ATTRIBUTES = "guest_attributes"


@dataclass(frozen=True, slots=True)
class Route:
    key: str
    kind: RouteKind
    # Label for metrics: root | ec2 | openstack | token | password.
    family: str
    # Where a document route's answer lives: the section of the server's
    # documents (None: no section can hold it, so 404) and the path inside it.
    section: str | None = None
    inside: str = ""


def route_for(raw_path: str) -> Route:
    key = normalise_path(unquote(raw_path, errors="replace"))
    if key == EC2_ROOT:
        return Route(key, RouteKind.ROOT, "root")
    parts = key.split("/")
    if key == TOKEN_KEY:
        return Route(key, RouteKind.TOKEN, "token")
    if key in IDENTITY_TOKEN_KEYS:
        return Route(key, RouteKind.IDENTITY_TOKEN, "identity")
    located = locate(key) or (None, "")
    if len(parts) == 4 and parts[0] == EC2_ROOT and parts[2:] == ["api", "token"]:
        return Route(key, RouteKind.TOKEN_VERSIONED, "token", *located)
    if (
        parts[0] in {"openstack", EC2_ROOT}
        and parts[1:3] == ["latest", PHONE_HOME_NAME]
        and len(parts) <= 4  # an optional $INSTANCE_ID segment
    ):
        return Route(key, RouteKind.PHONE_HOME, "phone_home", None, "/".join(parts[3:]))
    if len(parts) >= 3 and parts[1] == "latest" and GUEST_ATTRIBUTES_NAMES[parts[0]] == parts[2]:
        return Route(key, RouteKind.GUEST_ATTRIBUTES, "guest_attributes", None,
                     "/".join(parts[3:]))
    if len(parts) == 3 and parts[0] == "openstack" and parts[2] == "password":
        version = resolve_openstack(parts[1])
        kind = (
            RouteKind.PASSWORD
            if version is not None and openstack_has("password", version)
            else RouteKind.NO_PASSWORD
        )
        return Route(key, kind, "password", *located)
    return Route(key, RouteKind.DOCUMENT, parts[0], *located)


class RouteTable:
    __slots__ = ("_routes",)

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def get(self, raw_path: str) -> Route:
        route = self._routes.get(raw_path)
        if route is None:
            route = route_for(raw_path)
            if len(self._routes) >= MAX_MEMOISED_PATHS:
                self._routes.clear()
            self._routes[raw_path] = route
        return route
