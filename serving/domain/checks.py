"""What an assessment checks on every row of a prediction: the probabilities against the
order's quality limits and the spec's process and maintenance limits, which of them
break the policy (each a reason code, with the numbers behind it), the asset's health
index and NAMUR NE 107 status. Computed once, for all rows at a time, and read by the
decision, each row's report, the ranking of other machines and the RUL scan
(``serving.domain.assess``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving._predict import Prediction
from serving.domain.policy import Policy
from serving.domain.stats import p_above, p_below

__all__ = [
    "BREAKAGE",
    "BREAKAGE_HAZARD",
    "NE107",
    "QualityLimit",
    "Risks",
    "attempt",
    "detail",
    "g3",
    "health_index",
    "health_status",
    "margin",
    "objective",
    "risks_of",
    "row_checks",
    "say",
]

NE107 = ("NORMAL", "MAINTENANCE_REQUIRED", "OFF_SPEC", "CHECK_FUNCTION", "FAILURE")
BREAKAGE = "tool_broken_end"
# The physical breakage hazard's probability over the order, where the spec has it: a
# regression KPI in [0, 1] that the breakage probability combines with the event's.
BREAKAGE_HAZARD = "breakage_hazard_end"


@dataclass(frozen=True)
class QualityLimit:
    kpi: str
    characteristic_id: str
    unit: str
    lsl: float | None
    usl: float | None
    target: float | None = None
    critical: bool = False
    # What the limits are: the spec's tolerance, the order's quality_specs, or the stock
    # allowance of a roughing or semi-finishing pass.
    basis: str = "tolerance"

# ---- health ------------------------------------------------------------------------------


def health_index(state: dict[str, Any], policy: Policy) -> tuple[float, str | None]:
    """1 - the largest share of a state limit used (0 at or past a limit), and which."""
    worst, which = 0.0, None
    for key, lim in policy.maintenance.state_limits.items():
        if key in state and state[key] is not None:
            share = float(state[key]) / lim.limit
            if share > worst:
                worst, which = share, key
    return max(0.0, 1.0 - worst), which


def health_status(state: dict[str, Any], policy: Policy, current: str = "NORMAL") -> str:
    """NAMUR NE 107 status from the state; FAILURE and CHECK_FUNCTION, set by the MES or
    a completion (a broken tool), stay until the MES clears them."""
    if current in ("FAILURE", "CHECK_FUNCTION"):
        return current
    hi, _ = health_index(state, policy)
    used = 1.0 - hi
    if used >= 1.0:
        return "OFF_SPEC"
    if used >= policy.maintenance.maintenance_required_at:
        return "MAINTENANCE_REQUIRED"
    return "NORMAL"

# ---- the checks -------------------------------------------------------------------------------


@dataclass
class Risks:
    """The probabilities of every row of a prediction against the order's quality limits,
    the spec's process and maintenance limits, and which of them break the policy: computed
    once, for all rows at a time, and read by the decision and by each row's report."""

    pred: Prediction
    limits: list[QualityLimit]
    p_out: list[np.ndarray]  # per quality limit, P(out of [LSL, USL])
    p_violation: dict[str, np.ndarray]  # per process limit (feasibility KPI)
    p_reached: dict[str, np.ndarray]  # per maintenance limit
    reasons: dict[str, np.ndarray]  # reason code: the rows it applies to
    passing: np.ndarray  # rows that pass every check
    # Per reason code: the KPI, its limits, the probability per row and the policy's
    # largest allowed probability, for the numbers behind each code.
    basis: dict[str, dict[str, Any]] = field(default_factory=dict)

    def row_reasons(self, i: int) -> list[str]:
        codes = [code for code, hit in self.reasons.items() if hit[i]]
        return ["OUT_OF_DOMAIN", *codes] if self.pred.batch.violations[i] else codes


def p_outside(pred: Prediction, bands: list[tuple[str, float | None, float | None]]
               ) -> np.ndarray:
    """P(below low) + P(above high), clipped to 1, of each (KPI, low, high) in ``bands``
    (None: no such side) for every row: one [bands, rows] evaluation for them all."""
    m = pred.model
    cols = [m.regression_names.index(name) for name, _, _ in bands]
    mean, lower, upper = (getattr(pred, w)[:, cols].T for w in ("mean", "lower", "upper"))
    p = np.zeros(mean.shape)
    for side, prob in ((1, p_below), (2, p_above)):
        given = np.array([b[side] is not None for b in bands])[:, None]
        limit = np.array([0.0 if b[side] is None else b[side] for b in bands])[:, None]
        if given.any():
            p += np.where(given, prob(limit, mean, lower, upper, m.level), 0.0)
    return np.minimum(p, 1.0)


