"""What every route depends on: the service context, the caller and its scope, the
idempotency key, and the helpers that encode answers and replay stored ones.

Routes declare these as ``Annotated`` parameters (``OrdersCaller``, ``IdemKey``), so a
route's signature says which scope it needs and FastAPI documents the headers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from serving._auth import DEV_CALLER, Caller, looks_like_jwt, presented_token
from serving._errors import BadRequest, Conflict, FieldError, NotFound, UnsupportedMediaType
from serving.store._db import aware
from serving.store._tables import IdempotencyRecord

if TYPE_CHECKING:
    from serving.app import Context

__all__ = [
    "MERGE_PATCH",
    "AdminCaller",
    "CursorParam",
    "IdemKey",
    "Limit",
    "OrdersCaller",
    "PredictCaller",
    "RequireScope",
    "aware",
    "ctx_of",
    "decode_cursor",
    "encode",
    "encode_cursor",
    "json_response",
    "merge_patch",
    "merge_patch_body",
    "no_asset",
    "now",
    "page",
    "refuse_unknown_query",
    "remember",
    "replay",
]

MAX_SEQ = 2**63 - 1  # event numbers are BIGINTs: a larger cursor is no cursor


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _caller(
    request: Request,
    # Out of each operation's parameters: the document's security schemes declare them
    # (``serving.api.openapi``), so a generated client takes the key once, not per call.
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    ctx = ctx_of(request)
    if ctx.settings.dev_mode:
        return DEV_CALLER
    token = presented_token(authorization, x_api_key)
    if looks_like_jwt(token):
        from serving._bearer import token_checker

        assert token is not None
        return token_checker(ctx.settings, ctx.extra).check(token)
    caller: Caller = ctx.keys.check(token)
    return caller


class RequireScope:
    """The dependency of a route that needs scope ``scope``; the OpenAPI document reads
    ``scope`` from it to name the route's security requirement."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    def __call__(self, caller: Annotated[Caller, Depends(_caller)]) -> Caller:
        caller.require(self.scope)
        return caller


def _scope(name: str) -> Any:
    return Depends(RequireScope(name))


PredictCaller = Annotated[Caller, _scope("predict")]
OrdersCaller = Annotated[Caller, _scope("work-orders")]
AdminCaller = Annotated[Caller, _scope("admin")]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)]


def encode(body: Any) -> bytes:
    """The JSON bytes of an answer, as every route sends them (orjson)."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def json_response(body: Any, status_code: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """A JSON answer encoded by orjson (FastAPI's own encoder walks a big assessment
    several times slower); the same JSON for the dicts these routes build."""
    return Response(encode(body), status_code=status_code, media_type="application/json",
                    headers=headers)


def now() -> datetime:
    return datetime.now(UTC)


def _body_hash(body: Any) -> str:
    data = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def replay(session: Any, caller: Caller, key: str | None, request: Request,
           body: Any) -> Response | None:
    """The stored answer of an earlier request with this key, or None to go on."""
    if key is None:
        return None
    row = session.get(IdempotencyRecord, (caller.name, key))
    if row is None:
        return None
    if row.request_hash != _body_hash(body) or row.path != request.url.path:
        raise Conflict(
            f"Idempotency-Key {key!r} was used for another request "
            f"({row.method} {row.path}) with another body",
            [FieldError("Idempotency-Key", key, "a new key for a new request")],
        )
    replayed = {"Idempotency-Replayed": "true"}
    stored = row.response
    if isinstance(stored, dict) and stored.keys() == {"body", "media_type"} and isinstance(
            stored["body"], str):
        return Response(stored["body"].encode(), status_code=row.status_code,
                        media_type=stored["media_type"], headers=replayed)
    # A record written before the bytes were kept: the stored JSON, encoded again.
    return json_response(stored, status_code=row.status_code, headers=replayed)


def remember(session: Any, caller: Caller, key: str | None, request: Request, body: Any,
             status: int, response: dict[str, Any]) -> None:
    """Keep the answer to a request with an ``Idempotency-Key``: the bytes ``json_response``
    sends for it, as text, so a replay answers byte for byte what the first call got (a
    JSON column, PostgreSQL's JSONB above all, keeps the value but not its number
    formatting or key order)."""
    if key is not None:
        encoded = {"body": encode(response).decode(), "media_type": "application/json"}
        session.add(IdempotencyRecord(
            caller=caller.name, key=key, method=request.method, path=request.url.path,
            request_hash=_body_hash(body), status_code=status, response=encoded))


def no_asset(equipment_id: str) -> NotFound:
    return NotFound(f"no asset {equipment_id!r} is registered",
                    [FieldError("equipment_id", equipment_id,
                                "a registered asset (PUT /v1/assets/{equipment_id})")])


def refuse_unknown_query(request: Request) -> None:
    """A query parameter the route does not declare is a 422 naming it (a typo in a
    filter must not silently widen the answer)."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = getattr(route, "_twin_known_query", None)
    if known is None:  # worked out at the route's first request with a query string
        known = frozenset(p.alias for p in _query_params(dependant))
        route._twin_known_query = known  # type: ignore[union-attr]
    unknown = [k for k in request.query_params if k not in known]
    if unknown:
        raise BadRequest(
            f"unknown query parameter(s): {', '.join(unknown)}",
            [FieldError(f"query.{k}", request.query_params[k],
                        "one of " + (", ".join(sorted(known)) or "(no query parameters)"))
             for k in unknown])


