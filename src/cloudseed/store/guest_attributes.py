"""Guest attributes inside the writer's transaction: rules, key count, write budget.

The writer (``writer.py``) calls these with its own statement runner, so
they run in its transaction, under the writers' lock: the key count and the
budget cannot race between API workers or hosts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import CursorResult, delete, func, insert, select, update

from cloudseed.errors import LimitExceeded
from cloudseed.limits import MAX_GUEST_ATTRIBUTES
from cloudseed.model import GuestAttribute
from cloudseed.store import rules
from cloudseed.store.schema import guest_attribute_budgets, guest_attributes

Run = Callable[..., CursorResult[Any]]
_ATTRS, _BUDGETS = guest_attributes.c, guest_attribute_budgets.c


def put(run: Run, attribute: GuestAttribute, now: float) -> None:
    rules.check_guest_attribute(attribute)
    spend_write(run, attribute.server_id, now)
    where = _one(attribute.server_id, attribute.namespace, attribute.key)
    values = {"value": attribute.value, "updated_at": attribute.updated_at}
    if run(select(_ATTRS.key).where(where)).first() is not None:
        run(update(guest_attributes).where(where).values(**values))
        return
    held = run(select(func.count()).where(_ATTRS.server_id == attribute.server_id)).scalar_one()
    if held >= MAX_GUEST_ATTRIBUTES:
        raise LimitExceeded("key", MAX_GUEST_ATTRIBUTES,
                            f"this server already holds {MAX_GUEST_ATTRIBUTES} guest attributes, "
                            "the limit; delete one first")
    run(insert(guest_attributes).values(server_id=attribute.server_id,
                                        namespace=attribute.namespace, key=attribute.key,
                                        **values))


def remove(run: Run, server_id: str, namespace: str, key: str, now: float | None) -> bool:
    if now is not None:
        spend_write(run, server_id, now)
    return bool(run(delete(guest_attributes).where(_one(server_id, namespace, key))).rowcount)


def clear(run: Run, server_id: str) -> int:
    return int(run(delete(guest_attributes).where(_ATTRS.server_id == server_id)).rowcount)


def spend_write(run: Run, server_id: str, now: float) -> None:
    """One guest write from the server's budget (RateLimited when spent)."""
    row = run(select(_BUDGETS.tokens, _BUDGETS.refilled_at)
              .where(_BUDGETS.server_id == server_id)).first()
    tokens = rules.spend_guest_write(row.tokens if row else None,
                                     row.refilled_at if row else now, now)
    if row is None:
        run(insert(guest_attribute_budgets).values(server_id=server_id, tokens=tokens,
                                                   refilled_at=now))
    else:
        run(update(guest_attribute_budgets).where(_BUDGETS.server_id == server_id)
            .values(tokens=tokens, refilled_at=max(now, row.refilled_at)))


def _one(server_id: str, namespace: str, key: str) -> Any:
    return (_ATTRS.server_id == server_id) & (_ATTRS.namespace == namespace) & (_ATTRS.key == key)
