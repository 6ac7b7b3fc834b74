"""The native fast path: one C call per run instead of one Python call per step.

``NativeFmu`` drives an FMI 2.0 co-simulation FMU's binary through the native
driver (physics/cdriver/twin_driver.c), which steps it and reduces the KPI
outputs in C on the same sampling grid as ``Fmu.simulate``. The fmpy path
stays the reference it is tested against.
"""

from __future__ import annotations

import ctypes as C
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physics._spec_checks import MAX_STEPS
from physics.fmu._adapter import Fmu
from physics.fmu._build import build_driver, fmi3_platform, fmi_platform
from physics.fmu._errors import SimulationError

_KINDS = {"Real": 0, "Integer": 1, "Enumeration": 1, "Boolean": 2}
# FMI 3.0 types the driver reads and sets (kind 3: Int64, set only, for enumerations).
_KINDS3 = {"Float64": 0, "Int32": 1, "Boolean": 2, "Enumeration": 3, "Int64": 3}
_REDUCTIONS = {
    "final": 0,
    "max": 1,
    "min": 2,
    "max_abs": 3,
    "mean": 4,
    "integral": 5,
    "time_above": 6,
}
_FUNCTIONS = (
    "fmi2Reset",
    "fmi2SetupExperiment",
    "fmi2EnterInitializationMode",
    "fmi2Set",
    "fmi2ExitInitializationMode",
    "fmi2DoStep",
    "fmi2Get",
)

_LIB: Any = None


def _library() -> Any:
    global _LIB
    if _LIB is None:
        lib = C.CDLL(str(build_driver()))
        lib.twd_open.restype = C.c_void_p
        lib.twd_open.argtypes = [
            C.c_char_p,
            C.c_char_p,
            C.c_char_p,
            C.c_char_p,
            C.c_int,
            C.c_char_p,
            C.c_size_t,
        ]
        lib.twd_close.argtypes = [C.c_void_p]
        lib.twd_close.restype = None
        lib.twd_run.restype = C.c_int
        _LIB = lib
    return _LIB


def _array(ctype: Any, values: Sequence[Any]) -> Any:
    return (ctype * max(1, len(values)))(*values)


@dataclass(frozen=True)
class NativeRun:
    kpis: list[float]
    step_seconds: float  # time spent inside fmi2DoStep
    time: np.ndarray | None = None
    samples: dict[str, np.ndarray] | None = None


