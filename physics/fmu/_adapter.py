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
import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physics._spec_checks import MAX_STEPS
from physics.fmu._errors import FmuFileError, SimulationError
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

    def every(self, k: int) -> Trajectories:
        """Every k-th sample and the last: a run sampled at every step, on its output grid
        (the samples after k, 2k, ... steps and after the final, possibly shorter, one)."""
        n = len(self.time)
        index = list(range(0, n, k))
        if index[-1] != n - 1:
            index.append(n - 1)
        return Trajectories(
            self.time[index], {name: v[index] for name, v in self.values.items()}, self.units
        )

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


# Variable types by the kind of value they hold, FMI 2 and FMI 3 names.
_KIND = {
    "Real": "real",
    "Float64": "real",
    "Float32": "real",
    "Boolean": "bool",
    "Integer": "int",
    "Enumeration": "int",
    "Int8": "int",
    "Int16": "int",
    "Int32": "int",
    "Int64": "int",
    "UInt8": "int",
    "UInt16": "int",
    "UInt32": "int",
    "UInt64": "int",
    "String": "str",
}
_CONVERT = {"real": float, "int": int, "bool": bool, "str": str}


def _access(slave: Any, vtype: str, verb: str, fmi3: bool) -> tuple[Any, Any]:
    """The fmpy getter or setter for a variable type, and how to convert values for it."""
    if fmi3:
        # FMI 3 enumerations are Int64-valued.
        name = "Int64" if vtype == "Enumeration" else vtype
    else:
        name = "Integer" if vtype == "Enumeration" else vtype
    return getattr(slave, verb + name), _CONVERT[_KIND.get(vtype, "real")]


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


_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_UNZIPPED_BYTES = 4 << 30  # an FMU larger than this unzipped is refused (zip bombs)
MAX_MEMBERS = 100_000


def read_description(path: Path) -> Any:
    """The model description of an FMU file, checked for what this runner needs.

    FmuFileError names the file and the problem: not a zip, an unsafe or oversized
    archive, no or invalid modelDescription.xml, an FMI version other than 2.0 / 3.0,
    neither a co-simulation nor a model-exchange interface, a modelIdentifier that is
    not a C identifier (it names the library to load: one with "../" would load a file
    outside the FMU).
    """
    import zipfile

    import fmpy

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise FmuFileError(f"{path}: not an FMU (not a zip archive: {exc})") from None
    if len(members) > MAX_MEMBERS:
        raise FmuFileError(
            f"{path}: {len(members):,} files in the archive, more than {MAX_MEMBERS:,}"
        )
    size = sum(m.file_size for m in members)
    if size > MAX_UNZIPPED_BYTES:
        raise FmuFileError(
            f"{path}: {size / 2**30:.1f} GiB unzipped, more than {MAX_UNZIPPED_BYTES / 2**30:g} GiB"
        )
    for m in members:
        parts = Path(m.filename).parts
        if m.filename.startswith(("/", "\\")) or ".." in parts:
            raise FmuFileError(f"{path}: the archive member {m.filename!r} points outside the FMU")
    if "modelDescription.xml" not in {m.filename for m in members}:
        raise FmuFileError(f"{path}: not an FMU (no modelDescription.xml in the archive)")
    from xml.etree import ElementTree

    try:
        with zipfile.ZipFile(path) as archive:
            root = ElementTree.fromstring(archive.read("modelDescription.xml"))
    except ElementTree.ParseError as exc:
        raise FmuFileError(f"{path}: modelDescription.xml is not valid XML ({exc})") from None
    version = root.get("fmiVersion")
    if version != "2.0" and not str(version).startswith("3."):
        raise FmuFileError(f"{path}: FMI {version} is not supported (FMI 2.0 and 3.0 are)")
    try:
        md = fmpy.read_model_description(str(path))
    except Exception as exc:  # fmpy's schema validation: one line per problem
        lines = (line.strip(" -").rstrip(":") for line in str(exc).splitlines())
        detail = "; ".join(line for line in lines if line)
        raise FmuFileError(f"{path}: modelDescription.xml is not valid ({detail})") from None
    if md.coSimulation is None and md.modelExchange is None:
        raise FmuFileError(f"{path}: neither a co-simulation nor a model-exchange interface")
    for interface in (md.coSimulation, md.modelExchange):
        mid = None if interface is None else interface.modelIdentifier
        if interface is not None and not _C_IDENTIFIER.match(mid or ""):
            raise FmuFileError(f"{path}: modelIdentifier {mid!r} is not a C identifier")
    return md


