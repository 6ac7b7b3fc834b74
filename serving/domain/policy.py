"""The decision policy: a versioned YAML file of thresholds, remedies and the objective of
the adjustment search (``serving/policy/default.yaml`` is the default). It is checked at
start-up against the twin specs of the served models, so a typo fails there, not in the
middle of a shift."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from physics.spec import TwinSpec

__all__ = ["Policy", "load_policy"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QualityPolicy(_Strict):
    p_out_max: float = Field(default=0.05, gt=0, lt=1)
    p_out_max_critical: float = Field(default=0.01, gt=0, lt=1)


class FeasibilityPolicy(_Strict):
    p_violation_max: float = Field(default=0.05, gt=0, lt=1)


class StateLimit(_Strict):
    limit: float = Field(gt=0)
    action: str


class MaintenancePolicy(_Strict):
    p_advisory: float = Field(default=0.2, gt=0, lt=1)
    p_breakage_max: float = Field(default=0.02, gt=0, lt=1)
    state_limits: dict[str, StateLimit] = {}
    maintenance_required_at: float = Field(default=0.8, gt=0, le=1)
    remedies: dict[str, dict[str, float]] = {}


class AdjustParameter(_Strict):
    relative: float = Field(ge=0, le=1)
    # Values of this parameter alone (the others as ordered) spread evenly over its
    # window, beside the joint design: a fine scan finds a narrow window, such as a
    # stability lobe, that the joint design's points miss.
    scan: int = Field(default=0, ge=0, le=256)


class AdjustmentPolicy(_Strict):
    candidates: int = Field(default=256, ge=1, le=4096)
    seed: int = 0
    parameters: dict[str, AdjustParameter] = {}
    objective: str
    tie_break: str | None = None


class ReroutePolicy(_Strict):
    objective: str


class RulPolicy(_Strict):
    limits: list[str]
    scan_without: str | None = None


class CompletionPolicy(_Strict):
    set_after_run: dict[str, float] = {}
    drift_window: int = Field(default=50, ge=5)
    drift_min_count: int = Field(default=20, ge=5)
    drift_p_value: float = Field(default=0.01, gt=0, lt=1)


class Policy(_Strict):
    id: str
    version: str
    description: str = ""
    stale_after_hours: float = Field(gt=0)
    quality: QualityPolicy = QualityPolicy()
    feasibility: FeasibilityPolicy = FeasibilityPolicy()
    maintenance: MaintenancePolicy = MaintenancePolicy()
    adjustment: AdjustmentPolicy
    reroute: ReroutePolicy
    rul: RulPolicy
    completion: CompletionPolicy = CompletionPolicy()

    def ref(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version}

    def is_stale(self, measured_at: datetime, now: datetime) -> bool:
        """A state measured more than ``stale_after_hours`` before ``now`` is not trusted:
        the order on it is UNDECIDED, and the machine is no alternate."""
        return now - measured_at > timedelta(hours=self.stale_after_hours)

    def check_against(self, spec: TwinSpec) -> list[str]:
        """Problems of this policy for ``spec``: names it uses that the spec lacks."""
        problems: list[str] = []
        for key in self.adjustment.parameters:
            inp = spec.inputs.get(key)
            if inp is None or inp.source != "order" or inp.kind not in ("real", "integer"):
                problems.append(f"adjustment.parameters.{key}: not a numeric order input")
        keys = (self.adjustment.objective, self.adjustment.tie_break, self.reroute.objective)
        for name in keys:
            if name is not None and name not in spec.kpis:
                problems.append(f"{name}: not a KPI of spec {spec.name}")
        for key in self.rul.limits:
            if key not in spec.maintenance:
                problems.append(f"rul.limits: {key} is not a maintenance KPI of {spec.name}")
        for key in self.maintenance.state_limits:
            if key not in spec.inputs or spec.inputs[key].source != "state":
                problems.append(f"maintenance.state_limits.{key}: not a state input")
        for action, state in self.maintenance.remedies.items():
            for key in state:
                if key not in spec.inputs or spec.inputs[key].source != "state":
                    problems.append(f"maintenance.remedies.{action}.{key}: not a state input")
        for key in self.completion.set_after_run:
            if key not in spec.inputs or spec.inputs[key].source != "state":
                problems.append(f"completion.set_after_run.{key}: not a state input")
        if self.rul.scan_without and self.rul.scan_without not in spec.inputs:
            problems.append(f"rul.scan_without: {self.rul.scan_without} is not an input")
        return problems


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Policy.model_validate(data)
    except OSError as exc:
        raise ValueError(f"policy {path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"policy {path}: not valid YAML ({exc})") from None
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ValueError(f"invalid policy {path}:\n  " + "\n  ".join(lines)) from None
