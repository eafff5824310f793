"""The operator's side of guest attributes: read them, clear one or all.

Guests write them through the metadata API (``api/guest_attributes.py``);
the operator only reads and clears, so nothing here spends the guest's
write budget.
"""

from __future__ import annotations

from typing import Any

from cloudseed.errors import NotFound
from cloudseed.model import GuestAttribute
from cloudseed.store.protocol import Store


def attribute_view(attribute: GuestAttribute) -> dict[str, Any]:
    return {"namespace": attribute.namespace, "key": attribute.key, "value": attribute.value,
            "updated_at": attribute.updated_at}


def list_attributes(store: Store, ref: str) -> dict[str, Any]:
    held = store.list_guest_attributes(store.get_server(ref).id)
    return {"guest_attributes": [attribute_view(a) for a in held]}


def get_attribute(store: Store, ref: str, namespace: str, key: str) -> dict[str, Any]:
    for attribute in store.list_guest_attributes(store.get_server(ref).id):
        if (attribute.namespace, attribute.key) == (namespace, key):
            return attribute_view(attribute)
    raise NotFound("guest_attribute", f"{namespace}/{key}")


def clear_attributes(store: Store, ref: str) -> None:
    with store.write() as writer:
        writer.clear_guest_attributes(writer.reader().get_server(ref).id)


def clear_attribute(store: Store, ref: str, namespace: str, key: str) -> None:
    with store.write() as writer:
        server_id = writer.reader().get_server(ref).id
        if not writer.delete_guest_attribute(server_id, namespace, key, now=None):
            raise NotFound("guest_attribute", f"{namespace}/{key}")