def risks_of(pred: Prediction, limits: list[QualityLimit], policy: Policy) -> Risks:
    m = pred.model
    feasibility = {name: f for name, f in m.spec.feasibility.items()
                   if name in m.regression_names}
    wear = {name: mt.limit for name, mt in m.spec.maintenance.items()
            if name not in m.event_names and name in m.regression_names}
    p = iter(p_outside(pred, [
        *((q.kpi, q.lsl, q.usl) for q in limits),
        *((name, f.min, f.max) for name, f in feasibility.items()),
        *((name, None, limit) for name, limit in wear.items()),
    ]))
    reasons: dict[str, np.ndarray] = {}
    basis: dict[str, dict[str, Any]] = {}
    p_out = []
    for q in limits:
        p_out.append(next(p))
        p_max = policy.quality.p_out_max_critical if q.critical else policy.quality.p_out_max
        code = f"QUALITY_AT_RISK:{q.characteristic_id}"
        reasons[code] = p_out[-1] > p_max
        basis[code] = {"kpi": q.kpi, "unit": q.unit, "limits": {"lsl": q.lsl, "usl": q.usl},
                       "p": p_out[-1], "p_max": p_max, "what": "P(out of spec)"}
    p_violation = {}
    for name, f in feasibility.items():
        p_violation[name] = next(p)
        code = f"INFEASIBLE:{name}"
        reasons[code] = p_violation[name] > policy.feasibility.p_violation_max
        basis[code] = {"kpi": name, "unit": f.unit, "limits": {"min": f.min, "max": f.max},
                       "p": p_violation[name], "p_max": policy.feasibility.p_violation_max,
                       "what": "P(violation)"}
    p_reached = {}
    for name in m.spec.maintenance:
        if name in m.event_names:
            p_reached[name] = pred.column(name)
        elif name in wear:
            p_reached[name] = next(p)
    if BREAKAGE in p_reached:
        # Two ways for the tool to break: the event the surrogate classifies (worn out at
        # the fracture wear, fatigue: deterministic in the physics, so its probability is
        # the surrogate's uncertainty about it) and the physical hazard of a random
        # fracture. Independent, so P = 1 - (1 - p_event)(1 - p_hazard), with p_hazard =
        # 1 - exp(-H) of the surrogate's mean of the cumulative hazard H (clipped at 0).
        # The mean, not the interval's upper bound, which would count the uncertainty
        # twice; 1 - exp(-x) is concave, so this p_hazard is at least the mean of the
        # probability (Jensen): on the safe side.
        p_event = p_reached[BREAKAGE]
        entry: dict[str, Any] = {"kpi": BREAKAGE, "unit": "1", "limits": {}, "p_event": p_event,
                                 "p_max": policy.maintenance.p_breakage_max, "what": "P(event)"}
        if BREAKAGE_HAZARD in m.regression_names:
            p_hazard = -np.expm1(-np.maximum(pred.column(BREAKAGE_HAZARD), 0.0))
            p_reached[BREAKAGE] = 1.0 - (1.0 - p_event) * (1.0 - p_hazard)
            entry.update(p_hazard=p_hazard, hazard_kpi=BREAKAGE_HAZARD,
                         what="P(event or hazard)")
        entry["p"] = p_reached[BREAKAGE]
        reasons["TOOL_BREAKAGE_RISK"] = entry["p"] > policy.maintenance.p_breakage_max
        basis["TOOL_BREAKAGE_RISK"] = entry
    passing = pred.batch.in_domain.copy()
    for hit in reasons.values():
        passing &= ~hit
    return Risks(pred, limits, p_out, p_violation, p_reached, reasons, passing, basis)


def detail(risks: Risks, i: int, code: str) -> dict[str, Any]:
    """The numbers behind reason ``code`` on row ``i``: the KPI's prediction and interval,
    its limits, the probability and the policy's largest allowed one."""
    b = risks.basis[code]
    pred, name = risks.pred, b["kpi"]
    out: dict[str, Any] = {"code": code, "kpi": name, "unit": b["unit"],
                           "probability": float(b["p"][i]), "p_max": b["p_max"]}
    if name in pred.model.regression_names:
        out["predicted"] = float(pred.column(name)[i])
        out["interval"] = {"lower": float(pred.column(name, "lower")[i]),
                           "upper": float(pred.column(name, "upper")[i]),
                           "level": pred.model.level}
    out["limits"] = {k: v for k, v in b["limits"].items() if v is not None}
    return out


