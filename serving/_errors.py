"""Errors of the service, and how they reach a client: RFC 9457 problem details.

Every problem names what was wrong in ``errors[]`` (``field``, ``value``, ``expected``)
so an MES integrator can fix the request without reading our logs. Nothing from a
stack trace ever reaches a client.

    ServingError                      (status, code)
    ├── BadRequest                    422 a field is wrong: unit, range, NaN, missing
    ├── NotFound                      404 unknown equipment, model or work order
    ├── Conflict                      409 idempotency key reused, a reload that needs a restart
    ├── PreconditionFailed            412 If-Match names another version than the current
    ├── PreconditionRequired          428 a write that would replace changed state without If-Match
    ├── Unauthorized                  401 no or unknown credentials
    ├── Forbidden                     403 the credentials lack the route's scope
    ├── PayloadTooLarge               413 body or batch above the configured limit
    ├── UnsupportedMediaType          415 a body in a media type the route does not take
    └── ModelLoadError                a bundle or registry alias that cannot be served
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BadRequest",
    "Conflict",
    "FieldError",
    "Forbidden",
    "ModelLoadError",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "PreconditionRequired",
    "ServingError",
    "Unauthorized",
    "UnsupportedMediaType",
    "problem",
]

PROBLEM_BASE = "https://asset-twin.dev/problems/"


@dataclass(frozen=True)
class FieldError:
    """One offending field: its JSON path, the value sent, and what was expected."""

    field: str
    value: Any
    expected: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "value": _jsonable(self.value), "expected": self.expected}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


@dataclass
class ServingError(Exception):
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    status = 500
    code = "internal-error"
    title = "Internal error"

    def __str__(self) -> str:
        return self.detail

    def headers(self) -> dict[str, str]:
        """Headers the problem's answer carries (``Retry-After`` on a 503, say)."""
        return {}


class BadRequest(ServingError):
    status = 422
    code = "invalid-request"
    title = "The request is not valid"


class NotFound(ServingError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(ServingError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PreconditionFailed(ServingError):
    status = 412
    code = "precondition-failed"
    title = "The resource changed since the version named in If-Match"


class PreconditionRequired(ServingError):
    status = 428
    code = "precondition-required"
    title = "This write needs If-Match"


class Unauthorized(ServingError):
    status = 401
    code = "unauthorized"
    title = "Credentials are missing or unknown"


class Forbidden(ServingError):
    status = 403
    code = "forbidden"
    title = "The credentials lack the scope this route needs"


class PayloadTooLarge(ServingError):
    status = 413
    code = "payload-too-large"
    title = "The request is too large"


class UnsupportedMediaType(ServingError):
    status = 415
    code = "unsupported-media-type"
    title = "The body's media type is not one this route takes"


class ModelLoadError(ServingError):
    code = "model-load-error"
    title = "The model cannot be loaded"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[FieldError] | None = None,
) -> dict[str, Any]:
    """An RFC 9457 problem object."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    return body
