"""Run one work order on a twin: spec -> simulation case -> FMU -> KPIs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from physics.fmu import Fmu, Trajectories, fmu_for_model
from physics.kpi import compute_kpis
from physics.spec import SpecError, TwinSpec
from physics.workorder import OrderError, SimulationCase


@dataclass(frozen=True)
class OrderRun:
    case: SimulationCase
    trajectories: Trajectories
    kpis: dict[str, float]


def fmu_path_of(spec: TwinSpec) -> Path:
    """The FMU a spec names: a user file, or one of our models (built if needed)."""
    path = spec.fmu_file()
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"fmu.path: {path} does not exist")
        return path
    assert spec.fmu.model is not None  # the spec guarantees one of model | path
    return fmu_for_model(spec.fmu.model)


def open_twin(spec: TwinSpec) -> Fmu:
    """Open the spec's FMU, check the spec against its variables and that its binary
    loads here (FmuFileError otherwise)."""
    fmu = Fmu(fmu_path_of(spec), interface=spec.fmu.interface, tolerance=spec.fmu.tolerance)
    try:
        if spec.fmu.tolerance is not None and not fmu.model_exchange:
            raise SpecError(
                [
                    f"fmu.tolerance: {spec.fmu.tolerance:g} is for model exchange, and this "
                    "twin runs the FMU's co-simulation interface; set fmu.interface: "
                    "model_exchange or leave the tolerance out"
                ]
            )
        spec.check_against(fmu.catalogue)
        spec.bind_default_experiment(fmu.model_description)
        fmu.check_runnable()
    except Exception:
        fmu.close()
        raise
    return fmu


def start_time_of(spec: TwinSpec, fmu: Fmu) -> float:
    """Where the spec's runs start: ``fmu.start_time``, else the FMU's default experiment's."""
    if spec.fmu.start_time is not None:
        return spec.fmu.start_time
    exp = fmu.model_description.defaultExperiment
    return float(exp.startTime) if exp is not None and exp.startTime is not None else 0.0


def stop_before_start(spec: TwinSpec, stop: float, start: float) -> str:
    source = "fmu.start_time" if spec.fmu.start_time is not None else "the FMU's default experiment"
    return f"stop_time: {stop:g} s is not after the start time {start:g} s ({source})"


def kpi_variables(spec: TwinSpec) -> list[str]:
    return list(dict.fromkeys(k.variable for k in spec.kpis.values()))


def simulate_order(
    spec: TwinSpec,
    fmu: Fmu,
    values: Mapping[str, Any],
    quantity: Any,
    *,
    outputs: list[str] | None = None,
) -> OrderRun:
    """Validate a work order against the spec, run it, and reduce the KPIs."""
    case = spec.case_from_order(values, quantity, fmu.catalogue)
    start = start_time_of(spec, fmu)
    if not case.stop_time > start:
        raise OrderError([stop_before_start(spec, case.stop_time, start)])
    wanted = outputs if outputs is not None else fmu.default_outputs()
    names = list(dict.fromkeys([*wanted, *kpi_variables(spec)]))
    # KPIs reduce every communication step; the trajectories keep the output grid.
    steps = fmu.simulate(
        case.start_values,
        case.stop_time,
        step_size=spec.fmu.step_size,
        output_interval=spec.fmu.step_size,
        outputs=names,
        start_time=start,
    )
    traj = steps.every(round(spec.fmu.sampling_interval / spec.fmu.step_size))
    return OrderRun(case=case, trajectories=traj, kpis=compute_kpis(spec, steps.as_dict()))
