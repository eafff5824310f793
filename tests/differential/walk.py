"""Following a metadata server's own listings (EC2 and OpenStack styles)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from tests.support.api import Reply


def children(path: str, reply: Reply) -> Iterator[str]:
    """The paths a listing at ``path`` names."""
    if reply.status != 200 or not reply.headers.get("content-type", "").startswith("text/plain"):
        return
    for line in reply.body.decode("utf-8", "replace").split("\n"):
        if not line:
            continue
        name = line
        if "=" in name:  # public-keys: "0=keyname" names directory 0
            name = name.split("=", 1)[0] + "/"
        if path in ("/", "/openstack/"):  # version lists: each is a directory
            name = name.rstrip("/") + "/"
        yield path + name


def walk(start: list[str], ask: Callable[[str], list[Reply]]) -> list[str]:
    """Every path reachable from ``start`` through the listings of any of the
    replies ``ask`` returns for a path, breadth first, in visiting order."""
    seen: list[str] = []
    queue = list(start)
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.append(path)
        replies = ask(path)
        if path.endswith("/"):
            for reply in replies:
                queue.extend(c for c in children(path, reply) if c not in seen)
    return seen
