"""The work-order assessment: quality, maintenance, feasibility and a decision, per order.

The decision needs at most two batched surrogate calls. The first predicts the order as
sent and the order scanned over its quantity (the remaining useful life); when that
settles it (RELEASE, or UNDECIDED), nothing else runs. Otherwise the second predicts,
in one batch, every alternative: the order after each maintenance remedy (a fresh
tool), the adjustment candidates and the order on each other machine that can run it.
The surrogate's cost grows with the rows (about 12 us a row on the demo bundle, one
thread), so an order that passes does not pay for the search. Several assessments can
share the calls (``run_together``: a batch costs two calls in all). What each row is
checked against, and the numbers behind each reason code, are in
``serving.domain.checks``. A scenario *passes* when

* every quality characteristic is out of [LSL, USL] with probability at most
  ``policy.quality.p_out_max`` (``p_out_max_critical`` for a critical one),
* every process limit of the spec (``feasibility``) is exceeded with probability at
  most ``policy.feasibility.p_violation_max``,
* the tool breaks with probability at most ``policy.maintenance.p_breakage_max``,
* and the row lies in the surrogate's training domain and meets the spec constraints.

The decision, in this order: UNDECIDED (model missing, state stale, order out of the
training domain), RELEASE (the order passes), MAINTAIN_FIRST (it passes after a
remedy), RELEASE_WITH_ADJUSTMENT (an adjusted setting passes; the best one by the
policy's objective), REROUTE (it passes on other machines, ranked), HOLD_FOR_REVIEW.
Decisions are advisory: the MES decides.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from physics._spec_text import fmt
from serving._models import LoadedModel
from serving._predict import Prediction, predict_rows
from serving.domain.checks import (
    QualityLimit,
    Risks,
    attempt,
    detail,
    health_index,
    health_status,
    margin,
    objective,
    risks_of,
    row_checks,
    say,
)
from serving.domain.policy import Policy

__all__ = [
    "AssetView",
    "OrderView",
    "QualityLimit",
    "assess",
    "assessment_steps",
    "health_index",
    "health_status",
    "run_together",
    "with_defaults",
]


@dataclass
class AssetView:
    equipment_id: str
    asset_type: str
    state: dict[str, Any]
    environment: dict[str, Any]
    state_measured_at: datetime
    device_health: str = "NORMAL"
    # The machine's own constants (spec inputs of source machine); an input the asset
    # does not hold takes the spec's default in an assessment (with_defaults).
    machine: dict[str, Any] = field(default_factory=dict)


@dataclass
class OrderView:
    job_order_id: str
    values: dict[str, Any]  # order inputs only (no state, no environment)
    quantity: int | float
    limits: list[QualityLimit]
    start_time: datetime | None = None


@dataclass
class _Scenario:
    label: str
    rows: slice
    meta: list[dict[str, Any]] = field(default_factory=list)


# ---- the scenarios ---------------------------------------------------------------------------


def _row(order: OrderView, asset: AssetView, **override: Any) -> dict[str, Any]:
    return {**order.values, **asset.environment, **asset.machine, **asset.state,
            "quantity": order.quantity, **override}


def with_defaults(spec: Any, asset: AssetView) -> AssetView:
    """The asset with the spec's default for each state, environment or machine input it
    does not hold (an asset stored before its spec had the input)."""
    held = {"state": dict(asset.state), "environment": dict(asset.environment),
            "machine": dict(asset.machine)}
    for key, inp in spec.inputs.items():
        given = held.get(inp.source)
        if given is not None and key not in given and inp.default is not None:
            given[key] = inp.coerce(inp.default)
    return replace(asset, state=held["state"], environment=held["environment"],
                   machine=held["machine"])


def _candidates(model: LoadedModel, order: OrderView, policy: Policy) -> list[dict[str, Any]]:
    """Adjusted settings: each adjustable parameter within its share of the order's value,
    the spec bounds and the training domain; a seeded design, so a decision replays;
    then each parameter's own scan (``scan`` values of it alone, the rest as ordered)."""
    adj = policy.adjustment
    params = [k for k, p in adj.parameters.items() if p.relative > 0 and k in order.values]
    if not params:
        return []
    rng = np.random.default_rng(adj.seed)
    domain = {c["name"]: c for c in model.inputs}
    columns = {}
    scans: list[dict[str, Any]] = []
    for key in params:
        inp = model.spec.inputs[key]
        v = float(order.values[key])
        r = adj.parameters[key].relative
        lo, hi = v * (1 - r), v * (1 + r)
        for bound in (inp.min, domain[key]["min"]):
            lo = max(lo, bound) if bound is not None else lo
        for bound in (inp.max, domain[key]["max"]):
            hi = min(hi, bound) if bound is not None else hi
        if hi < lo:
            lo = hi = min(max(v, lo), hi)
        # Latin hypercube on [lo, hi]: every stratum of each parameter is tried once.
        u = (rng.permutation(adj.candidates) + rng.random(adj.candidates)) / adj.candidates
        col = lo + u * (hi - lo)
        columns[key] = np.round(col) if inp.kind == "integer" else col
        points = adj.parameters[key].scan
        if points and hi > lo:
            line = np.linspace(lo, hi, points)
            line = np.unique(np.round(line)) if inp.kind == "integer" else line
            scans.extend({key: float(x)} for x in line)
    joint = [{k: float(columns[k][j]) for k in params} for j in range(adj.candidates)]
    return joint + scans


