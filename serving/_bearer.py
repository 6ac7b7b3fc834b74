"""OAuth2 bearer tokens (JWT): the keys of a JWKS (``Jwks``) and the check of a token
against them and the settings (``TokenChecker``). ``serving._auth`` says what is checked.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving._auth import (
    CALLER_CHARS,
    JWKS_RETRY_S,
    SCOPES,
    Caller,
    InvalidCredentials,
    JwksUnavailable,
)

if TYPE_CHECKING:
    from serving._settings import Settings

__all__ = ["Jwks", "TokenChecker", "token_checker"]

log = logging.getLogger("asset_twin.serving.auth")

_NAME_CLAIMS = ("sub", "client_id", "azp")
_MAX_JWKS_BYTES = 1_048_576


@dataclass(frozen=True)
class _Key:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own "alg", when it names one
    key: Any  # the cryptography public key


def _fits(alg: str, key: _Key) -> bool:
    if key.alg is not None and key.alg != alg:
        return False
    if key.kty == "RSA":
        return alg[:2] in ("RS", "PS")
    if key.kty == "EC":
        return {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}.get(alg) == key.crv
    return key.kty == "OKP" and alg == "EdDSA"


class Jwks:
    """The public keys of a JWKS file or URL, read on first use and kept.

    A token naming a ``kid`` the keys lack makes it read the source again, at most once
    per ``refresh_s``; after ``max_age_s`` it is read again anyway, so a withdrawn key
    stops working. A failed re-read keeps the keys it had (and is logged); only a first
    read that fails is a 503.
    """

    def __init__(self, source: str, *, timeout_s: float, refresh_s: float,
                 max_age_s: float) -> None:
        self.source = source
        self._timeout, self._refresh, self._max_age = timeout_s, refresh_s, max_age_s
        self._keys: list[_Key] | None = None
        self._read_at = 0.0  # monotonic time of the last good read
        self._tried_at = float("-inf")  # ... and of the last attempt
        self._failed: JwksUnavailable | None = None  # why the first read failed
        self._lock = threading.Lock()
        self.reads = 0  # good reads so far (for the operator's metrics and the tests)

    def key_for(self, kid: str | None, alg: str) -> _Key:
        keys = self._current()
        found = self._find(keys, kid)
        if found is None and kid is not None:
            keys = self._reread(stale_only=False)
            found = self._find(keys, kid)
        if found is None:
            ids = ", ".join(repr(k.kid) for k in keys)
            if kid is None:
                raise InvalidCredentials(
                    f"the token has no 'kid' header and the JWKS holds {len(keys)} keys "
                    f"({ids}): name one")
            raise InvalidCredentials(f"unknown key id {kid!r}: the JWKS holds {ids}")
        if not _fits(alg, found):
            raise InvalidCredentials(
                f"the token's algorithm {alg!r} does not fit key {found.kid!r} "
                f"({found.kty}{' ' + found.crv if found.crv else ''}"
                f"{', alg ' + found.alg if found.alg else ''})")
        return found

    @staticmethod
    def _find(keys: list[_Key], kid: str | None) -> _Key | None:
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((k for k in keys if k.kid == kid), None)

    def _current(self) -> list[_Key]:
        keys = self._keys
        if keys is None:
            with self._lock:
                if self._keys is None:
                    # a first read that fails is a 503, answered again without another try
                    # for a few seconds, so a dead URL does not cost each request its timeout
                    if self._failed is not None and (
                            time.monotonic() - self._tried_at < min(self._refresh, JWKS_RETRY_S)):
                        raise self._failed
                    try:
                        self._keys = self._read()
                    except JwksUnavailable as exc:
                        self._failed = exc
                        raise
                return self._keys
        if time.monotonic() - self._read_at > self._max_age:
            return self._reread(stale_only=True)
        return keys

    def _reread(self, *, stale_only: bool) -> list[_Key]:
        with self._lock:
            assert self._keys is not None
            now = time.monotonic()
            # At most one attempt per refresh_s, failed ones included: a dead URL must not
            # cost every request its timeout.
            if now - self._tried_at < self._refresh or (
                    stale_only and now - self._read_at <= self._max_age):
                return self._keys
            try:
                self._keys = self._read()
            except JwksUnavailable as exc:
                log.warning("%s; keeping the %d keys read before", exc.detail, len(self._keys))
            return self._keys

    def _read(self) -> list[_Key]:
        import jwt

        self._tried_at = time.monotonic()
        try:
            if self.source.startswith(("http://", "https://")):
                request = urllib.request.Request(
                    self.source, headers={"Accept": "application/json",
                                          "User-Agent": "asset-twin"})
                with urllib.request.urlopen(request, timeout=self._timeout) as answer:
                    raw = answer.read(_MAX_JWKS_BYTES + 1)
            else:
                raw = Path(self.source).expanduser().read_bytes()
            if len(raw) > _MAX_JWKS_BYTES:
                raise ValueError(f"larger than {_MAX_JWKS_BYTES} bytes")
            doc = json.loads(raw)
            entries = doc.get("keys") if isinstance(doc, dict) else None
            if not isinstance(entries, list):
                raise ValueError('expected a JSON object {"keys": [...]}')
        except (OSError, ValueError) as exc:
            raise JwksUnavailable(f"cannot read the JWKS at {self.source}: {exc}") from None
        keys = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get(
                    "kty") not in ("RSA", "EC", "OKP"):
                continue  # encryption keys and symmetric ("oct") keys never verify a token
            try:
                key = jwt.PyJWK(entry).key
            except jwt.PyJWTError as exc:
                log.warning("JWKS %s: key %d (kid %r) skipped: %s", self.source, i,
                            entry.get("kid"), exc)
                continue
            keys.append(_Key(entry.get("kid"), entry["kty"], entry.get("crv"),
                             entry.get("alg"), key))
        if not keys:
            raise JwksUnavailable(f"the JWKS at {self.source} holds no RSA, EC or OKP "
                                  f"signing key ({len(entries)} entries)")
        self._read_at = time.monotonic()
        self.reads += 1
        return keys


def _when(value: Any) -> str:
    try:
        return datetime.fromtimestamp(float(value), UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


class TokenChecker:
    """Checks bearer tokens (JWT) as ``Settings`` configures them; see the module text."""

    def __init__(self, settings: Settings) -> None:
        assert settings.jwks is not None
        self._settings = settings
        self.jwks = Jwks(settings.jwks, timeout_s=settings.jwks_timeout_s,
                         refresh_s=settings.jwks_refresh_s, max_age_s=settings.jwks_max_age_s)

    def check(self, token: str) -> Caller:
        import jwt

        s = self._settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidCredentials(f"malformed bearer token: {exc}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in s.jwt_algorithms:
            raise InvalidCredentials(f"the token's algorithm {_short(alg)} is not accepted: "
                                     f"expected one of {', '.join(s.jwt_algorithms)}")
        if kid is not None and not isinstance(kid, str):
            raise InvalidCredentials(f"the token's 'kid' header is {_short(kid)}: expected a "
                                     "string")
        key = self.jwks.key_for(kid, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=s.jwt_audience,
                issuer=s.jwt_issuer, leeway=s.jwt_leeway_s,
                options={"require": ["exp", "iss", "aud"]})
        except jwt.InvalidSignatureError:
            raise InvalidCredentials(
                f"the token's signature does not verify with key {key.kid!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidCredentials(f"the token has no {exc.claim!r} claim") from None
        except jwt.DecodeError as exc:
            raise InvalidCredentials(f"malformed bearer token: {exc}") from None
        except jwt.PyJWTError as exc:  # the signature held: its claims may be quoted
            raise InvalidCredentials(self._claim_error(token, exc)) from None
        return self._caller(claims)

    def _claim_error(self, token: str, exc: Exception) -> str:
        import jwt

        s = self._settings
        claims = jwt.decode(token, options={"verify_signature": False})
        if isinstance(exc, jwt.ExpiredSignatureError):
            return (f"the token expired at {_when(claims.get('exp'))} (claim 'exp', leeway "
                    f"{s.jwt_leeway_s:g} s)")
        if isinstance(exc, jwt.ImmatureSignatureError):
            return (f"the token is not valid before {_when(claims.get('nbf'))} (claim 'nbf', "
                    f"leeway {s.jwt_leeway_s:g} s)")
        if isinstance(exc, jwt.InvalidAudienceError):
            return (f"the token's audience {_short(claims.get('aud'))} is not "
                    f"{s.jwt_audience!r} (claim 'aud')")
        if isinstance(exc, jwt.InvalidIssuerError):
            return (f"the token's issuer {_short(claims.get('iss'))} is not "
                    f"{s.jwt_issuer!r} (claim 'iss')")
        return f"the token is not valid: {exc}"

    def _caller(self, claims: dict[str, Any]) -> Caller:
        s = self._settings
        claim = s.jwt_scope_claim
        raw = claims.get(claim)
        if raw is None:
            raise InvalidCredentials(
                f"the token has no {claim!r} claim, the one that carries its scopes "
                "(TWIN_JWT_SCOPE_CLAIM)")
        if isinstance(raw, str):
            names = raw.split()
        elif isinstance(raw, list) and all(isinstance(n, str) for n in raw):
            names = list(raw)
        else:
            raise InvalidCredentials(f"the token's claim {claim!r} is {_short(raw)}: expected "
                                     "a space-separated string or a list of strings")
        scopes: set[str]
        if s.jwt_scope_map:
            scopes = {s.jwt_scope_map[n] for n in names if n in s.jwt_scope_map}
        else:
            scopes = {n for n in names if n in SCOPES}
        for name_claim in _NAME_CLAIMS:
            name = claims.get(name_claim)
            if isinstance(name, str) and name:
                break
        else:
            raise InvalidCredentials("the token names no caller: it has no 'sub', "
                                     "'client_id' or 'azp' claim")
        if len(name) > CALLER_CHARS:
            raise InvalidCredentials(f"the token's claim {name_claim!r} has {len(name)} "
                                     f"characters: at most {CALLER_CHARS}")
        return Caller(name, frozenset(scopes), credential="token",
                      granted=f"claim {claim!r} is {_short(' '.join(names))}")


def token_checker(settings: Settings, cache: dict[str, Any]) -> TokenChecker:
    """The service's one ``TokenChecker``, kept in ``cache`` (the service context's
    ``extra``); a 401 when the service takes no bearer tokens."""
    checker = cache.get("token_checker")
    if checker is None:
        if settings.jwks is None:
            raise InvalidCredentials("this service takes no bearer tokens (JWT): TWIN_JWKS "
                                     "is not set; send an API key (twk_...)")
        checker = cache.setdefault("token_checker", TokenChecker(settings))
    assert isinstance(checker, TokenChecker)
    return checker
