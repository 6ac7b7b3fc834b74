"""The OpenAPI document an integrator generates a client from: what FastAPI derives from
the routes, completed from the routes themselves so that a route added tomorrow is
documented like the others without a list to keep.

What ``complete`` adds to FastAPI's document:

- ``servers`` (``Settings.openapi_servers``) and ``components.securitySchemes``: an API
  key in ``X-API-Key``, or an API key or JWT as ``Authorization: Bearer``;
- ``security`` on every operation, naming the scope its ``RequireScope`` dependency
  checks (``serving.api.deps``), and ``security: []`` on the routes that check none;
- on every operation a 500 problem, and on every authenticated one a 503 problem (the
  keys that verify bearer tokens cannot be read) and ``WWW-Authenticate`` on 401 / 403;
- the headers answers carry: ``Idempotency-Replayed`` where a route takes
  ``Idempotency-Key``, ``ETag`` where the answer names its ``etag``, ``Allow`` on 405 and
  ``Retry-After`` on 429 and 503;
- the components that routes reading their own body name in ``openapi_extra``;
- an OpenAPI 3.1 ``webhooks`` entry per event type (``serving.store._outbox``): the
  CloudEvents envelope with the type's ``data`` where it is known, and the Standard
  Webhooks signature headers (``serving.adapters.webhooks``).
"""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serving._event_schemas import EVENT_DATA
from serving._responses import EventOut
from serving._settings import Settings
from serving.api.deps import RequireScope, refuse_unknown_query

__all__ = ["EVENT_DATA", "complete", "complete_document", "required_scope"]

OpenApi = dict[str, Any]
_SCHEMAS = "#/components/schemas/"
PROBLEM_MEDIA = "application/problem+json"
_DELIVERIES = "webhook deliveries"  # the tag of the webhooks section
_SECURITY_SCHEMES = {
    "apiKey": {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "An API key (twk_<id>_<secret>, from `twin keys create`). Scopes: "
                       "predict, work-orders, admin (admin implies the others)."},
    "bearer": {
        "type": "http", "scheme": "bearer",
        "description": "An API key (twk_...) or an OAuth2 access token (JWT, checked "
                       "against the configured JWKS; scopes from its scope claim)."},
}
_HEADERS: dict[str, OpenApi] = {
    "ETag": {"description": "The asset's version: send it as If-Match to write on it",
             "schema": {"type": "string"}},
    "Idempotency-Replayed": {
        "description": "true: the stored answer of an earlier request with this "
                       "Idempotency-Key, byte for byte; absent on a first answer",
        "schema": {"type": "string", "enum": ["true"]}},
    "WWW-Authenticate": {"description": "The Bearer challenge (RFC 6750), with error and "
                                        "scope where they apply",
                         "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds to wait before trying again (RFC 9110 10.2.3)",
                    "schema": {"type": "string"}},
    "Allow": {"description": "The methods the path serves (RFC 9110 10.2.1)",
              "schema": {"type": "string"}},
}


# ---- the document ---------------------------------------------------------------------------


