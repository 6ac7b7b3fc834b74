"""A small adapter over fmpy: the only module that talks to an FMU.

Extract once, read the model description once, instantiate once and reset
between runs (as fmpy's own efficient-loops example advises). FMI failures
become ``SimulationError`` carrying the FMI function, its status, the model
time and what the FMU logged.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physics.fmu._errors import SimulationError
from physics.variables import VariableInfo, catalogue_from_model_description

# A piecewise-linear input profile: times (s) and values.
Profile = tuple[Sequence[float], Sequence[float]]


@dataclass(frozen=True)
class Trajectories:
    """Sampled outputs of one run: ``time`` plus one array per variable."""

    time: np.ndarray
    values: Mapping[str, np.ndarray]
    units: Mapping[str, str | None]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.time if name == "time" else self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"time": self.time, **self.values}

    def to_csv(self, path: str | Path) -> None:
        """Write one row per sample; the header carries the units: ``name [unit]``."""
        names = list(self.values)
        header = ["time [s]"] + [
            f"{n} [{self.units[n]}]" if self.units.get(n) else n for n in names
        ]
        columns = [self.time] + [self.values[n] for n in names]
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in zip(*columns, strict=True):
                writer.writerow([_csv_value(v) for v in row])


def _csv_value(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# fmpy's native logger proxy formats the variadic message but keeps the Python
# logger in ONE process-wide slot: registering a per-FMU closure leaves that slot
# dangling once the closure is collected (a segfault at the next message). So
# one dispatcher lives for the whole process and routes each message by the
# componentEnvironment token of its instance.
_SINKS: dict[int, deque[str]] = {}
_CALLBACKS: dict[int, Any] = {}
_DISPATCHER: Any = None


def _dispatch(env: Any, instance: Any, status: int, category: Any, message: Any) -> None:
    text = message.decode("utf-8", "replace") if message else ""
    sink = _SINKS.get(env or 0)
    if sink is not None:
        sink.append(text)
    else:  # an instance made elsewhere (fmpy.simulate_fmu): print as fmpy would
        from fmpy.fmi2 import printLogMessage

        printLogMessage(env, instance, status, category, message)


def _callbacks_for(sink: deque[str]) -> Any:
    """A callbacks struct whose log messages land in ``sink``."""
    global _DISPATCHER
    from ctypes import byref

    from fmpy.fmi2 import (
        defaultCallbacks,
        fmi2CallbackFunctions,
        fmi2CallbackLoggerTYPE,
    )
    from fmpy.logging import addLoggerProxy

    if _DISPATCHER is None:
        _DISPATCHER = fmi2CallbackLoggerTYPE(_dispatch)
    token = id(sink)
    callbacks = fmi2CallbackFunctions()
    callbacks.logger = _DISPATCHER
    # FMUs exported by other tools allocate through these.
    callbacks.allocateMemory = defaultCallbacks.allocateMemory
    callbacks.freeMemory = defaultCallbacks.freeMemory
    callbacks.componentEnvironment = token
    addLoggerProxy(byref(callbacks))
    _SINKS[token] = sink
    _CALLBACKS[token] = callbacks  # the struct must outlive the instance
    return callbacks


def _release_callbacks(sink: deque[str]) -> None:
    _SINKS.pop(id(sink), None)
    _CALLBACKS.pop(id(sink), None)


class Fmu:
    """One FMI 2.0 co-simulation FMU, ready to run many times.

    >>> with Fmu("spindle.fmu") as fmu:
    ...     traj = fmu.simulate({"spindle_speed": 6000.0}, stop_time=600.0, step_size=1.0)
    """

    def __init__(self, path: str | Path) -> None:
        import fmpy

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"FMU not found: {self.path}")
        self.sha256 = file_sha256(self.path)
        self.model_description = fmpy.read_model_description(str(self.path))
        md = self.model_description
        if not md.fmiVersion.startswith("2."):
            raise SimulationError(
                f"{self.path.name}: FMI {md.fmiVersion} is not supported yet (FMI 2.0 only)",
                fmu=self.path.name,
            )
        if md.coSimulation is None:
            raise SimulationError(f"{self.path.name}: not a co-simulation FMU", fmu=self.path.name)
        self.name = md.modelName
        self.guid = md.guid
        self.catalogue: dict[str, VariableInfo] = catalogue_from_model_description(md)
        self._vars = {v.name: v for v in md.modelVariables}
        self._dir = Path(tempfile.mkdtemp(prefix=f"twin-{self.path.stem}-"))
        fmpy.extract(str(self.path), str(self._dir))
        self._slave: Any = None
        self._fresh = True
        self._log: deque[str] = deque(maxlen=50)

    # -- lifecycle ----------------------------------------------------------------

    def _instance(self) -> Any:
        if self._slave is None:
            from fmpy.fmi2 import FMU2Slave

            md = self.model_description
            slave = FMU2Slave(
                guid=md.guid,
                unzipDirectory=str(self._dir),
                modelIdentifier=md.coSimulation.modelIdentifier,
                instanceName=self.name,
            )
            slave.instantiate(callbacks=_callbacks_for(self._log))
            self._slave = slave
            self._fresh = True
        return self._slave

    def close(self) -> None:
        if self._slave is not None:
            with contextlib.suppress(Exception):
                self._slave.terminate()
            self._slave.freeInstance()
            self._slave = None
        _release_callbacks(self._log)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Fmu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_dir", None) is not None and self._dir.exists():
            shutil.rmtree(self._dir, ignore_errors=True)

    # -- values -----------------------------------------------------------------

    def variable(self, name: str) -> Any:
        try:
            return self._vars[name]
        except KeyError:
            raise SimulationError(
                f"{self.name}: no variable named {name!r}", fmu=self.name
            ) from None

    def _set(self, slave: Any, values: Mapping[str, Any]) -> None:
        groups: dict[str, tuple[list[int], list[Any]]] = {}
        for name, value in values.items():
            v = self.variable(name)
            kind = "Integer" if v.type == "Enumeration" else v.type
            vrs, vals = groups.setdefault(kind, ([], []))
            vrs.append(v.valueReference)
            vals.append(value)
        for kind, (vrs, vals) in groups.items():
            if kind == "Real":
                slave.setReal(vrs, [float(x) for x in vals])
            elif kind == "Integer":
                slave.setInteger(vrs, [int(x) for x in vals])
            elif kind == "Boolean":
                slave.setBoolean(vrs, [bool(x) for x in vals])
            else:
                slave.setString(vrs, [str(x) for x in vals])

    def default_outputs(self) -> list[str]:
        return [v.name for v in self.model_description.modelVariables if v.causality == "output"]

    # -- running ------------------------------------------------------------------

    def simulate(
        self,
        start_values: Mapping[str, Any],
        stop_time: float,
        *,
        step_size: float,
        output_interval: float | None = None,
        outputs: Sequence[str] | None = None,
        inputs: Mapping[str, Profile] | None = None,
    ) -> Trajectories:
        """Run from t = 0 to ``stop_time`` and sample ``outputs`` every ``output_interval``.

        ``start_values`` are set during initialization; ``inputs`` are
        piecewise-linear profiles set before each communication step.
        """
        if not (stop_time > 0 and math.isfinite(stop_time)):
            raise ValueError(f"stop_time: {stop_time} must be a finite number > 0")
        if not step_size > 0:
            raise ValueError(f"step_size: {step_size} must be > 0")
        interval = output_interval or step_size
        every = round(interval / step_size)
        if every < 1 or abs(every * step_size - interval) > 1e-9 * interval:
            raise ValueError(
                f"output_interval: {interval} is not a multiple of step_size {step_size}"
            )
        names = list(outputs) if outputs is not None else self.default_outputs()
        out_vars = [self.variable(n) for n in names]
        profiles = {
            k: (np.asarray(t, float), np.asarray(v, float)) for k, (t, v) in (inputs or {}).items()
        }
        for name in profiles:
            if self.variable(name).causality != "input":
                raise ValueError(f"inputs.{name}: not an input of {self.name}")

        n_steps = max(1, math.ceil(stop_time / step_size - 1e-9))
        n_samples = (n_steps - 1) // every + 2
        time = np.empty(n_samples)
        data = np.empty((len(names), n_samples))
        readers = self._readers(out_vars)

        slave = self._instance()
        self._log.clear()
        t = 0.0
        try:
            if not self._fresh:
                slave.reset()
            self._fresh = False
            slave.setupExperiment(startTime=0.0, stopTime=stop_time)
            slave.enterInitializationMode()
            initial = dict(start_values)
            initial.update({k: float(np.interp(0.0, *p)) for k, p in profiles.items()})
            self._set(slave, initial)
            slave.exitInitializationMode()
            k = 0
            self._sample(slave, readers, data[:, k])
            time[k] = t
            for i in range(n_steps):
                h = min(step_size, stop_time - i * step_size) if i == n_steps - 1 else step_size
                t = i * step_size
                if profiles:
                    self._set(slave, {n: float(np.interp(t, *p)) for n, p in profiles.items()})
                slave.doStep(currentCommunicationPoint=t, communicationStepSize=h)
                if (i + 1) % every == 0 or i == n_steps - 1:
                    k += 1
                    self._sample(slave, readers, data[:, k])
                    time[k] = t + h
        except SimulationError:
            raise
        except Exception as exc:
            raise self._error(exc, t) from exc
        time, data = time[: k + 1], data[:, : k + 1]
        bad = ~np.isfinite(data)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise SimulationError(
                f"{self.name}: output {names[row]} is {data[row, col]} at t = {time[col]:g}",
                kind="nan",
                fmu=self.name,
                time=float(time[col]),
                log=tuple(self._log),
            )
        values = {}
        for j, v in enumerate(out_vars):
            column = data[j]
            if v.type == "Boolean":
                values[v.name] = column.astype(bool)
            elif v.type in ("Integer", "Enumeration"):
                values[v.name] = column.astype(np.int64)
            else:
                values[v.name] = column
        units = {v.name: self.catalogue[v.name].unit for v in out_vars}
        return Trajectories(time=time, values=values, units=units)

    def _readers(self, out_vars: list[Any]) -> list[tuple[str, list[int], list[int]]]:
        """Group outputs by type: one FMI get call per type per sample."""
        groups: dict[str, tuple[list[int], list[int]]] = {}
        for row, v in enumerate(out_vars):
            kind = "Integer" if v.type == "Enumeration" else v.type
            rows, vrs = groups.setdefault(kind, ([], []))
            rows.append(row)
            vrs.append(v.valueReference)
        return [(kind, rows, vrs) for kind, (rows, vrs) in groups.items()]

    @staticmethod
    def _sample(
        slave: Any, readers: list[tuple[str, list[int], list[int]]], out: np.ndarray
    ) -> None:
        for kind, rows, vrs in readers:
            getter = {
                "Real": slave.getReal,
                "Integer": slave.getInteger,
                "Boolean": slave.getBoolean,
            }[kind]
            out[rows] = getter(vrs)

    def _error(self, exc: Exception, t: float) -> SimulationError:
        function = getattr(exc, "function", None)
        status = getattr(exc, "status", None)
        log = tuple(self._log)
        detail = log[-1] if log else str(exc)
        # The instance is unusable after an error: drop it, the next run makes a new one.
        with contextlib.suppress(Exception):
            self._slave.freeInstance()
        self._slave = None
        where = f" in {function}" if function else ""
        return SimulationError(
            f"{self.name}{where} at t = {t:g}: {detail}",
            fmu=self.name,
            function=function,
            status=status,
            time=t,
            log=log,
        )