def g3(x: float) -> str:
    """A number as a planner reads it: three significant digits."""
    return f"{x:.3g}"


def say(d: dict[str, Any]) -> str:
    """One reason in words, with its numbers."""
    b = d["code"]
    unit = "" if d["unit"] in ("1", "") else f" {d['unit']}"
    parts = [b + ":"]
    if "predicted" in d:
        iv = d["interval"]
        parts.append(f"{d['kpi']} predicted {g3(d['predicted'])}{unit} "
                     f"[{g3(iv['lower'])}, {g3(iv['upper'])}] at {iv['level']:.0%},")
    lim = d["limits"]
    if lim:
        lo = lim.get("lsl", lim.get("min"))
        hi = lim.get("usl", lim.get("max"))
        parts.append(f"limits [{'' if lo is None else g3(lo)}..{'' if hi is None else g3(hi)}]"
                     f"{unit},")
    what = "P(out of spec)" if b.startswith("QUALITY") else "P(violation)" if b.startswith(
        "INFEASIBLE") else f"P({d['kpi']})"
    parts.append(f"{what} {d['probability']:.2f} > {d['p_max']:g}")
    return " ".join(parts)


def row_checks(risks: Risks, i: int) -> dict[str, Any]:
    """Quality, feasibility and maintenance of row ``i``, and whether it passes."""
    pred = risks.pred
    m = pred.model
    level = m.level
    spec = m.spec
    violations = pred.batch.violations[i]

    def band(name: str) -> tuple[float, float, float]:
        return (float(pred.column(name)[i]), float(pred.column(name, "lower")[i]),
                float(pred.column(name, "upper")[i]))

    quality = []
    for q, p_out in zip(risks.limits, risks.p_out, strict=True):
        mean, lo, up = band(q.kpi)
        inside = (q.lsl is None or lo >= q.lsl) and (q.usl is None or up <= q.usl)
        outside = (q.lsl is not None and up < q.lsl) or (q.usl is not None and lo > q.usl)
        evaluation = "OK" if inside else "NotOK" if outside else "NotDecidable"
        quality.append({
            "characteristic_id": q.characteristic_id,
            "kpi": q.kpi,
            "unit": q.unit,
            "lsl": q.lsl,
            "target": q.target,
            "usl": q.usl,
            "critical": q.critical,
            "basis": q.basis,
            "mean": mean,
            "std": float(pred.column(q.kpi, "std")[i]),
            "interval": {"lower": lo, "upper": up, "level": level,
                         "method": m.signature["interval"]["method"]},
            "p_out_of_spec": float(p_out[i]),
            "evaluation": "NotDecidable" if violations else evaluation,
            "is_simulated": True,
        })
    feasibility = []
    for name, p in risks.p_violation.items():
        f = spec.feasibility[name]
        mean, lo, up = band(name)
        feasibility.append({
            "kpi": name, "unit": f.unit, "min": f.min, "max": f.max, "mean": mean,
            "interval": {"lower": lo, "upper": up, "level": level},
            "p_violation": float(p[i]),
            "feasible": not risks.reasons[f"INFEASIBLE:{name}"][i],
            "description": f.description,
        })
    limits_out = []
    for name, p in risks.p_reached.items():
        mt = spec.maintenance[name]
        limits_out.append({"kpi": name, "limit": mt.limit, "unit": mt.unit,
                           "action": mt.action, "p_reached": float(p[i]),
                           "description": mt.description})
    reasons = risks.row_reasons(i)
    return {
        "passes": not reasons,
        "reasons": reasons,
        "quality": quality,
        "feasibility": feasibility,
        "limits": limits_out,
        "violations": violations,
    }


def objective(pred: Prediction, i: int, key: str) -> float:
    return float(pred.column(key)[i])

def margin(risks: Risks, k: int) -> tuple[float, str | None]:
    """How far row ``k`` is from passing: the largest probability / allowed probability
    of its failing checks (inf out of the training domain), and that check's code."""
    if risks.pred.batch.violations[k]:
        return float("inf"), None
    worst, which = 0.0, None
    for code, b in risks.basis.items():
        ratio = float(b["p"][k]) / b["p_max"]
        if risks.reasons[code][k] and ratio > worst:
            worst, which = ratio, code
    return worst, which


def attempt(risks: Risks, k: int) -> dict[str, Any]:
    code = margin(risks, k)[1]
    return {"still_failing": risks.row_reasons(k),
            "worst": None if code is None else detail(risks, k, code)}