# An assessment as a generator: it yields the rows it needs predicted, is sent their
# Prediction, and returns its answer; so several assessments can share surrogate calls.
Steps = Generator[list[dict[str, Any]], Prediction, dict[str, Any]]


def assess(
    model: LoadedModel,
    policy: Policy,
    asset: AssetView,
    order: OrderView,
    *,
    others: list[AssetView],
    now: datetime,
) -> dict[str, Any]:
    """The assessment of ``order`` on ``asset``; ``others`` are the alternate machines."""
    return run_together(model, [assessment_steps(model, policy, asset, order, others=others,
                                                 now=now)])[0]


def run_together(model: LoadedModel, assessments: list[Steps]) -> list[dict[str, Any]]:
    """Drive several assessments of one model at once: each round predicts, in one
    surrogate call, the rows every unfinished assessment asks for (a batch of orders costs
    two calls, not two per order); the answers, in order."""
    results: list[dict[str, Any] | None] = [None] * len(assessments)
    pending: dict[int, list[dict[str, Any]]] = {}
    for i, steps in enumerate(assessments):
        try:
            pending[i] = next(steps)
        except StopIteration as done:
            results[i] = done.value
    while pending:
        rows = [row for asked in pending.values() for row in asked]
        pred = predict_rows(model, rows)
        asked_next: dict[int, list[dict[str, Any]]] = {}
        start = 0
        for i, asked in pending.items():
            part = pred.take(slice(start, start + len(asked)))
            start += len(asked)
            try:
                asked_next[i] = assessments[i].send(part)
            except StopIteration as done:
                results[i] = done.value
        pending = asked_next
    return [r for r in results if r is not None]


