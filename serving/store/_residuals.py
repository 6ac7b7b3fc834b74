"""Residuals of completed orders (measured minus predicted quality), and the drift check
over the latest of them per KPI."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.domain.completion import drift_test
from serving.domain.policy import Policy
from serving.store._tables import Residual

__all__ = ["record_residuals"]


def record_residuals(
    session: Session, found: list[dict[str, Any]], *, job_order_id: str, equipment_id: str,
    asset_type: str, policy: Policy,
) -> list[dict[str, Any]]:
    """Store ``found`` (``serving.domain.completion.residuals``); returns the drift that
    this completion newly detects (the test over the latest window fails, the one over
    the window before the newest did not)."""
    drift = []
    for r in found:
        session.add(Residual(
            job_order_id=job_order_id, equipment_id=equipment_id, asset_type=asset_type,
            characteristic_id=r["characteristic_id"], kpi=r["kpi"], predicted=r["predicted"],
            lower=r["interval"]["lower"], upper=r["interval"]["upper"],
            level=r["interval"]["level"], measured=r["measured"], inside=r["inside"]))
        session.flush()
        inside = [bool(x) for x in session.scalars(
            select(Residual.inside).where(Residual.asset_type == asset_type,
                                          Residual.kpi == r["kpi"])
            .order_by(Residual.id.desc()).limit(policy.completion.drift_window + 1)).all()]
        level = r["interval"]["level"]
        now, was = drift_test(inside, level, policy), drift_test(inside[1:], level, policy)
        if now is not None and now["drift"] and not (was and was["drift"]):
            drift.append({"kpi": r["kpi"], "characteristic_id": r["characteristic_id"], **now})
    return drift
