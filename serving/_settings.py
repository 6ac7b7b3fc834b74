"""The service's settings: one typed object, read from ``TWIN_*`` environment variables.

``Settings.from_env()`` is what ``twin serve`` and each uvicorn worker use; tests build
``Settings(...)`` directly. A bad value fails at start-up, naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["DEFAULT_POLICY", "Settings"]

DEFAULT_POLICY = Path(__file__).resolve().parent / "policy" / "default.yaml"


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
    model_poll_s: float = Field(2.0, gt=0, description="How often workers look for new models")
    webhooks: bool = Field(True, description="Deliver events to registered webhooks")
    mqtt_url: str | None = Field(None, description="mqtt://host:port to publish events to")
    event_source: str = Field("/asset-twin", description="CloudEvents source attribute")
    opentelemetry: bool = Field(
        False, description="FastAPI's OpenTelemetry spans, metrics and logs, for a deployment "
        "that configures an OpenTelemetry SDK (off: the service's own /metrics only, and no "
        "per-request check for a provider)",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(f"TWIN_{name.upper()}")
            if raw is None:
                continue
            if field.annotation == list[str]:
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