def complete_document(build: Callable[[], OpenApi], app: FastAPI, settings: Settings,
                      ) -> Callable[[], OpenApi]:
    """``FastAPI.openapi`` completed by ``complete``, built once."""
    done: list[OpenApi] = []

    def openapi() -> OpenApi:
        if not done:
            done.append(complete(copy.deepcopy(build()), app, settings))
        return done[0]

    return openapi


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every documented API route of ``app``, as the document has it (an included router's
    routes with its prefix and dependencies, as FastAPI's own document walks them)."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def required_scope(route: Any) -> str | None:
    """The scope the route's ``RequireScope`` dependency checks; None: no credentials."""

    return next((c.scope for c in _calls(route.dependant) if isinstance(c, RequireScope)),
                None)


def _calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _depends_on(route: Any, call: Any) -> bool:
    return any(c is call for c in _calls(route.dependant))


def complete(schema: OpenApi, app: FastAPI, settings: Settings) -> OpenApi:
    """FastAPI's document ``schema`` of ``app`` completed as the module says."""
    from serving.store._outbox import EVENT_TYPES

    schema["servers"] = [{"url": url} for url in settings.openapi_servers]
    spdx = _license()
    if spdx:
        schema["info"]["license"] = {"name": spdx, "identifier": spdx}
    components = schema.setdefault("components", {})
    components["securitySchemes"] = copy.deepcopy(_SECURITY_SCHEMES)
    schemas = components.setdefault("schemas", {})
    paths = schema.get("paths", {})
    tags: dict[str, str] = {}
    for route in _api_routes(app):
        for tag in route.tags:
            tags.setdefault(str(tag), _first_paragraph(sys.modules[route.endpoint.__module__]))
        for method in sorted(route.methods):
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is not None:
                _complete_operation(operation, required_scope(route), schemas)
                if _depends_on(route, refuse_unknown_query):
                    operation["responses"].setdefault("422", _problem(
                        "A query parameter the route does not take"))
    _add_models(schemas, [EventOut, *(EVENT_DATA[t] for t in EVENT_TYPES if t in EVENT_DATA)])
    _add_models(schemas, _named_but_missing(schema, schemas))
    schema["webhooks"] = {t: _webhook(t, schemas) for t in EVENT_TYPES}
    tags[_DELIVERIES] = ("What the service POSTs to a registered webhook: one CloudEvents "
                        "envelope per event, signed as Standard Webhooks specify.")
    schema["tags"] = [{"name": n, "description": d} for n, d in tags.items()]
    return schema


def _first_paragraph(module: Any) -> str:
    """A tag's description: the first paragraph of its routes' module docstring."""
    text = inspect.cleandoc(module.__doc__ or "").split("\n\n")[0]
    return " ".join(text.split()) or module.__name__


def _license() -> str | None:
    """The distribution's SPDX license expression (None where it is not installed)."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        spdx: str | None = metadata("asset-twin").get("License-Expression")  # type: ignore[attr-defined]
        return spdx
    except PackageNotFoundError:
        return None


def _problem(description: str, *headers: str) -> OpenApi:
    out: OpenApi = {"description": description, "content": {
        PROBLEM_MEDIA: {"schema": {"$ref": _SCHEMAS + "Problem"}}}}
    if headers:
        out["headers"] = {h: copy.deepcopy(_HEADERS[h]) for h in headers}
    return out


def _add_header(response: OpenApi, name: str) -> None:
    response.setdefault("headers", {})[name] = copy.deepcopy(_HEADERS[name])


def _complete_operation(operation: OpenApi, scope: str | None, schemas: OpenApi) -> None:
    responses = operation.setdefault("responses", {})
    if scope is None:
        operation["security"] = []
    else:
        # OpenAPI 3.1 lets a requirement of any scheme list roles: the scope it needs.
        operation["security"] = [{"apiKey": [scope]}, {"bearer": [scope]}]
        responses.setdefault("503", _problem(
            "The service cannot check credentials now (the keys that verify bearer tokens "
            "cannot be read)"))
    responses.setdefault("500", _problem("The service failed on this request (logged)"))
    headers = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "header"}
    for status, response in responses.items():
        if status in ("401", "403"):
            _add_header(response, "WWW-Authenticate")
        elif status == "405":
            _add_header(response, "Allow")
        elif status in ("429", "503") and _is_problem(response):
            _add_header(response, "Retry-After")
        elif status.startswith("2"):
            if "Idempotency-Key" in headers:
                _add_header(response, "Idempotency-Replayed")
            if "etag" in _properties(response, schemas):
                _add_header(response, "ETag")


def _is_problem(response: OpenApi) -> bool:
    return PROBLEM_MEDIA in response.get("content", {})


def _properties(response: OpenApi, schemas: OpenApi) -> OpenApi:
    """The top-level properties of a JSON answer's schema (through its $ref)."""
    found = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = found.get("$ref", "")
    if ref.startswith(_SCHEMAS):
        found = schemas.get(ref[len(_SCHEMAS):], {})
    properties: OpenApi = found.get("properties", {})
    return properties


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMAS):
            yield ref[len(_SCHEMAS):]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _named_but_missing(schema: OpenApi, schemas: OpenApi) -> list[type[BaseModel]]:
    """The request and answer models that the document names but FastAPI did not add (a
    route that reads its own body names its model's component in ``openapi_extra``)."""
    import serving._predict_schemas
    import serving._responses
    import serving._schemas
    import serving._work_order_responses

    modules = (serving._schemas, serving._predict_schemas, serving._responses,
               serving._work_order_responses)
    missing = sorted({name for name in _refs(schema) if name not in schemas})
    models = []
    for name in missing:
        model = next((getattr(m, name) for m in modules if hasattr(m, name)), None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise LookupError(f"the OpenAPI document names {_SCHEMAS}{name}, which is no "
                              "model of " + ", ".join(m.__name__ for m in modules))
        models.append(model)
    return models


def _add_models(schemas: OpenApi, models: list[type[BaseModel]]) -> None:
    """The components of ``models`` and of what they refer to; a component FastAPI made
    already stays as it is."""
    if not models:
        return
    _, top = models_json_schema([(m, "serialization") for m in models],
                                ref_template=_SCHEMAS + "{model}")
    for name, definition in top.get("$defs", {}).items():
        schemas.setdefault(name, definition)


def _webhook(event_type: str, schemas: OpenApi) -> OpenApi:
    """The path item of one event type: what the dispatcher POSTs to a subscriber."""
    name = "".join(p.capitalize() for p in event_type.removeprefix("io.assettwin.")
                   .replace("_", ".").split("."))
    data = EVENT_DATA.get(event_type)
    envelope = copy.deepcopy(schemas["EventOut"])
    envelope["title"] = f"{name}Event"
    envelope["description"] = f"A CloudEvents 1.0 envelope of type {event_type}"
    envelope["properties"]["type"] = {"type": "string", "const": event_type}
    if data is not None:
        envelope["properties"]["data"] = {"$ref": _SCHEMAS + data.__name__}
    schemas[f"{name}Event"] = envelope
    signature = {
        "webhook-id": "The event's id: a receiver drops an id it has seen (retries)",
        "webhook-timestamp": "Unix seconds when the delivery was signed: refuse old ones",
        "webhook-signature": "v1,<base64 HMAC-SHA256 of id.timestamp.body with the "
                             "webhook's secret>; several, space-separated, while a "
                             "rotated secret's grace period lasts",
    }
    # The receiver's answers: only the status and Retry-After are read; a body, if any, may
    # be a problem of the receiver's own.
    retry = {"description": "Try again later: Retry-After is honoured (up to a bound)",
             "headers": {"Retry-After": copy.deepcopy(_HEADERS["Retry-After"])},
             "content": {PROBLEM_MEDIA: {"schema": {"type": "object", "properties": {
                 "type": {"type": "string"}, "title": {"type": "string"}}}}}}
    description = (inspect.cleandoc(data.__doc__ or "").replace("\n", " ") if data else
                   f"An event of type {event_type}.")
    return {"post": {
        "operationId": f"on{name}",
        "summary": f"{event_type} to a subscriber",
        "description": description + " Signed as Standard Webhooks specify.",
        "tags": [_DELIVERIES],
        "security": [],
        "parameters": [{"name": h, "in": "header", "required": True, "description": text,
                        "schema": {"type": "string"}} for h, text in signature.items()],
        "requestBody": {"required": True, "content": {
            "application/cloudevents+json": {"schema": {"$ref": _SCHEMAS + f"{name}Event"}}}},
        "responses": {
            "200": {"description": "Received: any 2xx ends the delivery"},
            "429": retry,
            "503": retry,
        },
    }}
