"""Which methods each kind of guest route takes: the first check of every request,
before identification (app.py's order of checks, step 1).

A wrong method is 405 with ``Allow``, except where Nova or AWS answer otherwise:
the password path answers 400 as Nova does, and a token PUT on a versioned path
403 as AWS does. ``NO_PASSWORD`` takes any method on to identification and a 404.
"""

from __future__ import annotations

from cloudseed.api.guest_attributes import check_method as check_attribute_method
from cloudseed.api.password import check_method as check_password_method
from cloudseed.api.routes import Route, RouteKind
from cloudseed.errors import EndpointDisabled, MethodNotAllowed

GET_HEAD = ("GET", "HEAD")


def check_method(route: Route, method: str) -> None:
    kind = route.kind
    if kind is RouteKind.ROOT or kind is RouteKind.DOCUMENT or kind is RouteKind.TOKEN_VERSIONED:
        if method not in GET_HEAD:
            if kind is RouteKind.TOKEN_VERSIONED and method == "PUT":
                # AWS refuses tokens on versioned paths on purpose.
                raise EndpointDisabled("session tokens are issued at /latest/api/token only")
            raise MethodNotAllowed(method, GET_HEAD)
    elif kind is RouteKind.TOKEN:
        if method != "PUT":
            raise MethodNotAllowed(method, ("PUT",))
    elif kind is RouteKind.PASSWORD:
        check_password_method(method)
    elif kind is RouteKind.PHONE_HOME and method != "POST":
        raise MethodNotAllowed(method, ("POST",))
    elif kind is RouteKind.IDENTITY_TOKEN and method not in GET_HEAD:
        raise MethodNotAllowed(method, GET_HEAD)
    elif kind is RouteKind.GUEST_ATTRIBUTES:
        check_attribute_method(method, route.inside)
