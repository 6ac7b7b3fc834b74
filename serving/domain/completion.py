"""A completed work order advances the asset's state and feeds the residual checks.

The end state is the surrogate's prediction at the parts actually made: a state input
takes the predicted end value of the KPI that ``start``s from it (tool wear), a
``<state>_order`` KPI adds its increment (bearing damage), the policy sets what a run
leaves behind (a warm spindle); maintenance done and measured values replace them.
Residuals (measured - predicted) are stored per characteristic; drift is flagged when
more of the recent ones fall outside their intervals than the level allows (one-sided
binomial test).
"""

from __future__ import annotations

from math import comb
from typing import Any

from serving._errors import BadRequest, FieldError
from serving._models import LoadedModel
from serving._predict import predict_rows
from serving._schemas import CompletionIn, MeasuredQuality, MeasuredSample
from serving.domain.orders import in_spec_unit
from serving.domain.policy import Policy

__all__ = [
    "binomial_tail",
    "drift_test",
    "end_state",
    "maintenance_actions",
    "residuals",
    "with_samples",
]


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return float(sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def maintenance_actions(model: LoadedModel, policy: Policy) -> list[str]:
    """The actions a completion may report done: the policy's remedies (which set the
    state) and every action an advisory can ask for (the spec's maintenance limits, the
    policy's state limits), so that the MES can clear each advisory it followed."""
    actions = [*policy.maintenance.remedies,
               *(m.action for m in model.spec.maintenance.values()),
               *(lim.action for lim in policy.maintenance.state_limits.values())]
    return list(dict.fromkeys(actions))


def end_state(
    model: LoadedModel, policy: Policy, row: dict[str, Any], body: CompletionIn
) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
    """The state after the order, the prediction row at the parts made (or None), and
    every change of a state input with its cause, in the order applied: ``predicted``
    (the surrogate's end value or increment at the parts made), ``run`` (what the policy
    says a run leaves behind), ``maintenance`` (an action the completion reports done),
    ``measured`` (a value the completion measured)."""
    spec = model.spec
    before = {k: row[k] for k, i in spec.inputs.items() if i.source == "state"}
    after = dict(before)
    changes: list[dict[str, Any]] = []

    def change(key: str, value: Any, cause: str, detail: str) -> None:
        if value != after[key]:
            changes.append({"input": key, "from": after[key], "to": value, "cause": cause,
                            "detail": detail})
        after[key] = value

    predicted = None
    if body.made > 0:
        q = spec.require_quantity()
        parts = min(max(body.made, q.min), q.max)
        pred = predict_rows(model, [{**row, "quantity": parts}])
        predicted = pred.row(0)
        for key in before:
            for name, kpi in spec.kpis.items():
                if kpi.start == key and name in model.regression_names:
                    value = float(pred.column(name)[0])
                    why = f"{name} predicted at {parts} parts"
                    if value < before[key]:
                        why += (": below the start value, so the model's run resets it during "
                                "the order (a change the machine makes by itself); report it "
                                "in the completion if it did not happen")
                    change(key, value, "predicted", why)
            inc = f"{key}_order"
            if inc in model.regression_names:
                change(key, before[key] + max(0.0, float(pred.column(inc)[0])), "predicted",
                       f"plus {inc} predicted at {parts} parts")
        for key, value in policy.completion.set_after_run.items():
            change(key, value, "run", "the policy's value after a run")
    actions = list(body.maintenance_done) + (["replace_tool"] if body.tool_was_changed else [])
    known = maintenance_actions(model, policy)
    for action in actions:
        if action not in known:
            raise BadRequest("unknown maintenance action", [FieldError(
                "maintenance_done", action, "one of " + ", ".join(known))])
        for key, value in policy.maintenance.remedies.get(action, {}).items():
            change(key, value, "maintenance", f"{action} reported done")
    for key, value in body.measured_state.items():
        inp = spec.inputs.get(key)
        if inp is None or inp.source != "state":
            raise BadRequest("unknown state input", [FieldError(
                f"measured_state.{key}", value, "a state input: " + ", ".join(before))])
        try:
            change(key, inp.coerce(value), "measured", "measured_state of the completion")
        except ValueError as exc:
            raise BadRequest("measured state out of range", [FieldError(
                f"measured_state.{key}", value, str(exc))]) from None
    for key, value in after.items():  # predicted values stay within what the spec allows
        inp = spec.inputs[key]
        lo = inp.min if inp.min is not None else value
        hi = inp.max if inp.max is not None else value
        if not lo <= value <= hi:
            change(key, min(max(float(value), lo), hi), "clipped",
                   f"to the spec's range [{lo}, {hi}]")
    return after, predicted, changes


def residuals(
    model: LoadedModel, body: CompletionIn, predicted: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Measured minus predicted per characteristic the completion reports, in the spec's
    unit (none when nothing was predicted: no part made); BadRequest for an unknown
    characteristic or a unit that does not convert to its unit."""
    spec = model.spec
    by_char = {q.characteristic_id: (k, q) for k, q in spec.quality.items()}
    out = []
    for n, m in enumerate(body.measured_quality):
        if m.characteristic_id not in by_char:
            raise BadRequest("unknown characteristic", [FieldError(
                f"measured_quality[{n}].characteristic_id", m.characteristic_id,
                "one of " + ", ".join(by_char))])
        kpi, qs = by_char[m.characteristic_id]
        # A value measured in another unit (mm for a characteristic in um) is compared in
        # the spec's unit; one that does not convert is refused.
        measured, problem = in_spec_unit(m.value, m.unit, qs.unit,
                                         where=f"measured_quality[{n}].unit")
        if problem is not None:
            raise BadRequest("the measured unit does not convert to the characteristic's",
                             [problem])
        assert measured is not None
        if predicted is None:
            continue
        p = predicted["kpis"][kpi]
        out.append({"characteristic_id": m.characteristic_id, "kpi": kpi,
                    "measured": measured, "predicted": p["mean"],
                    "residual": measured - p["mean"],
                    "interval": {"lower": p["lower"], "upper": p["upper"],
                                 "level": model.level},
                    "inside": p["lower"] <= measured <= p["upper"]})
    return out


def drift_test(inside: list[bool], level: float, policy: Policy) -> dict[str, Any] | None:
    """The drift test over ``inside`` (newest first, at most the policy's window): None
    below the policy's minimum count."""
    c = policy.completion
    inside = inside[: c.drift_window]
    n = len(inside)
    if n < c.drift_min_count:
        return None
    misses = sum(1 for x in inside if not x)
    p_value = binomial_tail(misses, n, 1 - level)
    return {"n": n, "outside": misses, "expected_share": 1 - level,
            "p_value": p_value, "drift": p_value < c.drift_p_value}


def _reduce(reduction: str, samples: list[MeasuredSample]) -> float:
    values = [s.value for s in samples]
    if reduction == "max":
        return max(values)
    if reduction == "min":
        return min(values)
    if reduction == "max_abs":
        return max(values, key=abs)
    if reduction == "final":
        # The latest part's value; samples without a time count in the order sent.
        timed = [(s.measured_at, s.value) for s in samples if s.measured_at is not None]
        return max(timed)[1] if timed else values[-1]
    return sum(values) / len(values)


def with_samples(model: LoadedModel, body: CompletionIn) -> CompletionIn:
    """The completion with its per-part samples reduced to one value per characteristic,
    the way the characteristic's KPI reduces its trajectory (``max`` the largest, ``final``
    the latest, ``mean`` the mean...), beside the single values ``measured_quality`` gives.
    A characteristic is measured one way or the other, in one unit."""
    if not body.samples:
        return body
    spec = model.spec
    by_char = {q.characteristic_id: k for k, q in spec.quality.items()}
    groups: dict[str, list[MeasuredSample]] = {}
    for n, s in enumerate(body.samples):
        if s.characteristic_id not in by_char:
            raise BadRequest("unknown characteristic", [FieldError(
                f"samples[{n}].characteristic_id", s.characteristic_id,
                "one of " + ", ".join(by_char))])
        group = groups.setdefault(s.characteristic_id, [])
        if group and group[0].unit != s.unit:
            raise BadRequest("samples of one characteristic in two units", [FieldError(
                f"samples[{n}].unit", s.unit, f"{group[0].unit!r}, as the first sample of "
                f"{s.characteristic_id}")])
        group.append(s)
    single = {m.characteristic_id for m in body.measured_quality}
    both = sorted(single & set(groups))
    if both:
        raise BadRequest("a characteristic measured twice", [FieldError(
            "samples", c, "samples or a measured_quality value, not both") for c in both])
    reduced = [
        MeasuredQuality(characteristic_id=c, unit=group[0].unit,
                        value=_reduce(spec.kpis[by_char[c]].reduction, group))
        for c, group in groups.items()
    ]
    return body.model_copy(update={"measured_quality": [*body.measured_quality, *reduced]})
