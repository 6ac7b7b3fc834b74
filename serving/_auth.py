"""Credentials: API keys with scopes, and OAuth2 bearer tokens (JWT) beside them.

An API key is ``twk_<id>_<secret>``; only sha256(secret) is stored. Clients send it as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Scopes: ``predict`` (raw
predictions, model descriptions), ``work-orders`` (assets, assessments, completions,
events), ``admin`` (reload models, webhooks, the audit trail; implies the others). A
checked key is trusted for ``key_cache_s`` seconds, so the hot path does not touch the
database; revoking a key takes effect within that time.

A bearer token is told from a key by its shape (three base64url parts joined by dots;
a key has no dot). ``serving._bearer`` checks it against the JWKS in ``Settings.jwks``: the
header's ``alg`` must be one of ``jwt_algorithms`` (public-key algorithms only) and fit
the key its ``kid`` names; ``exp``, ``iss`` and ``aud`` are required and must match.
Its scopes come from one claim, a space-separated string (RFC 9068 ``scope``) or a list
(``scp``), mapped through ``jwt_scope_map``; the caller is its ``sub`` (else
``client_id``, else ``azp``), which the audit records name. A token is never logged,
cached by its text, or echoed: problems quote claims, never the token.

Every 401 carries ``WWW-Authenticate: Bearer ...`` and every 403 its
``insufficient_scope`` challenge (RFC 6750), through ``challenge_problem``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from serving._errors import BadRequest, FieldError, Forbidden, ServingError, Unauthorized, problem
from serving.store._tables import ApiKey

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "CHALLENGES",
    "DEV_CALLER",
    "JWKS_RETRY_S",
    "SCOPES",
    "Caller",
    "InsufficientScope",
    "InvalidCredentials",
    "JwksUnavailable",
    "KeyChecker",
    "challenge_problem",
    "create_key",
    "looks_like_jwt",
    "presented_token",
    "revoke_key",
]

SCOPES = ("predict", "work-orders", "admin")
PREFIX = "twk_"
CALLER_CHARS = 128  # the audit's and the idempotency table's caller column
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


# ---- errors with their challenge -------------------------------------------------------------


def _quoted(text: str) -> str:
    """``text`` as an RFC 6750 quoted value: printable ASCII without ``"`` and ``\\``."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


@dataclass
class InvalidCredentials(Unauthorized):
    """401: no credentials (``error`` None), or ones that do not hold (``invalid_token``)."""

    error: str | None = "invalid_token"

    def challenge(self) -> str:
        if self.error is None:
            return "Bearer"
        return f'Bearer error="{self.error}", error_description="{_quoted(self.detail)}"'


@dataclass
class InsufficientScope(Forbidden):
    """403: the credentials hold, but lack ``scope``."""

    scope: str = ""

    def challenge(self) -> str:
        return (f'Bearer error="insufficient_scope", scope="{_quoted(self.scope)}", '
                f'error_description="{_quoted(self.detail)}"')


# How soon a first JWKS read that failed is tried again, and the Retry-After of its 503.
JWKS_RETRY_S = 5


class JwksUnavailable(ServingError):
    """503: the keys that verify bearer tokens could not be read (file or URL)."""

    status = 503
    code = "jwks-unavailable"
    title = "The keys that verify bearer tokens cannot be read"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(JWKS_RETRY_S)}


CHALLENGES: tuple[type[ServingError], ...] = (InvalidCredentials, InsufficientScope)


async def challenge_problem(request: Request, exc: Exception) -> Response:
    """The RFC 9457 problem of a 401 / 403 with its ``WWW-Authenticate`` challenge (an
    exception handler for each of ``CHALLENGES``)."""
    from starlette.responses import JSONResponse

    assert isinstance(exc, InvalidCredentials | InsufficientScope)
    body = problem(exc.status, exc.code, exc.title, exc.detail, instance=request.url.path,
                   errors=exc.errors)
    return JSONResponse(body, status_code=exc.status, media_type="application/problem+json",
                        headers={"WWW-Authenticate": exc.challenge()})


# ---- callers and keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[str]
    key_id: str | None = None
    credential: str = "key"  # "key", or "token" for a bearer token
    granted: str = ""  # a token's scope claim as sent, for the 403 that names it

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            has = ", ".join(sorted(self.scopes)) or "none"
            where = f" ({self.granted})" if self.granted else ""
            raise InsufficientScope(
                f"this route needs scope {scope!r}; the {self.credential} {self.name!r} has "
                f"{has}{where}", scope=scope)


DEV_CALLER = Caller("dev-mode", frozenset(SCOPES))


def presented_token(authorization: str | None, x_api_key: str | None) -> str | None:
    """The credential a request presents: ``Authorization: Bearer <...>``, else
    ``X-API-Key``."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key


def looks_like_jwt(token: str | None) -> bool:
    """Whether ``token`` has a JWT's shape (an API key never has a dot)."""
    return token is not None and _JWT_SHAPE.fullmatch(token) is not None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, name: str, scopes: list[str]) -> str:
    """A new key; the returned text is the only copy of its secret."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise BadRequest(
            "unknown scope", [FieldError("scopes", scopes, "one or more of " + ", ".join(SCOPES))]
        )
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    session.add(ApiKey(id=key_id, name=name, secret_hash=_digest(secret), scopes=sorted(scopes)))
    return f"{PREFIX}{key_id}_{secret}"


def revoke_key(session: Session, key_id: str) -> bool:
    """Mark the key revoked; False when there is no key ``key_id``."""
    row = session.get(ApiKey, key_id)
    if row is None:
        return False
    row.revoked = True
    return True


class KeyChecker:
    """Checks presented keys against the store, remembering good ones for a while."""

    def __init__(self, session_factory: Any, ttl_s: float) -> None:
        self._sessions = session_factory
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def check(self, token: str | None) -> Caller:
        if not token:
            raise InvalidCredentials(
                "no credentials: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                error=None)
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        caller = self._lookup(token)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (now + self._ttl, caller)
        return caller

    def _lookup(self, token: str) -> Caller:
        body = token.removeprefix(PREFIX)
        key_id, sep, secret = body.partition("_")
        if not token.startswith(PREFIX) or not sep:
            raise InvalidCredentials("malformed API key: expected twk_<id>_<secret>")
        with self._sessions() as session:
            row = session.get(ApiKey, key_id)
            if row is None or row.revoked or not hmac.compare_digest(
                row.secret_hash, _digest(secret)
            ):
                raise InvalidCredentials("unknown or revoked API key")
            return Caller(row.name, frozenset(row.scopes), row.id)
