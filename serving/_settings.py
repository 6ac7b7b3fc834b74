"""The service's settings: one typed object, read from ``TWIN_*`` environment variables.

``Settings.from_env()`` is what ``twin serve`` and each uvicorn worker use; tests build
``Settings(...)`` directly. A bad value fails at start-up, naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    ValidationError,
    ValidationInfo,
    field_validator,
)

__all__ = ["DEFAULT_POLICY", "Settings"]

DEFAULT_POLICY = Path(__file__).resolve().parent / "policy" / "default.yaml"
ServiceScope = Literal["predict", "work-orders", "admin"]
# Public-key signatures only: "none" and HS* (a shared secret) can never be configured.
JwtAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                       "ES512", "EdDSA"]


def _default_algorithms() -> list[JwtAlgorithm]:
    return ["RS256", "ES256"]


class Settings(BaseModel):
    """Everything a deployment sets. Environment: ``TWIN_<FIELD>`` (upper case)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field("sqlite:///twin.db", description="SQLAlchemy URL of the store")
    models: list[str] = Field(
        default_factory=list,
        description="Model sources: bundle folders or models:/<name>@<alias>, comma-separated",
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="Registry for models:/ sources (default: MLFLOW_TRACKING_URI)"
    )
    model_cache: Path = Field(Path(".twin-models"), description="Where registry bundles land")
    policy: Path = Field(DEFAULT_POLICY, description="Decision policy YAML")
    dev_mode: bool = Field(False, description="No authentication (says so at start-up)")
    max_body_bytes: int = Field(1_048_576, gt=0)
    max_batch: int = Field(1000, gt=0, description="Rows per predict request")
    ort_threads: int = Field(1, gt=0, description="onnxruntime intra-op threads per session")
    key_cache_s: float = Field(30.0, ge=0, description="How long a checked API key is trusted")
    # OAuth2 bearer tokens (JWT) beside the API keys: on when ``jwks`` is set. The issuer
    # and audience come before ``jwks`` so its check can see them.
    jwt_issuer: str | None = Field(None, description="The 'iss' every bearer token must carry")
    jwt_audience: str | None = Field(
        None, description="The 'aud' every bearer token must carry (this service's id at the "
        "identity provider)")
    jwks: str | None = Field(
        None, description="JWKS that signs bearer tokens (JWT): a file path or an http(s) URL; "
        "unset: API keys only")
    jwt_scope_claim: str = Field(
        "scope", min_length=1, description="The claim with the token's scopes: a "
        "space-separated string (RFC 9068) or a list of strings (e.g. scp)")
    jwt_scope_map: dict[str, ServiceScope] = Field(
        default_factory=dict, description="Token scope -> service scope, comma-separated "
        "token=service pairs (e.g. api://twin/orders=work-orders); empty: a token scope counts "
        "when it is named like a service scope")
    jwt_algorithms: list[JwtAlgorithm] = Field(
        default_factory=_default_algorithms, min_length=1,
        description="Signature algorithms accepted (public-key ones only: never none or HS*)")
    jwt_leeway_s: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf")
    jwks_timeout_s: float = Field(5.0, gt=0, le=60, description="Timeout of a JWKS URL fetch")
    jwks_refresh_s: float = Field(
        60.0, ge=0, description="At most one JWKS re-read per this many seconds when a token "
        "names an unknown key id")
    jwks_max_age_s: float = Field(
        3600.0, gt=0, description="A JWKS is read again after this long, so a key the identity "
        "provider withdrew stops working")
    model_poll_s: float = Field(2.0, gt=0, description="How often workers look for new models")
    webhooks: bool = Field(True, description="Deliver events to registered webhooks")
    # Delivery: each webhook is its own queue (a slow receiver delays only itself); a
    # delivery is tried webhook_max_attempts times, waiting webhook_backoff_s between tries
    # (about 30 minutes in all by default), then dead-lettered (listed and replayable).
    webhook_timeout_s: float = Field(5.0, gt=0, le=60, description="Timeout of one delivery")
    webhook_max_attempts: int = Field(
        6, ge=1, le=50, description="Tries of one delivery before it is dead-lettered")
    webhook_backoff_s: list[NonNegativeFloat] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 450.0, 1200.0], min_length=1,
        description="Seconds to wait after the 1st, 2nd, ... failed try, comma-separated; the "
        "last value repeats")
    webhook_retry_after_max_s: float = Field(
        300.0, ge=0, description="A receiver's Retry-After (429, 503) is honoured up to this")
    webhook_concurrency: int = Field(
        16, ge=1, le=256, description="Webhooks sent to at once (one delivery each)")
    webhook_disable_after: int = Field(
        10, ge=0, description="Dead letters in a row after which a webhook is disabled (0: "
        "never)")
    webhook_poll_s: float = Field(0.5, gt=0, le=60, description="How often due deliveries "
                                  "are looked for")
    mqtt_url: str | None = Field(None, description="mqtt://host:port to publish events to")
    mqtt_topic_root: str = Field(
        "asset-twin", min_length=1, max_length=256,
        description="The enterprise level of the MQTT topic tree (one or more levels, "
        "e.g. acme/asset-twin): <root>/<site>/<area>/<work_center>/<equipment>/twin/<event>")
    event_source: str = Field("/asset-twin", description="CloudEvents source attribute")
    openapi_servers: list[str] = Field(
        default_factory=lambda: ["/"], min_length=1,
        description="The servers of the OpenAPI document, comma-separated (default '/': "
        "relative to where the document was read)")
    opentelemetry: bool = Field(
        False, description="FastAPI's OpenTelemetry spans, metrics and logs, for a deployment "
        "that configures an OpenTelemetry SDK (off: the service's own /metrics only, and no "
        "per-request check for a provider)",
    )

    @field_validator("jwt_scope_map", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in (p.strip() for p in value.split(",")):
            token, sep, scope = item.rpartition("=")
            if item and (not sep or not token.strip()):
                raise ValueError(f"expected token_scope=service_scope pairs, got {item!r}")
            if item:
                pairs[token.strip()] = scope.strip()
        return pairs

    @field_validator("jwks")
    @classmethod
    def _jwks_needs_issuer_and_audience(cls, value: str | None, info: ValidationInfo,
                                        ) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("expected a JWKS file path or an http(s) URL, got an empty text")
        if "://" in value and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected a file path or an http(s) URL, got {value!r}")
        missing = [f"TWIN_{k.upper()}" for k in ("jwt_issuer", "jwt_audience")
                   if not info.data.get(k)]
        if missing:
            raise ValueError(f"bearer tokens need {' and '.join(missing)} as well (else a "
                             "token meant for another service would be accepted)")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(f"TWIN_{name.upper()}")
            if raw is None:
                continue
            if get_origin(field.annotation) is list:
                values[name] = [s.strip() for s in raw.split(",") if s.strip()]
            else:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            lines = [
                f"TWIN_{'.'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            ]
            raise ValueError("invalid settings:\n  " + "\n  ".join(lines)) from None
