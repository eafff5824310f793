"""Request bodies: JSON text → a validated pydantic model, or ``Invalid``.

``parse_body`` is the one way a control-API body or an import document
becomes a model: errors name the field path (``servers[3].ports[0].id``) and,
for size limits, the limit. Two rules apply before any model sees the data:

- nesting is capped *before* parsing: Python's decoder recurses, and a body
  nested a thousand deep would end in ``RecursionError`` (a 500) instead of
  a 400 naming the limit;
- no string, key or value, carries NUL or an unpaired surrogate: PostgreSQL
  cannot store NUL in text, and neither backend can encode a lone surrogate,
  so either would fail inside the driver -- differently on each backend.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cloudseed.errors import Invalid, LimitExceeded

# The deepest legitimate body is an import document: document → servers →
# server → ports → port → fixed_ips → item is 7. 32 leaves room for any
# future shape and stops hostile nesting long before the decoder's recursion.
MAX_JSON_DEPTH = 32
# A JSON string, escapes included (the unrolled form: no backtracking blow-up).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_depth(raw: bytes, field: str = "body") -> None:
    """Refuse JSON text nested deeper than ``MAX_JSON_DEPTH``, without parsing it."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return  # cannot be deeper than it has brackets
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise LimitExceeded(
                    field, MAX_JSON_DEPTH, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
                )
        else:
            depth -= 1


def loads(raw: bytes | str, field: str = "body") -> Any:
    """Parse JSON text after the depth cap; errors are ``Invalid`` naming ``field``."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    check_depth(data, field)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Invalid(field, f"not valid JSON: {exc}") from None


def check_storable(data: Any, path: str = "") -> None:
    """Refuse NUL and unpaired surrogates in any string of decoded JSON ``data``."""
    if isinstance(data, str):
        _check_string(data, path or "body")
    elif isinstance(data, dict):
        for key, value in data.items():
            at = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                _check_string(key, f"{at} (key)")
            check_storable(value, at)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            check_storable(item, f"{path}[{i}]")


def _check_string(value: str, field: str) -> None:
    bad = _UNSTORABLE.search(value)
    if bad is not None:
        what = "NUL" if bad.group() == "\x00" else f"an unpaired surrogate U+{ord(bad.group()):04X}"
        raise Invalid(field, f"contains {what} at character {bad.start()}; no field may hold it")


# -- models ----------------------------------------------------------------------

ModelT = TypeVar("ModelT", bound=BaseModel)
_LIMIT_ERRORS = {"too_long", "string_too_long", "file_too_large", "less_than_equal"}


def parse_body(model: type[ModelT], body: bytes | Any, where: str = "") -> ModelT:
    """Validate a request body (raw JSON bytes or decoded data) against ``model``."""
    if isinstance(body, bytes | bytearray):
        if not body.strip():
            raise Invalid(where or "body", "a JSON object is required")
        body = loads(bytes(body), where or "body")
    check_storable(body, where)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_from(exc, where) from None


def invalid_from(exc: ValidationError, where: str = "") -> Invalid:
    """The first validation error, as ``Invalid`` naming its field path."""
    error = exc.errors(include_url=False)[0]
    field = field_path(error["loc"], where)
    ctx = error.get("ctx") or {}
    limit = ctx.get("limit", ctx.get("max_length", ctx.get("le")))
    if error["type"] in _LIMIT_ERRORS and limit is not None:
        return LimitExceeded(field, limit, error["msg"])
    return Invalid(field, error["msg"])


def field_path(loc: tuple[int | str, ...], where: str = "") -> str:
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"
