"""Run many FMU simulations in worker processes, losing nothing to a bad run.

Each worker process opens the FMU once (extract, read the description,
instantiate) and resets it between runs. The parent hands out one run at a
time per worker and watches each:

- a run past its wall-clock deadline: the worker is killed (SIGKILL) and
  replaced; the run is recorded with status ``timeout``;
- a worker that dies (a segfault in the FMU's C code, an abort): the run is
  recorded with status ``crash`` and the signal; the worker is replaced;
- an FMI error or a non-finite output: status ``error`` / ``nan`` with the
  FMU's message; the worker carries on (after re-instantiating);
- workers are recycled after ``max_runs_per_worker`` runs, or when their
  resident memory exceeds ``max_rss_mb``, before leaky FMI libraries hurt (the
  memory check follows each answer, so up to ``prefetch`` queued runs still
  finish on the old worker).

Results are yielded as they complete, in completion order.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any


class PoolOptionsError(ValueError):
    """Pool options out of range; the message names each field and its value."""


STATUSES = ("ok", "error", "nan", "timeout", "crash", "invalid")
# Bounds of PoolOptions: a worker is a process with its own FMU instance (a few MB to
# GB each); a run that may take longer than a day needs a batch system, not a watchdog.
MAX_WORKERS = 256
MAX_TIMEOUT = 86_400.0
# A worker's first message: its FMU is open and it takes runs (--timeout counts from here).
READY = "ready"
STARTUP_TIMEOUT = 300.0


@dataclass(frozen=True)
class KpiDef:
    name: str
    variable: str
    reduction: str
    limit: float | None = None


@dataclass(frozen=True)
class SimulationJob:
    """What every run of a study shares; sent once to each worker."""

    fmu_path: str
    step_size: float
    output_interval: float
    kpis: tuple[KpiDef, ...]
    trajectory_outputs: tuple[str, ...] = ()
    # "native": step and reduce in C (FMI 2.0 or 3.0 with a binary for this platform, else
    # falls back to fmpy); "fmpy": fmpy's Python stepping loop, the reference.
    engine: str = "native"
    # Where every run starts [s]: the spec's fmu.start_time, else the FMU's default
    # experiment's; a task's stop_time is absolute, after it.
    start_time: float = 0.0
    # The FMU unpacked once for the study (physics.fmu.unpack_once); None: each worker
    # extracts its own copy.
    unpacked: str | None = None
    # The FMI interface ("co_simulation" / "model_exchange") and, for model exchange,
    # CVode's relative tolerance (physics.fmu.Fmu).
    interface: str | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class Task:
    run_id: int
    start_values: dict[str, Any]
    stop_time: float


@dataclass
class RunResult:
    run_id: int
    status: str
    message: str = ""
    kpis: dict[str, float] = field(default_factory=dict)
    wall_time: float = 0.0
    trajectory: dict[str, Any] | None = None


# ---- inside a worker process ---------------------------------------------------------


def _run_one(fmu: Any, native: Any, job: SimulationJob, task: Task) -> RunResult:
    from physics.fmu import SimulationError
    from physics.kpi import reduce

    t0 = time.perf_counter()
    kpis: dict[str, float]
    trajectory = None
    try:
        outputs = [*(k.variable for k in job.kpis), *job.trajectory_outputs]
        if native is not None and native.handles(task.start_values, outputs):
            run = native.run(
                task.start_values,
                task.stop_time,
                step_size=job.step_size,
                output_interval=job.output_interval,
                kpis=[(k.variable, k.reduction, k.limit) for k in job.kpis],
                trajectory=job.trajectory_outputs,
                start_time=job.start_time,
            )
            kpis = {k.name: v for k, v in zip(job.kpis, run.kpis, strict=True)}
            if job.trajectory_outputs:
                trajectory = {"time": run.time, **(run.samples or {})}
        else:
            names = list(dict.fromkeys([*(k.variable for k in job.kpis), *job.trajectory_outputs]))
            # KPIs reduce every communication step (a peak between output samples counts);
            # the trajectory keeps the output grid.
            traj = fmu.simulate(
                task.start_values,
                task.stop_time,
                step_size=job.step_size,
                output_interval=job.step_size,
                outputs=names,
                start_time=job.start_time,
            )
            kpis = {
                k.name: reduce(k.reduction, traj.time, traj[k.variable], k.limit) for k in job.kpis
            }
            if job.trajectory_outputs:
                grid = traj.every(round(job.output_interval / job.step_size))
                trajectory = {"time": grid.time, **{n: grid[n] for n in job.trajectory_outputs}}
    except SimulationError as exc:
        status = "nan" if exc.kind == "nan" else "error"
        return RunResult(task.run_id, status, str(exc), wall_time=time.perf_counter() - t0)
    return RunResult(task.run_id, "ok", "", kpis, time.perf_counter() - t0, trajectory)


def open_engine(job: SimulationJob) -> tuple[Any, Any]:
    """The FMU, and its native driver when the job asks for it and the FMU allows it."""
    from physics.fmu import Fmu
    from physics.fmu._native import NativeFmu, native_binary_exists

    fmu = Fmu(job.fmu_path, unpacked=job.unpacked, interface=job.interface, tolerance=job.tolerance)
    native = NativeFmu(fmu) if job.engine == "native" and native_binary_exists(fmu) else None
    return fmu, native


def worker_main(fd: int) -> None:
    """Serve runs over the socket ``fd`` until told to stop (None) or the parent goes away.

    The first message is the SimulationJob; then Tasks, each answered by a RunResult.
    """
    # The parent handles Ctrl-C; a worker dies with it instead of printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    job: SimulationJob = conn.recv()
    fmu, native = open_engine(job)
    conn.send(READY)  # the parent's watchdog starts now, not while the FMU was opened
    try:
        while True:
            try:
                task = conn.recv()
            except EOFError:
                return
            if task is None:
                return
            try:
                result = _run_one(fmu, native, job, task)
            except Exception as exc:
                result = RunResult(task.run_id, "error", f"{type(exc).__name__}: {exc}")
            conn.send(result)
    finally:
        if native is not None:
            native.close()
        fmu.close()


# ---- in the parent -------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Process:
    """A worker started with subprocess (not multiprocessing): it can be started from
    daemonic processes too, such as Dask workers."""

    def __init__(self) -> None:
        parent, child = socket.socketpair()
        code = f"from physics.runner import worker_main; worker_main({child.fileno()})"
        self.popen = subprocess.Popen(
            [sys.executable, "-c", code], pass_fds=[child.fileno()], stdin=subprocess.DEVNULL
        )
        child.close()
        self.conn = Connection(parent.detach())
        self.pid = self.popen.pid

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()


@dataclass
class _Worker:
    process: _Process
    conn: Connection
    # Tasks sent and not answered yet, in order: the head is the one running.
    inflight: deque[Task] = field(default_factory=deque)
    started: float = 0.0  # when the head task started (its result's predecessor arrived)
    runs: int = 0
    retiring: bool = False  # recycled: gets no new tasks, stops once drained
    # Until the worker says READY (its FMU is open) no run is timed; STARTUP_TIMEOUT
    # bounds a start-up that hangs.
    ready: bool = False
    spawned: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        if not self.ready:
            return self.spawned + STARTUP_TIMEOUT
        return self.started + self.timeout if self.inflight else math.inf

    timeout: float = math.inf


@dataclass(frozen=True, kw_only=True)
class PoolOptions:
    """How the local pool runs; every field is checked when the pool starts."""

    workers: int = 0  # 0: one per CPU core
    timeout: float = 120.0  # wall-clock seconds per run
    max_runs_per_worker: int = 2000
    max_rss_mb: float = 2048.0
    prefetch: int = 4  # tasks queued per worker, hiding the round trip to the parent

    def checked(self) -> PoolOptions:
        problems = []
        if self.workers < 0:
            problems.append(f"workers: {self.workers} must be >= 0 (0 = one per core)")
        elif self.workers > MAX_WORKERS:
            problems.append(f"workers: {self.workers} is more than {MAX_WORKERS} processes")
        if not self.timeout > 0:
            problems.append(f"timeout: {self.timeout} must be > 0 seconds")
        elif not self.timeout <= MAX_TIMEOUT:
            problems.append(f"timeout: {self.timeout} must be at most {MAX_TIMEOUT:g} seconds")
        if self.max_runs_per_worker < 1:
            problems.append(f"max_runs_per_worker: {self.max_runs_per_worker} must be >= 1")
        if self.prefetch < 1:
            problems.append(f"prefetch: {self.prefetch} must be >= 1")
        if not self.max_rss_mb > 0:
            problems.append(f"max_rss_mb: {self.max_rss_mb} must be > 0")
        if problems:
            raise PoolOptionsError("; ".join(problems))
        return self

    @property
    def n_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


class LocalPool:
    """A pool of FMU worker processes on this machine with a per-run watchdog."""

    def __init__(self, job: SimulationJob, options: PoolOptions = PoolOptions()) -> None:
        self.job = job
        self.options = options.checked()
        self.recycled = 0
        self.replaced = 0

    def _spawn(self) -> _Worker:
        proc = _Process()
        proc.conn.send(self.job)
        return _Worker(proc, proc.conn, timeout=self.options.timeout)

    @staticmethod
    def _stop(worker: _Worker, *, kill: bool) -> None:
        if kill:
            worker.process.kill()
        else:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                worker.process.kill()
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()

    def run(self, tasks: Iterable[Task]) -> Iterator[RunResult]:
        """Run every task; yield each result as it completes.

        Each worker gets up to ``prefetch`` tasks at once so it never waits for a
        round trip; it answers them in order, so the head of its queue is the run
        in progress, and the watchdog restarts at every answer.
        """
        pending = deque(tasks)
        n = min(self.options.n_workers, len(pending)) if pending else 0
        workers = [self._spawn() for _ in range(n)]
        try:
            while pending or any(w.inflight for w in workers):
                for i, w in enumerate(workers):
                    if w.retiring and not w.inflight:
                        self._stop(w, kill=False)
                        workers[i] = w = self._spawn()
                    quota = self.options.max_runs_per_worker - w.runs - len(w.inflight)
                    while (
                        pending
                        and not w.retiring
                        and quota > 0
                        and len(w.inflight) < self.options.prefetch
                    ):
                        if not w.inflight:
                            w.started = time.monotonic()
                        task = pending.popleft()
                        try:
                            w.conn.send(task)
                        except OSError:  # the worker died since its last answer
                            pending.appendleft(task)
                            if w.inflight:
                                break  # the read below reports its run in progress
                            if not w.runs:  # a new worker, dead before its first task
                                raise
                            # Idle: no run was lost; another worker takes the task.
                            self._stop(w, kill=True)
                            self.replaced += 1
                            workers[i] = w = self._spawn()
                            continue
                        w.inflight.append(task)
                        quota -= 1
                busy = [w for w in workers if w.inflight]
                if not busy:
                    continue
                timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
                ready = set(wait([w.conn for w in busy], timeout=timeout))
                for i, w in enumerate(workers):
                    if not w.inflight:
                        continue
                    if w.conn in ready:
                        try:
                            while w.inflight and w.conn.poll():
                                result = w.conn.recv()
                                if result == READY:
                                    w.ready, w.started = True, time.monotonic()
                                    continue
                                w.inflight.popleft()
                                w.started = time.monotonic()
                                w.runs += 1
                                yield result
                        except (EOFError, OSError):
                            yield self._crash_result(w)
                            workers[i] = self._replace(w, pending)
                            continue
                        if (
                            w.runs >= self.options.max_runs_per_worker
                            or _rss_mb(w.process.pid) > self.options.max_rss_mb
                        ):
                            if not w.retiring:
                                self.recycled += 1
                            w.retiring = True
                    elif time.monotonic() >= w.deadline:
                        head = w.inflight[0]
                        if w.ready:
                            why = f"no answer within {self.options.timeout:g} s; worker killed"
                        else:
                            why = (
                                f"the worker did not open the FMU within {STARTUP_TIMEOUT:g} s; "
                                "worker killed"
                            )
                        yield RunResult(head.run_id, "timeout", why, wall_time=self.options.timeout)
                        workers[i] = self._replace(w, pending)
        finally:
            for w in workers:
                self._stop(w, kill=bool(w.inflight))

    def _replace(self, w: _Worker, pending: deque[Task]) -> _Worker:
        """Kill a worker whose head run hung or crashed; its other runs go back first."""
        self._stop(w, kill=True)
        w.inflight.popleft()
        pending.extendleft(reversed(w.inflight))
        self.replaced += 1
        return self._spawn()

    @staticmethod
    def _crash_result(w: _Worker) -> RunResult:
        w.process.join(timeout=5)
        code = w.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return RunResult(
            w.inflight[0].run_id,
            "crash",
            f"worker process {how} during the run",
            wall_time=time.monotonic() - w.started,
        )
