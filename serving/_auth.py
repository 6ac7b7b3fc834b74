"""API keys with scopes. A key is ``twk_<id>_<secret>``; only sha256(secret) is stored.

Clients send it as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Scopes:
``predict`` (raw predictions, model descriptions), ``work-orders`` (assets,
assessments, completions, events), ``admin`` (reload models, webhooks; implies the
others). A checked key is trusted for ``key_cache_s`` seconds, so the hot path does
not touch the database; revoking a key takes effect within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from serving._errors import BadRequest, FieldError, Forbidden, Unauthorized
from serving.store._tables import ApiKey

__all__ = ["DEV_CALLER", "SCOPES", "Caller", "KeyChecker", "create_key", "presented_token",
           "revoke_key"]

SCOPES = ("predict", "work-orders", "admin")
PREFIX = "twk_"


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[str]
    key_id: str | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden(
                f"this route needs scope {scope!r}; the key {self.name!r} has "
                f"{', '.join(sorted(self.scopes)) or 'none'}"
            )


DEV_CALLER = Caller("dev-mode", frozenset(SCOPES))


def presented_token(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>``, else ``X-API-Key``."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key


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
            raise Unauthorized(
                "no credentials: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
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
            raise Unauthorized("malformed API key: expected twk_<id>_<secret>")
        with self._sessions() as session:
            row = session.get(ApiKey, key_id)
            if row is None or row.revoked or not hmac.compare_digest(
                row.secret_hash, _digest(secret)
            ):
                raise Unauthorized("unknown or revoked API key")
            return Caller(row.name, frozenset(row.scopes), row.id)