# The two FMI interfaces, as a spec names them (fmu.interface).
INTERFACES = ("co_simulation", "model_exchange")
# Model exchange: CVode's relative tolerance unless the spec sets fmu.tolerance.
DEFAULT_TOLERANCE = 1e-6
# Model exchange: events in one communication step beyond this are a chattering model.
MAX_EVENTS_PER_STEP = 10_000


def pick_interface(md: Any, wanted: str | None, path: Path) -> str:
    """The interface a run uses: ``wanted``, else co-simulation when the FMU has it (its
    exporter's own solver), else model exchange (integrated here by CVode). FmuFileError
    when the FMU lacks the one wanted."""
    have = [
        name
        for name, interface in zip(INTERFACES, (md.coSimulation, md.modelExchange), strict=True)
        if interface is not None
    ]
    if wanted is not None and wanted not in INTERFACES:
        raise ValueError(f"fmu.interface: {wanted!r} is not one of {', '.join(INTERFACES)}")
    chosen = wanted or have[0]
    if chosen not in have:
        raise FmuFileError(
            f"{path}: no {chosen.replace('_', '-')} interface (fmu.interface); it has "
            f"{' and '.join(h.replace('_', '-') for h in have)}"
        )
    return chosen


class _NoInput:
    """fmpy's CVodeSolver applies inputs at each root-function call; the runner sets its
    inputs itself, at communication points."""

    def apply(self, time: float, continuous: bool = True, discrete: bool = True) -> None:
        pass


_UNPACKED = ".unpacked"  # written last: the folder holds the whole FMU


def unpack_once(path: str | Path, sha256: str) -> Path:
    """The FMU extracted into the cache (``<cache>/unpacked/<sha256>``), once for every
    process of every study that runs it: workers do not extract their own copies (and a
    killed worker leaves nothing behind). Extracted to a temporary sibling and renamed,
    so a folder is either complete or absent. Call after ``read_description`` checked the
    archive's size and member names."""
    import fmpy

    from physics.fmu._build import cache_dir

    target = cache_dir().parent / "unpacked" / sha256[:32]
    if (target / _UNPACKED).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fmpy.extract(str(path), str(tmp))
        (tmp / _UNPACKED).write_text(f"{path}\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another process got there first: use its copy
            if not (target / _UNPACKED).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class _Run:
    """One run as ``Fmu.simulate`` lays it out for the interface's loop: what to set and
    when, where the samples go, and ``t``, the model time reached (for error messages)."""

    initial: dict[str, Any]
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray]]
    start_time: float
    stop_time: float
    step_size: float
    n_steps: int
    every: int  # communication steps per sample
    readers: list[tuple[str, list[int], list[int]]]
    time: np.ndarray
    data: np.ndarray
    t: float


