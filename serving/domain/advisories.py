"""An asset's maintenance advisories: one per maintenance limit, raised by an assessment
that predicts the limit is reached, refreshed while later assessments keep predicting it,
cleared when a completion reports the maintenance done or an assessment no longer
predicts it. Pure functions over lists of dicts; the routes store and announce them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["AdvisoryChanges", "update_advisories"]

# The prediction of an advisory, refreshed while it stays raised.
_ESTIMATE = ("due_by", "due_in_parts", "p_reached", "reason")


@dataclass
class AdvisoryChanges:
    """What ``update_advisories`` did: the advisories now kept, raised and cleared."""

    kept: list[dict[str, Any]]
    raised: list[dict[str, Any]] = field(default_factory=list)
    cleared: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False

    def summary(self) -> dict[str, list[dict[str, str]]]:
        return {"raised": [{"kpi": a["kpi"], "action": a["action"]} for a in self.raised],
                "cleared": [{"kpi": a["kpi"], "action": a["action"]} for a in self.cleared]}


def update_advisories(
    current: list[dict[str, Any]], *, predicted: list[dict[str, Any]] | None,
    done: set[str], job_order_id: str, now: datetime,
) -> AdvisoryChanges:
    """Bring ``current`` (the asset's advisories, one per ``kpi``) up to date.

    ``predicted``: the advisories of an assessment of ``job_order_id``; they replace the
    asset's (new ones are raised, missing ones cleared, kept ones get the new estimate),
    None leaves them as they are. ``done``: maintenance actions a completion reports;
    advisories asking for one of them are cleared.
    """
    by_kpi = {a["kpi"]: a for a in current}
    wanted = None if predicted is None else {a["kpi"]: a for a in predicted}
    out = AdvisoryChanges(kept=[])
    kept: dict[str, dict[str, Any]] = {}
    for kpi, a in by_kpi.items():
        if a["action"] in done:
            out.cleared.append({**a, "cleared_because": "maintenance_done"})
        elif wanted is not None and kpi not in wanted:
            out.cleared.append({**a, "cleared_because": "not_predicted"})
        else:
            fresh = (wanted or {}).get(kpi)
            kept[kpi] = a if fresh is None else {**a, **{k: fresh.get(k) for k in _ESTIMATE}}
    for kpi, a in (wanted or {}).items():
        if kpi not in by_kpi and a["action"] not in done:
            new = {"kpi": kpi, "action": a["action"], **{k: a.get(k) for k in _ESTIMATE},
                   "job_order_id": job_order_id, "raised_at": now.isoformat()}
            out.raised.append(new)
            kept[kpi] = new
    out.kept = list(kept.values())
    out.changed = out.kept != list(by_kpi.values())
    return out