def assessment_steps(
    model: LoadedModel,
    policy: Policy,
    asset: AssetView,
    order: OrderView,
    *,
    others: list[AssetView],
    now: datetime,
) -> Steps:
    """The assessment of ``order`` on ``asset`` as steps (see ``Steps``)."""
    spec = model.spec
    asset = with_defaults(spec, asset)
    others = [with_defaults(spec, o) for o in others]
    # The first call: the order as sent (row 0) and its scan over the quantity.
    q_col = next(c for c in model.inputs if c["name"] == "quantity")
    horizon = int(q_col["max"])
    scan_off = policy.rul.scan_without
    scan_override: dict[str, Any] = {scan_off: False} if scan_off in spec.inputs else {}
    # Geometric steps: a part apart at the start, where wear and warm-up move fastest,
    # a few dozen near the horizon.
    quantities = np.unique(np.geomspace(max(1, int(q_col["min"])), horizon, 50).round())
    rows = [_row(order, asset)]
    rows.extend(_row(order, asset, quantity=int(q), **scan_override) for q in quantities)
    pred = yield rows
    risks = risks_of(pred, order.limits, policy)
    as_is = row_checks(risks, 0)

    hi, worst = health_index(asset.state, policy)
    cycle_s = float(pred.column("part_cycle_time")[0]) if "part_cycle_time" in (
        model.regression_names) else None
    rul = _rul(risks, slice(1, len(rows)), quantities, policy, cycle_s)
    advisories = _advisories(as_is, rul, order, now, cycle_s, policy)
    maintenance = {
        "health_index": hi,
        "health_driver": worst,
        "device_health": health_status(asset.state, policy, asset.device_health),
        "remaining_useful_life": rul,
        "limits": as_is["limits"],
        "advisories": advisories,
    }
    base = {
        "quality": as_is["quality"],
        "maintenance": maintenance,
        "feasibility": as_is["feasibility"],
        "domain": {"in_domain": not as_is["violations"], "violations": as_is["violations"]},
        "predicted": pred.row(0)["kpis"] | pred.row(0)["events"],
    }

    if policy.is_stale(asset.state_measured_at, now):
        decision = _decision("UNDECIDED", ["STATE_STALE"],
                             f"the asset state was measured {asset.state_measured_at.isoformat()}"
                             f", more than {fmt(policy.stale_after_hours)} h ago")
        return {**base, "decision": decision}
    if as_is["violations"]:
        decision = _decision("UNDECIDED", ["OUT_OF_DOMAIN"],
                             "the order lies outside the surrogate's training domain: "
                             + "; ".join(f"{v['field']} {v['value']!r}: {v['expected']}"
                                         for v in as_is["violations"]))
        return {**base, "decision": decision}
    if as_is["passes"]:
        codes = ["ALL_CHECKS_PASSED"] + [f"ADVISORY:{a['action']}" for a in advisories]
        return {**base, "decision": _decision("RELEASE", codes,
                                               "every check passes at the policy's limits")}

    # The second call: every alternative, in one batch.
    rows = []
    scenarios: dict[str, _Scenario] = {}
    remedies = list(policy.maintenance.remedies.items())
    rows.extend(_row(order, asset, **state) for _, state in remedies)
    scenarios["remedies"] = _Scenario("remedies", slice(0, len(rows)),
                                      [{"action": a, "state": s} for a, s in remedies])
    start = len(rows)
    cands = _candidates(model, order, policy)
    rows.extend(_row(order, asset, **c) for c in cands)
    scenarios["adjust"] = _Scenario("adjust", slice(start, len(rows)), cands)
    start = len(rows)
    rows.extend(_row(order, other) for other in others)
    scenarios["reroute"] = _Scenario("reroute", slice(start, len(rows)),
                                     [{"equipment_id": o.equipment_id} for o in others])
    failing = as_is["reasons"]
    found = [detail(risks, 0, c) for c in failing if c in risks.basis]
    said = "; ".join(say(d) for d in found)
    if not rows:
        return {**base, "decision": _decision(
            "HOLD_FOR_REVIEW", [*failing, "NO_REMEDY"],
            f"no remedy, adjustment or other machine clears {', '.join(failing)} ({said}); "
            "the policy and the scope leave nothing to try", reasons=found, tried=[])}
    first, pred = pred, (yield rows)
    risks = risks_of(pred, order.limits, policy)
    passing = risks.passing

    sc = scenarios["remedies"]
    for k, meta in zip(range(sc.rows.start, sc.rows.stop), sc.meta, strict=True):
        if passing[k]:
            checks = row_checks(risks, k)
            decision = _decision(
                "MAINTAIN_FIRST", [*failing, f"REMEDY:{meta['action']}"],
                f"{meta['action']} before the order clears {', '.join(failing)} ({said})",
                reasons=found)
            decision["maintenance_first"] = {
                "action": meta["action"], "state_after": meta["state"],
                "quality": checks["quality"], "limits": checks["limits"],
            }
            return {**base, "decision": decision}

    best = _best_adjustment(pred, scenarios["adjust"], passing, policy)
    if best is not None:
        k, meta = best
        checks = row_checks(risks, k)
        obj = policy.adjustment.objective
        before, after = objective(first, 0, obj), objective(pred, k, obj)
        decision = _decision(
            "RELEASE_WITH_ADJUSTMENT", [*failing, "ADJUSTMENT_FOUND"],
            f"the adjusted setting clears {', '.join(failing)} ({said}); of the settings "
            f"that pass, it has the lowest {obj}", reasons=found)
        decision["adjustment"] = {
            "parameters": [
                {"id": key, "from": order.values[key], "to": value,
                 "unit": spec.inputs[key].unit}
                for key, value in meta.items()
            ],
            "effect": {
                "fixed": failing,
                "objective": {"kpi": obj, "unit": spec.kpis[obj].unit,
                              "before": before, "after": after},
                "quality": checks["quality"],
                "feasibility": checks["feasibility"],
            },
        }
        return {**base, "decision": decision}

    alternates = _alternates(risks, scenarios["reroute"], policy)
    if alternates:
        decision = _decision(
            "REROUTE", [*failing, "ALTERNATE_FOUND"],
            f"the order passes on {len(alternates)} other machine(s), ranked by "
            f"{policy.reroute.objective}; here: {said}", reasons=found)
        decision["alternates"] = alternates
        return {**base, "decision": decision}
    tried = _tried(risks, scenarios, model.spec)
    return {**base, "decision": _decision(
        "HOLD_FOR_REVIEW", [*failing, "NO_REMEDY"],
        f"no remedy, adjustment or other machine clears {', '.join(failing)} ({said}); "
        "closest: " + "; ".join(_say_tried(x) for x in tried), reasons=found, tried=tried)}