class Fmu:
    """One FMI 2.0 / 3.0 FMU, ready to run many times: co-simulation (the FMU steps
    itself) or model exchange (CVode integrates it, events located by root
    finding).

    >>> with Fmu("spindle.fmu") as fmu:
    ...     traj = fmu.simulate({"spindle_speed": 6000.0}, stop_time=600.0, step_size=1.0)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        unpacked: str | Path | None = None,
        interface: str | None = None,
        tolerance: float | None = None,
    ) -> None:
        """``unpacked``: a folder ``unpack_once`` filled with this FMU, shared by the
        workers of a study and left in place on close; else a private temporary copy.
        ``interface``: "co_simulation" or "model_exchange" (``pick_interface``);
        ``tolerance``: CVode's relative tolerance for model exchange."""
        import fmpy

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"FMU not found: {self.path}")
        self.sha256 = file_sha256(self.path)
        self.model_description = read_description(self.path)
        md = self.model_description
        self.interface = pick_interface(md, interface, self.path)
        self.model_exchange = self.interface == "model_exchange"
        self.tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
        self.fmi3 = md.fmiVersion.startswith("3.")
        self.name = md.modelName
        self.guid = md.guid
        self.catalogue: dict[str, VariableInfo] = catalogue_from_model_description(md)
        self._vars = {v.name: v for v in md.modelVariables}
        self._owns_dir = not (unpacked is not None and (Path(unpacked) / _UNPACKED).is_file())
        if self._owns_dir:  # (a Dask worker on another machine has no shared copy)
            self._dir = Path(tempfile.mkdtemp(prefix=f"twin-{self.path.stem}-"))
            fmpy.extract(str(self.path), str(self._dir))
        else:
            self._dir = Path(unpacked)  # type: ignore[arg-type]
        self._slave: Any = None
        self._fresh = True
        self._log: deque[str] = deque(maxlen=50)

    # -- lifecycle ----------------------------------------------------------------

    def binary(self) -> Path:
        """The shared library this platform loads (it may not exist)."""
        import fmpy

        platform = fmpy.platform_tuple if self.fmi3 else fmpy.platform
        return self._dir / "binaries" / platform / f"{self.identifier}{fmpy.sharedLibraryExtension}"

    @property
    def identifier(self) -> str:
        """The modelIdentifier (the library's name) of the interface in use."""
        md = self.model_description
        interface = md.modelExchange if self.model_exchange else md.coSimulation
        return str(interface.modelIdentifier)

    def check_runnable(self) -> None:
        """Load the binary and instantiate once: FmuFileError when that is impossible, so a
        study refuses the FMU before any run rather than write a row of errors per run."""
        lib = self.binary()
        if not lib.is_file():
            found = sorted(p.name for p in (self._dir / "binaries").glob("*") if p.is_dir())
            raise FmuFileError(
                f"{self.path}: no binary for this platform ({lib.relative_to(self._dir)}); "
                f"it has {'binaries for ' + ', '.join(found) if found else 'no binaries'}"
            )
        cwd = os.getcwd()
        try:
            self._instance()
        except Exception as exc:
            # fmpy changes into the binary's folder to load it and, when loading fails,
            # stays there: go back, or every later path is resolved against that folder.
            os.chdir(cwd)
            raise FmuFileError(
                f"{self.path}: its binary {lib.relative_to(self._dir)} does not load or "
                f"instantiate ({type(exc).__name__}: {exc})"
            ) from None

    def _instance(self) -> Any:
        if self._slave is None:
            md = self.model_description
            args = dict(
                guid=md.guid,
                unzipDirectory=str(self._dir),
                modelIdentifier=self.identifier,
                instanceName=self.name,
            )
            if self.model_exchange and self.fmi3:
                from fmpy.fmi3 import FMU3Model

                slave = FMU3Model(**args)
                slave.instantiate(logMessage=self._log_fmi3)
            elif self.model_exchange:
                from fmpy.fmi2 import FMU2Model

                slave = FMU2Model(**args)
                slave.instantiate(callbacks=_callbacks_for(self._log))
            elif self.fmi3:
                from fmpy.fmi3 import FMU3Slave

                slave = FMU3Slave(**args)
                # FMI 3 messages arrive formatted: no proxy, the callback lives on the slave.
                slave.instantiate(logMessage=self._log_fmi3)
            else:
                from fmpy.fmi2 import FMU2Slave

                slave = FMU2Slave(**args)
                slave.instantiate(callbacks=_callbacks_for(self._log))
            self._slave = slave
            self._fresh = True
        return self._slave

    def _log_fmi3(self, env: Any, status: int, category: Any, message: Any) -> None:
        self._log.append(message.decode("utf-8", "replace") if message else "")

    def close(self) -> None:
        if self._slave is not None:
            with contextlib.suppress(Exception):
                self._slave.terminate()
            self._slave.freeInstance()
            self._slave = None
        _release_callbacks(self._log)
        if self._owns_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Fmu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_owns_dir", False) and self._dir.exists():
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
            vrs, vals = groups.setdefault(v.type, ([], []))
            vrs.append(v.valueReference)
            vals.append(value)
        for vtype, (vrs, vals) in groups.items():
            setter, convert = _access(slave, vtype, "set", self.fmi3)
            setter(vrs, [convert(x) for x in vals])

    def default_outputs(self) -> list[str]:
        """The outputs a run samples unless told otherwise: scalar numbers only (a String,
        Binary or array output is listed by ``fmu info`` but not sampled)."""
        return [
            name
            for name, v in self.catalogue.items()
            if v.causality == "output" and v.scalar_number
        ]

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
        start_time: float = 0.0,
    ) -> Trajectories:
        """Run from ``start_time`` to ``stop_time`` and sample ``outputs`` every
        ``output_interval``.

        ``start_values`` are set during initialization; ``inputs`` are
        piecewise-linear profiles set before each communication step.
        """
        if not (stop_time > start_time and math.isfinite(stop_time)):
            raise ValueError(
                f"stop_time: {stop_time} must be a finite number after the start time {start_time}"
            )
        span = stop_time - start_time
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

        if not span / step_size <= MAX_STEPS:
            raise ValueError(
                f"step_size: {step_size} up to stop time {stop_time} is "
                f"{span / step_size:.3g} steps, more than {MAX_STEPS:.0e}"
            )
        n_steps = max(1, math.ceil(span / step_size - 1e-9))
        n_samples = (n_steps - 1) // every + 2
        time = np.empty(n_samples)
        data = np.empty((len(names), n_samples))
        readers = self._readers(out_vars)

        slave = self._instance()
        self._log.clear()
        initial = dict(start_values)
        initial.update({k: float(np.interp(start_time, *p)) for k, p in profiles.items()})
        run = _Run(initial, profiles, start_time, stop_time, step_size, n_steps, every,
                   readers, time, data, t=start_time)  # fmt: skip
        try:
            if not self._fresh:
                slave.reset()
            self._fresh = False
            k = (self._run_me if self.model_exchange else self._run_cs)(slave, run)
        except SimulationError:
            raise
        except Exception as exc:
            raise self._error(exc, run.t) from exc
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
            kind = _KIND.get(v.type, "real")
            if kind == "bool":
                values[v.name] = column.astype(bool)
            elif kind == "int":
                values[v.name] = column.astype(np.int64)
            else:
                values[v.name] = column
        units = {v.name: self.catalogue[v.name].unit for v in out_vars}
        return Trajectories(time=time, values=values, units=units)

    def _run_cs(self, slave: Any, run: _Run) -> int:
        """Co-simulation: one doStep per communication step; the index of the last sample."""
        start_time, stop_time, step_size = run.start_time, run.stop_time, run.step_size
        time, data, readers, profiles = run.time, run.data, run.readers, run.profiles
        if self.fmi3:
            slave.enterInitializationMode(startTime=start_time, stopTime=stop_time)
        else:
            slave.setupExperiment(startTime=start_time, stopTime=stop_time)
            slave.enterInitializationMode()
        self._set(slave, run.initial)
        slave.exitInitializationMode()
        k = 0
        self._sample(slave, readers, data[:, k])
        time[k] = start_time
        for i in range(run.n_steps):
            t = run.t = start_time + i * step_size
            h = min(step_size, stop_time - t) if i == run.n_steps - 1 else step_size
            if profiles:
                self._set(slave, {n: float(np.interp(t, *p)) for n, p in profiles.items()})
            answer = slave.doStep(currentCommunicationPoint=t, communicationStepSize=h)
            if self.fmi3 and answer[1]:  # terminateSimulation
                raise self._terminated("fmi3DoStep", t + h)
            if (i + 1) % run.every == 0 or i == run.n_steps - 1:
                k += 1
                self._sample(slave, readers, data[:, k])
                time[k] = t + h
        return k

    def _run_me(self, model: Any, run: _Run) -> int:
        """Model exchange (FMI 2.0 or 3.0): CVode (BDF, fmpy's SUNDIALS build) integrates from one
        communication point to the next, stopping at time events and at the roots of the
        event indicators (state events) to let the FMU update its discrete states; the
        index of the last sample. Inputs change at communication points (as in
        co-simulation), and the solver restarts there."""
        from physics.fmu._cvode import Cvode, NonFiniteDerivative

        start_time, stop_time, step_size = run.start_time, run.stop_time, run.step_size
        time, data, readers, profiles = run.time, run.data, run.readers, run.profiles

        md = self.model_description
        v = "fmi3" if self.fmi3 else "fmi2"  # function names in messages
        derivatives_name = "GetContinuousStateDerivatives" if self.fmi3 else "GetDerivatives"
        if self.fmi3:
            model.enterInitializationMode(
                tolerance=self.tolerance, startTime=start_time, stopTime=stop_time
            )
        else:
            model.setupExperiment(
                tolerance=self.tolerance, startTime=start_time, stopTime=stop_time
            )
            model.enterInitializationMode()
        self._set(model, run.initial)
        model.exitInitializationMode()
        next_event = self._event_iteration(model, start_time)
        model.enterContinuousTimeMode()
        completed = bool(md.modelExchange.needsCompletedIntegratorStep)
        k = 0
        self._sample(model, readers, data[:, k])
        time[k] = start_time
        t = start_time
        solver = Cvode(
            model,
            md.numberOfContinuousStates,
            md.numberOfEventIndicators,
            start_time,
            relative_tolerance=self.tolerance,
            # As fmpy bounds it: a fiftieth of the run (a communication step at least),
            # so a long run's root finder still checks the indicators along the way.
            max_step=max(step_size, (stop_time - start_time) / 50),
        )
        with solver:
            for i in range(run.n_steps):
                t_end = stop_time if i == run.n_steps - 1 else start_time + (i + 1) * step_size
                if profiles and i > 0:
                    self._set(model, {n: float(np.interp(t, *p)) for n, p in profiles.items()})
                    solver.reset(t)
                events = 0
                while t < t_end:
                    try:
                        t, state_event = solver.step(min(t_end, next_event))
                    except NonFiniteDerivative as exc:
                        state = md.derivatives[exc.index].variable.derivative.name
                        raise SimulationError(
                            f"{self.name}: the derivative of {state} is {exc.value} at "
                            f"t = {exc.t:g}",
                            kind="nan",
                            fmu=self.name,
                            function=v + derivatives_name,
                            time=exc.t,
                            log=tuple(self._log),
                        ) from None
                    except BaseException:
                        run.t = solver.last_t
                        raise
                    run.t = t
                    step_event, terminate = (
                        model.completedIntegratorStep() if completed else (False, False)
                    )
                    if terminate:
                        raise self._terminated(v + "CompletedIntegratorStep", t)
                    if not (state_event or step_event or t >= next_event):
                        continue
                    events += 1
                    if events > MAX_EVENTS_PER_STEP:
                        raise SimulationError(
                            f"{self.name}: more than {MAX_EVENTS_PER_STEP:,} events in the "
                            f"step ending at t = {t_end:g} (a chattering model)",
                            fmu=self.name,
                            time=t,
                            log=tuple(self._log),
                        )
                    model.enterEventMode()
                    next_event = self._event_iteration(model, t)
                    model.enterContinuousTimeMode()
                    solver.reset(t)
                if (i + 1) % run.every == 0 or i == run.n_steps - 1:
                    k += 1
                    self._sample(model, readers, data[:, k])
                    time[k] = t
        return k

    def _event_iteration(self, model: Any, t: float) -> float:
        """Update discrete states until the FMU needs no more; the next time event (inf
        when none). A request to terminate is an error naming the time."""
        needed, next_time = True, math.inf
        update = model.updateDiscreteStates if self.fmi3 else model.newDiscreteStates
        for _ in range(MAX_EVENTS_PER_STEP):
            needed, terminate, _, _, defined, when = update()
            if terminate:
                name = "fmi3UpdateDiscreteStates" if self.fmi3 else "fmi2NewDiscreteStates"
                raise self._terminated(name, t)
            next_time = float(when) if defined else math.inf
            if not needed:
                return next_time
        raise SimulationError(
            f"{self.name}: the event iteration at t = {t:g} did not converge in "
            f"{MAX_EVENTS_PER_STEP:,} rounds",
            fmu=self.name,
            time=t,
            log=tuple(self._log),
        )

    def _terminated(self, function: str, t: float) -> SimulationError:
        return SimulationError(
            f"{self.name}: the FMU asked to terminate at t = {t:g}",
            fmu=self.name,
            function=function,
            time=t,
            log=tuple(self._log),
        )

    def _readers(self, out_vars: list[Any]) -> list[tuple[str, list[int], list[int]]]:
        """Group outputs by type: one FMI get call per type per sample."""
        groups: dict[str, tuple[list[int], list[int]]] = {}
        for row, v in enumerate(out_vars):
            rows, vrs = groups.setdefault(v.type, ([], []))
            rows.append(row)
            vrs.append(v.valueReference)
        return [(vtype, rows, vrs) for vtype, (rows, vrs) in groups.items()]

    def _sample(
        self, slave: Any, readers: list[tuple[str, list[int], list[int]]], out: np.ndarray
    ) -> None:
        for vtype, rows, vrs in readers:
            getter, _ = _access(slave, vtype, "get", self.fmi3)
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
