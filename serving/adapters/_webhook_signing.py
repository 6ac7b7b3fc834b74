"""Standard Webhooks signatures (standardwebhooks.com): ``webhook-signature`` is
``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` with the secret's bytes; several
space-separated signatures may be sent (a key rotation), and one that verifies is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

__all__ = ["SignatureError", "new_secret", "sign", "verify"]

_SECRET_PREFIX = "whsec_"


class SignatureError(Exception):
    """A webhook request that does not verify; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_secret(nbytes: int = 32) -> str:
    """A fresh signing secret, ``whsec_`` + base64 of ``nbytes`` random bytes."""
    if not 24 <= nbytes <= 64:
        raise ValueError(f"nbytes must be between 24 and 64, got {nbytes}")
    return _SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    raw = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret must be 'whsec_' followed by base64; got invalid base64") from None
    if not key:
        raise ValueError("secret is empty; create one with new_secret()")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.ts.body``."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> None:
    """Check a received webhook; raise :class:`SignatureError` unless it is authentic.

    ``headers`` may use any letter case. ``now`` is unix seconds (default: the clock).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    values = {}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        value = lower.get(name, "").strip()
        if not value:
            raise SignatureError(f"missing header {name}")
        values[name] = value
    try:
        timestamp = int(values["webhook-timestamp"])
    except ValueError:
        raise SignatureError(
            f"invalid webhook-timestamp {values['webhook-timestamp']!r}: expected unix seconds"
        ) from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise SignatureError(
            f"timestamp too old: {current - timestamp:.0f} s before now, "
            f"tolerance {tolerance_s:g} s"
        )
    if timestamp > current + tolerance_s:
        raise SignatureError(
            f"timestamp too new: {timestamp - current:.0f} s after now, tolerance {tolerance_s:g} s"
        )
    expected = sign(secret, values["webhook-id"], timestamp, body).encode("ascii")
    # Several signatures (key rotation, other schemes) may be sent; compare each in
    # constant time and do not stop early, so timing says nothing about which matched.
    matched = False
    for candidate in values["webhook-signature"].split():
        if candidate.startswith("v1,"):
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    if not matched:
        raise SignatureError("no matching signature")