def _tried(risks: Risks, scenarios: dict[str, _Scenario], spec: Any) -> list[dict[str, Any]]:
    """What a HOLD_FOR_REVIEW tried and by how much each missed: every remedy, the
    adjusted setting closest to passing, every other machine."""
    out: list[dict[str, Any]] = []
    sc = scenarios["remedies"]
    for k, meta in zip(range(sc.rows.start, sc.rows.stop), sc.meta, strict=True):
        out.append({"kind": "remedy", "action": meta["action"], **attempt(risks, k)})
    sc = scenarios["adjust"]
    if sc.meta:
        ks = list(range(sc.rows.start, sc.rows.stop))
        best = min(ks, key=lambda k: margin(risks, k)[0])
        meta = sc.meta[best - sc.rows.start]
        out.append({"kind": "adjustment", "candidates": len(ks),
                    "parameters": [{"id": key, "to": value, "unit": spec.inputs[key].unit}
                                   for key, value in meta.items()], **attempt(risks, best)})
    sc = scenarios["reroute"]
    for k, meta in zip(range(sc.rows.start, sc.rows.stop), sc.meta, strict=True):
        out.append({"kind": "reroute", "equipment_id": meta["equipment_id"],
                    **attempt(risks, k)})
    return out


def _say_tried(x: dict[str, Any]) -> str:
    what = {"remedy": lambda: x["action"],
            "adjustment": lambda: f"the best of {x['candidates']} adjusted settings",
            "reroute": lambda: x["equipment_id"]}[x["kind"]]()
    w = x["worst"]
    if w is None:
        return f"{what} is outside the training domain"
    return f"{what} leaves {w['code']} at {w['probability']:.2f} (allowed {w['p_max']:g})"


def _decision(kind: str, codes: list[str], why: str, *,
              reasons: list[dict[str, Any]] | None = None,
              tried: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "reason_codes": codes, "explanation": why,
                           "advisory": True}
    if reasons is not None:
        out["reasons"] = reasons
    if tried is not None:
        out["tried"] = tried
    return out