class NativeFmu:
    """Runs of one FMU through the native driver; reuses ``fmu``'s extracted files."""

    def __init__(self, fmu: Fmu) -> None:
        md = fmu.model_description
        self.fmu = fmu
        self.fmi3 = fmu.fmi3
        self._kinds = _KINDS3 if self.fmi3 else _KINDS
        ident = md.coSimulation.modelIdentifier
        suffix = {"darwin64": ".dylib", "win64": ".dll"}.get(fmi_platform(), ".so")
        platform = fmi3_platform() if self.fmi3 else fmi_platform()
        self._binary = fmu._dir / "binaries" / platform / (ident + suffix)
        # FMI 3.0 passes the resources folder as a path ending in a separator, 2.0 as a URI.
        resources = fmu._dir / "resources"
        self._resources = f"{resources}/" if self.fmi3 else resources.as_uri()
        self._handle: Any = None
        self._plans: dict[tuple[str, ...], Any] = {}
        self._handles: dict[tuple[tuple[str, ...], tuple[str, ...]], bool] = {}
        _library()  # built (once, cached) and loaded now, not inside the first timed run

    def handles(self, start_values: Mapping[str, Any], outputs: Sequence[str] = ()) -> bool:
        """Whether this run's variables have types the driver sets and reads (always for
        FMI 2.0); the runner takes fmpy's loop for the others."""
        key = (tuple(start_values), tuple(outputs))
        known = self._handles.get(key)
        if known is None:
            known = self._handles[key] = native_handles(self.fmu, list(outputs), list(start_values))
        return known

    def _open(self) -> Any:
        if self._handle is None:
            err = C.create_string_buffer(1024)
            handle = _library().twd_open(
                str(self._binary).encode(),
                self.fmu.guid.encode(),
                self.fmu.name.encode(),
                self._resources.encode(),
                int(self.fmi3),
                err,
                len(err),
            )
            if not handle:
                raise SimulationError(
                    f"{self.fmu.name}: {err.value.decode()}",
                    fmu=self.fmu.name,
                    function="fmi3InstantiateCoSimulation" if self.fmi3 else "fmi2Instantiate",
                )
            self._handle = handle
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            _library().twd_close(C.c_void_p(self._handle))
            self._handle = None

    def _outputs(self, names: tuple[str, ...]) -> tuple[list[str], list[Any], list[int]]:
        """Outputs grouped Real, Integer, Boolean (the driver's order), cached per name set."""
        plan = self._plans.get(names)
        if plan is None:
            by_kind: dict[int, list[str]] = {0: [], 1: [], 2: []}
            for n in names:
                by_kind[self._kinds[self.fmu.variable(n).type]].append(n)
            ordered = by_kind[0] + by_kind[1] + by_kind[2]
            vrs = [
                _array(C.c_uint, [self.fmu.variable(n).valueReference for n in by_kind[k]])
                for k in (0, 1, 2)
            ]
            plan = (ordered, vrs, [len(by_kind[k]) for k in (0, 1, 2)])
            self._plans[names] = plan
        return plan

    def run(
        self,
        start_values: Mapping[str, Any],
        stop_time: float,
        *,
        step_size: float,
        output_interval: float,
        kpis: Sequence[tuple[str, str, float | None]],
        trajectory: Sequence[str] = (),
        start_time: float = 0.0,
    ) -> NativeRun:
        """One run from ``start_time`` to ``stop_time``; ``kpis`` are (variable, reduction,
        limit). Raises SimulationError."""
        every = round(output_interval / step_size)
        names = tuple(dict.fromkeys([*(k[0] for k in kpis), *trajectory]))
        ordered, vrs, counts = self._outputs(names)
        index = {n: i for i, n in enumerate(ordered)}
        start = [(self.fmu.variable(k), v) for k, v in start_values.items()]
        steps = (stop_time - start_time) / step_size
        if not (math.isfinite(steps) and steps <= MAX_STEPS):  # refused at load; never truncated
            raise SimulationError(
                f"stop time {stop_time:g} s at step size {step_size:g} s is {steps:.3g} steps, "
                f"more than {MAX_STEPS:.0e}",
                time=start_time,
            )
        n_steps = max(1, math.ceil(steps - 1e-9))
        max_samples = (n_steps - 1) // every + 2 if trajectory else 0
        samples = (C.c_double * (max_samples * (len(ordered) + 1)))() if trajectory else None
        kpi_value = (C.c_double * max(1, len(kpis)))()
        n_samples, step_seconds = C.c_size_t(), C.c_double()
        fail_function, fail_output, fail_time = C.c_int(), C.c_long(-1), C.c_double()
        err = C.create_string_buffer(1024)
        rc = _library().twd_run(
            C.c_void_p(self._open()),
            C.c_size_t(len(start)),
            _array(C.c_uint, [v.valueReference for v, _ in start]),
            _array(C.c_int, [self._kinds[v.type] for v, _ in start]),
            _array(C.c_double, [float(x) for _, x in start]),
            C.c_double(start_time),
            C.c_double(stop_time),
            C.c_double(step_size),
            C.c_long(every),
            C.c_size_t(counts[0]),
            vrs[0],
            C.c_size_t(counts[1]),
            vrs[1],
            C.c_size_t(counts[2]),
            vrs[2],
            C.c_size_t(len(kpis)),
            _array(C.c_int, [index[k[0]] for k in kpis]),
            _array(C.c_int, [_REDUCTIONS[k[1]] for k in kpis]),
            _array(C.c_double, [math.nan if k[2] is None else float(k[2]) for k in kpis]),
            kpi_value,
            samples,
            C.c_size_t(max_samples),
            C.byref(n_samples),
            C.byref(step_seconds),
            C.byref(fail_function),
            C.byref(fail_output),
            C.byref(fail_time),
            err,
            C.c_size_t(len(err)),
        )
        name = self.fmu.name
        if rc == 1:
            function = _FUNCTIONS[fail_function.value]
            if self.fmi3:  # the same step of the run, by its FMI 3.0 name
                function = _FMI3_NAMES.get(function, function.replace("fmi2", "fmi3"))
            self.close()  # the instance may be unusable: the next run instantiates anew
            raise SimulationError(
                f"{name} in {function} at t = {fail_time.value:g}: "
                f"{err.value.decode(errors='replace')}",
                fmu=name,
                function=function,
                status=3,
                time=fail_time.value,
            )
        if rc == 2:
            output = ordered[fail_output.value]
            raise SimulationError(
                f"{name}: output {output} is {err.value.decode()} at t = {fail_time.value:g}",
                kind="nan",
                fmu=name,
                time=fail_time.value,
            )
        result = NativeRun(list(kpi_value)[: len(kpis)], step_seconds.value)
        if trajectory:
            rows = np.ctypeslib.as_array(samples).reshape(max_samples, len(ordered) + 1)
            rows = rows[: n_samples.value]
            cols = {n: rows[:, 1 + index[n]].copy() for n in trajectory}
            result = NativeRun(result.kpis, result.step_seconds, rows[:, 0].copy(), cols)
        return result


_FMI3_NAMES = {"fmi2SetupExperiment": "fmi3EnterInitializationMode"}


def native_binary_exists(fmu: Fmu) -> bool:
    """Whether the native driver can step this FMU: co-simulation (model exchange runs
    through CVode in ``Fmu.simulate``) with a binary for this platform."""
    md = fmu.model_description
    if fmu.model_exchange:
        return False
    ident = md.coSimulation.modelIdentifier
    platform = fmi3_platform() if fmu.fmi3 else fmi_platform()
    return any(
        (Path(fmu._dir) / "binaries" / platform / (ident + s)).is_file()
        for s in (".so", ".dylib", ".dll")
    )


def native_handles(fmu: Fmu, outputs: Sequence[str], inputs: Sequence[str]) -> bool:
    """Whether the driver can read these outputs and set these inputs (FMI 3.0: Float64,
    Int32 and Boolean outputs; those and Int64 / Enumeration inputs; FMI 2.0: all)."""
    if not fmu.fmi3:
        return True
    return all(fmu.variable(n).type in ("Float64", "Int32", "Boolean") for n in outputs) and all(
        fmu.variable(n).type in _KINDS3 for n in inputs
    )
