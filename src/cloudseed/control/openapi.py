"""The OpenAPI 3.1 document of the control API, generated from the route table.

Request and response schemas come from the same pydantic models that
validate bodies, so the document cannot claim what the code does not do.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cloudseed import __version__ as cloudseed_version
from cloudseed.control.routes import ROUTES
from cloudseed.control.schemas import ErrorOut, HealthOut

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "Invalid input; the body names the field and the limit",
    "401": "No token",
    "403": "Wrong token",
    "404": "No such resource",
    "409": "Conflicts with stored state",
}

Mode = Literal["validation", "serialization"]


def openapi_document() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Mode]] = [
        (ErrorOut, "serialization"),
        (HealthOut, "serialization"),
    ]
    for route in ROUTES:
        if route.request is not None:
            models.append((route.request, "validation"))
        if route.response is not None:
            models.append((route.response, "serialization"))
    refs, definitions = models_json_schema(models, ref_template=REF_TEMPLATE)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _operation_id(route.method, route.pattern),
            "security": [] if route.public else [{"bearer": []}],
            "responses": _responses(route.status, route.response, refs, route.produces),
        }
        if route.wait_until is not None:
            operation["responses"]["429"] = {
                "description": "Too many requests already wait; retry after Retry-After seconds",
                "content": {"application/json": {"schema": refs[(ErrorOut, "serialization")]}},
            }
        values = dict(route.query_values)
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(route.pattern)
        ] + [
            {"name": name, "in": "query", "required": False, "schema": _string(values.get(name))}
            for name in route.query
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(route.request, "validation")]}},
            }
        paths.setdefault(route.pattern, {})[route.method.lower()] = operation
    paths["/healthz"] = {
        "get": {
            "summary": "Liveness, and the store revision (no token needed)",
            "operationId": "health",
            "security": [],
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": refs[(HealthOut, "serialization")]}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "cloudseed control API", "version": cloudseed_version},
        "servers": [{"url": "http://127.0.0.1:8774"}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _responses(
    status: int, model: type[BaseModel] | None, refs: dict[Any, Any], produces: str
) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Success"}
    if model is not None:
        ok["content"] = {produces: {"schema": refs[(model, "serialization")]}}
    elif produces != "application/json":
        ok["content"] = {produces: {"schema": {"type": "string", "format": "binary"}}}
    error = {"application/json": {"schema": refs[(ErrorOut, "serialization")]}}
    responses = {str(status): ok}
    for code, description in ERROR_STATUSES.items():
        responses[code] = {"description": description, "content": error}
    return responses


def _string(allowed: tuple[str, ...] | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if allowed:
        schema["enum"] = list(allowed)
    return schema


def _path_params(pattern: str) -> list[str]:
    return [part[1:-1] for part in pattern.split("/") if part.startswith("{")]


def _operation_id(method: str, pattern: str) -> str:
    words = [p.strip("{}") for p in pattern.split("/")[2:] if p]
    return method.lower() + "_" + "_".join(words)