def _query_params(dependant: Any) -> list[Any]:
    out = list(dependant.query_params)
    for sub in dependant.dependencies:
        out.extend(_query_params(sub))
    return out


# ---- cursor paging --------------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page")]
CursorParam = Annotated[str | None, Query(
    max_length=1024, description="next_cursor of the previous page; absent: the first page")]


def encode_cursor(key: Any) -> str:
    """An opaque cursor for the item ``key`` (the sort key of a page's last item)."""
    return base64.urlsafe_b64encode(orjson.dumps({"k": key})).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type[str] | type[int], listing: str) -> Any:
    """The sort key a cursor carries (a ``kind``: an id, or a sequence number), or None
    for the first page; a 422 for a cursor this service did not write for ``listing``."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = orjson.loads(raw)["k"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadRequest("the cursor is not one this service wrote", [FieldError(
            "query.cursor", cursor, "the next_cursor of a previous page")]) from None
    fits = (isinstance(key, str) if kind is str else
            isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= MAX_SEQ)
    if not fits:
        raise BadRequest("the cursor is not one this route wrote", [FieldError(
            "query.cursor", cursor, f"the next_cursor of a previous page of {listing}")])
    return key


def page(items: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """The first ``limit`` of ``items`` (the query fetched ``limit + 1``), and the cursor
    of the next page (None on the last)."""
    if len(items) <= limit:
        return items, None
    kept = items[:limit]
    return kept, encode_cursor(key(kept[-1]))


# ---- JSON Merge Patch bodies (RFC 7396) -------------------------------------------------------

MERGE_PATCH = "application/merge-patch+json"
Patch = TypeVar("Patch", bound=BaseModel)


def merge_patch(model: type[Patch]) -> Callable[[Request], Awaitable[Patch]]:
    """The dependency that reads a PATCH body as ``model``: a JSON object sent as
    ``application/merge-patch+json`` (or ``application/json``). The route reads it, not
    FastAPI, so that another media type is a 415 and not a 422."""

    async def read(request: Request) -> Patch:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in (MERGE_PATCH, "application/json"):
            raise UnsupportedMediaType(f"a merge patch is sent as {MERGE_PATCH}", [FieldError(
                "Content-Type", media, f"{MERGE_PATCH} or application/json")])
        raw = await request.body()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("the body is not JSON", [FieldError(
                "body", raw[:200].decode("utf-8", "replace"),
                f"a JSON object ({exc})")]) from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None

    return read


def merge_patch_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose body ``merge_patch`` reads: the body it takes,
    under both media types."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {
        m: {"schema": ref} for m in (MERGE_PATCH, "application/json")}}}