def _best_adjustment(
    pred: Prediction, sc: _Scenario, passing: np.ndarray, policy: Policy
) -> tuple[int, dict[str, Any]] | None:
    best: tuple[float, float, int, dict[str, Any]] | None = None
    adj = policy.adjustment
    for k, meta in zip(range(sc.rows.start, sc.rows.stop), sc.meta, strict=True):
        if not passing[k]:
            continue
        key = (objective(pred, k, adj.objective),
               objective(pred, k, adj.tie_break) if adj.tie_break else 0.0)
        if best is None or key < best[:2]:
            best = (*key, k, meta)
    return None if best is None else (best[2], best[3])


def _alternates(
    risks: Risks, sc: _Scenario, policy: Policy
) -> list[dict[str, Any]]:
    ranked = []
    for k, meta in zip(range(sc.rows.start, sc.rows.stop), sc.meta, strict=True):
        if not risks.passing[k]:
            continue
        ranked.append({
            "equipment_id": meta["equipment_id"],
            "objective": {"kpi": policy.reroute.objective,
                          "value": objective(risks.pred, k, policy.reroute.objective)},
            "max_p_out_of_spec": max((float(p[k]) for p in risks.p_out), default=0.0),
        })
    ranked.sort(key=lambda a: (a["objective"]["value"], a["max_p_out_of_spec"]))
    for rank, a in enumerate(ranked, 1):
        a["rank"] = rank
    return ranked


def _rul(risks: Risks, rows: slice, quantities: np.ndarray, policy: Policy,
         cycle_s: float | None) -> dict[str, Any]:
    """Parts until a maintenance limit, as quantiles of P(limit reached by q parts)."""
    p_any = np.zeros(rows.stop - rows.start)
    for name in policy.rul.limits:
        if name in risks.p_reached:
            p_any = 1.0 - (1.0 - p_any) * (1.0 - risks.p_reached[name][rows])  # either limit
    p_by = np.maximum.accumulate(p_any)  # reached by q parts cannot fall with q
    out: dict[str, Any] = {"unit": "parts", "horizon": int(quantities[-1]),
                           "method": "surrogate scanned over the quantity, "
                                     f"{len(quantities)} points"}
    q = quantities.astype(float)
    for pct in (10, 50, 90):
        level = pct / 100
        hit = np.flatnonzero(p_by >= level)
        parts: int | None = None
        if hit.size:
            k = int(hit[0])
            parts = int(q[0])
            if k > 0:
                # The scan's points are up to a few dozen parts apart: the quantile lies
                # between the last point below its level and the first at or above it,
                # where P(reached) is taken as linear in the parts.
                p0, p1 = float(p_by[k - 1]), float(p_by[k])
                share = (level - p0) / (p1 - p0) if p1 > p0 else 1.0
                parts = int(np.floor(q[k - 1] + share * (q[k] - q[k - 1])))
        out[f"p{pct}"] = parts
        if cycle_s is not None:
            out[f"p{pct}_hours"] = None if parts is None else parts * cycle_s / 3600
    out["beyond_horizon"] = out["p10"] is None
    if out["p10"] is None:
        out["note"] = (f"no maintenance limit is reached with 10 % probability within "
                       f"{int(q[-1])} parts, the largest quantity the model was trained for")
    return out


def _advisories(checks: dict[str, Any], rul: dict[str, Any], order: OrderView, now: datetime,
                cycle_s: float | None, policy: Policy) -> list[dict[str, Any]]:
    out = []
    for lim in checks["limits"]:
        if lim["p_reached"] < policy.maintenance.p_advisory:
            continue
        due_parts = rul["p10"] if lim["kpi"] in policy.rul.limits else None
        start = order.start_time or now
        due_by = None
        if due_parts is not None and cycle_s is not None:
            due_by = (start + timedelta(seconds=due_parts * cycle_s)).isoformat()
        out.append({
            "action": lim["action"], "kpi": lim["kpi"], "p_reached": lim["p_reached"],
            "due_in_parts": due_parts, "due_by": due_by,
            "reason": f"{lim['kpi']} reaches {fmt(lim['limit'])} {lim['unit']} during the "
                      f"order with probability {lim['p_reached']:.2f}: {lim['description']}",
        })
    return out
