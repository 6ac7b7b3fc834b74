"""The raw prediction of a served model: the request row derived from its twin spec
(``predict_request_model``) and the answer of ``POST /v1/models/{name}/predict``, whose
parts (``ModelRef``, ``KpiPrediction``, ``EventPrediction``, ``DomainViolation``) the
other answers reuse.

A row's fields are the spec's inputs with their units, bounds, choices, defaults and
descriptions, so the OpenAPI document says what each parameter means and nothing is
declared twice. Bounds here are the spec's (what the asset can physically take: a value
outside is a 422); the narrower training domain is checked per row and reported as
``in_domain`` with the violated bounds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from physics.spec import InputSpec, TwinSpec
from serving._schemas import _describe, _Out

__all__ = [
    "DomainViolation",
    "EventPrediction",
    "KpiPrediction",
    "ModelRef",
    "PredictInterval",
    "PredictOut",
    "PredictRowOut",
    "predict_request_model",
]


def _canonical(inp: InputSpec) -> Any:
    def canonical(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the Literal says what is wrong with it
        return inp.coerce(value)  # ValueError names the value and every accepted name

    return canonical


def _row_field(key: str, inp: InputSpec) -> tuple[Any, Any]:
    extra: dict[str, Any] = {"x-unit": inp.unit, "x-source": inp.source}
    kw: dict[str, Any] = {"description": _describe(key, inp), "json_schema_extra": extra}
    if inp.kind == "categorical":
        typ: Any = Literal[tuple(inp.choice_names)]
        if inp.aliases:
            # The names an MES sends (C45, 1.0503, AISI 1045) as a job order takes them,
            # answered as the canonical choice; the document lists the canonical ones.
            typ = Annotated[typ, BeforeValidator(_canonical(inp))]
            extra["x-aliases"] = {c: list(a) for c, a in inp.aliases.items()}
            kw["description"] += "; or a name of one in x-aliases"
    elif inp.kind == "boolean":
        typ = bool
    else:
        typ = int if inp.kind == "integer" else float
        if inp.min is not None:
            kw["ge"] = inp.min
        if inp.max is not None:
            kw["le"] = inp.max
    default = ... if inp.default is None else inp.default
    return typ, Field(default, **kw)


def predict_request_model(spec: TwinSpec, max_batch: int) -> type[BaseModel]:
    """The body of ``POST /v1/models/{spec.name}/predict``."""
    fields: dict[str, Any] = {key: _row_field(key, inp) for key, inp in spec.inputs.items()}
    q = spec.require_quantity()
    fields["quantity"] = (
        int if q.integer else float,
        Field(..., ge=q.min, le=q.max, description=f"Planned quantity [{q.unit}]",
              json_schema_extra={"x-unit": q.unit}),
    )
    # Named Predict<Part><Model>: every served model has its own predict route and row,
    # and a client generated from the document lists them side by side.
    title = "".join(p.capitalize() for p in spec.name.split("_"))
    row = create_model(f"PredictRow{title}", __config__=ConfigDict(extra="forbid",
                                                           allow_inf_nan=False), **fields)
    return create_model(
        f"PredictRequest{title}",
        __config__=ConfigDict(extra="forbid"),
        rows=(list[row], Field(min_length=1, max_length=max_batch)),  # type: ignore[valid-type]
    )


# ---- the answer of POST /v1/models/{name}/predict (its parts serve the other answers) ----


class ModelRef(_Out):
    """The model an answer came from."""

    name: str
    version: str = Field(description="Registry version, or 'folder' for a bundle folder")
    bundle_hash: str = Field(description="sha256 of the model file")


class KpiPrediction(_Out):
    """One regression KPI of one row: the ensemble mean, its spread and the calibrated
    interval (at the model's interval level)."""

    unit: str
    # null where the graph gives no finite number (met far outside the training
    # domain, on rows flagged in_domain false).
    mean: float | None
    std: float | None
    lower: float | None
    upper: float | None


class EventPrediction(_Out):
    """One event KPI of one row (the tool breaks during the order, ...)."""

    probability: float | None = Field(
        description="Probability that the event happens (null where the graph gives no "
                    "finite number)")


class DomainViolation(_Out):
    """A bound of the training domain, or a spec constraint, that a row violates."""

    field: str = Field(description="The input, or 'constraint' for a spec constraint")
    value: Any = Field(description="The row's value, or the constraint's expression")
    expected: str


class PredictInterval(_Out):
    level: float = Field(description="Two-sided level of every interval, e.g. 0.95")
    method: str


class PredictRowOut(_Out):
    in_domain: bool = Field(description="False: the numbers are extrapolated; see violations")
    violations: list[DomainViolation]
    kpis: dict[str, KpiPrediction] = Field(description="Per regression KPI of the spec")
    events: dict[str, EventPrediction] = Field(description="Per event KPI of the spec")


class PredictOut(_Out):
    """The answer of ``POST /v1/models/{name}/predict``: one entry per row sent, in order."""

    model: ModelRef
    interval: PredictInterval
    rows: list[PredictRowOut]
