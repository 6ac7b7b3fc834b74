"""The test FMUs of tests/fmus: valid, and exactly as their closed forms say.

The runner's tests lean on these FMUs, so each behaviour they are used for is
pinned here: the tank's state events, the counter's integers and booleans, and
every way the faulty FMU fails. Faults that hang or kill the process (2 and 3)
and the leak (5) only ever run in a child process.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
from fmpy.validation import validate_fmu

from physics.fmu import Fmu, SimulationError
from tests.fmus import TEST_FMUS, build_test_fmu

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", TEST_FMUS)
def test_test_fmu_builds_and_passes_fmpy_validation(name: str) -> None:
    path = build_test_fmu(name)
    assert path.name == f"{name}.fmu"
    assert validate_fmu(str(path)) == []
    assert build_test_fmu(name) == path  # cached: same sources, same file


def test_unknown_test_fmu_is_refused_with_the_names() -> None:
    with pytest.raises(ValueError, match="expected one of tank, counter, faulty"):
        build_test_fmu("spindle")


# ---- tank: hysteresis valve, state events located inside the step -------------


@dataclass(frozen=True)
class Tank:
    """Tank parameters; the defaults put no event near a sample of the cases below."""

    inflow: float = 0.0021
    outflow: float = 0.0057
    area: float = 0.47
    level_low: float = 0.2
    level_high: float = 0.83
    level_start: float = 0.5
    start_open: bool = False
    max_switches: int = 1_000_000


@dataclass(frozen=True)
class TankSchedule:
    up: float  # m/s, level rate with the valve shut
    down: float  # m/s (< 0), with the valve open
    first: float  # s, time of event 0
    after_even: float  # s, duration of the phase after events 0, 2, 4, ...
    after_odd: float  # s, after events 1, 3, 5, ...
    n_events: int  # events the switch budget allows


def tank_schedule(c: Tank) -> TankSchedule:
    up = c.inflow / c.area
    down = (c.inflow - c.outflow) / c.area
    band = c.level_high - c.level_low
    rise, fall = band / up, band / -down
    if c.start_open:
        # close, open, close, ...: an opening at event j needs j + 2 <= max_switches
        first = (c.level_start - c.level_low) / -down
        return TankSchedule(up, down, first, rise, fall, 1 + 2 * ((c.max_switches - 1) // 2))
    first = (c.level_high - c.level_start) / up
    return TankSchedule(up, down, first, fall, rise, 2 * (c.max_switches // 2))


def tank_event_times(c: Tank, until: float) -> np.ndarray:
    s = tank_schedule(c)
    j = np.arange(min(s.n_events, 100_000))
    times = s.first + np.ceil(j / 2) * s.after_even + (j // 2) * s.after_odd
    return times[times <= until]


def tank_reference(c: Tank, t: float) -> tuple[float, bool, int]:
    """Level, valve state and switch count at time t, in closed form."""
    s = tank_schedule(c)
    if s.n_events == 0 or t < s.first:
        return c.level_start + (s.down if c.start_open else s.up) * t, c.start_open, 0
    cycles, into = divmod(t - s.first, s.after_even + s.after_odd)
    last = min(int(2 * cycles + (into >= s.after_even)), s.n_events - 1)  # last event <= t
    at = s.first + math.ceil(last / 2) * s.after_even + (last // 2) * s.after_odd
    # Even-numbered events take the valve out of its start state.
    is_open = (last % 2 == 0) != c.start_open
    level = c.level_high + s.down * (t - at) if is_open else c.level_low + s.up * (t - at)
    return level, is_open, last + 1


@pytest.fixture(scope="module", params=["co_simulation", "model_exchange"])
def tank(request: pytest.FixtureRequest) -> Iterator[Fmu]:
    """The tank through each of its interfaces: its own exact step (co-simulation) and
    CVode with root finding on its event indicator (model exchange)."""
    with Fmu(build_test_fmu("tank"), interface=request.param) as fmu:
        yield fmu


def level_atol(tank: Fmu) -> float:
    """How close the level comes to the closed form: to rounding when the model steps
    itself; for CVode, each event is located to within its root tolerance and taken
    where the indicator is within 1e-9 of the band (tank.c), a few 1e-10 m after
    hundreds of events."""
    return 1e-8 if tank.model_exchange else 1e-12


TANK_CASES = {
    # name: (parameters, stop time s, step s, output interval s)
    "generic": (Tank(), 1000.0, 1.0, 2.0),
    "many events per 5 s step": (
        Tank(inflow=0.31, outflow=0.73, area=0.1, level_low=0.2, level_high=0.8),
        100.0,
        5.0,
        5.0,
    ),
    "starts open": (Tank(start_open=True, level_start=0.71), 900.0, 0.5, 0.5),
    "budget cut-off, shut start": (Tank(max_switches=7), 1500.0, 1.0, 1.0),
    "budget cut-off, open start": (
        Tank(start_open=True, level_start=0.61, max_switches=4),
        1500.0,
        3.0,
        3.0,
    ),
}


@pytest.mark.parametrize("case", TANK_CASES)
def test_tank_matches_the_closed_form_at_every_sample(tank: Fmu, case: str) -> None:
    c, stop, step, interval = TANK_CASES[case]
    traj = tank.simulate(
        asdict(c),
        stop,
        step_size=step,
        output_interval=interval,
        outputs=["level", "valve_open", "switches", "period"],
    )
    # An event within rounding of a sample would make the reference ambiguous.
    events = tank_event_times(c, stop + 1.0)
    assert np.min(np.abs(events[:, None] - traj.time[None, :])) > 1e-6
    expected = [tank_reference(c, t) for t in traj.time]
    atol = level_atol(tank)
    np.testing.assert_allclose(traj["level"], [e[0] for e in expected], rtol=0, atol=atol)
    assert traj["valve_open"].tolist() == [e[1] for e in expected]
    assert traj["switches"].tolist() == [e[2] for e in expected]
    assert traj["switches"].dtype == np.int64 and traj["valve_open"].dtype == bool
    s = tank_schedule(c)
    assert traj["period"][0] == pytest.approx(s.after_even + s.after_odd, rel=1e-14)


def test_tank_takes_several_events_inside_one_communication_step(tank: Fmu) -> None:
    c = TANK_CASES["many events per 5 s step"][0]
    traj = tank.simulate(asdict(c), 100.0, step_size=5.0, outputs=["switches"])
    # period 0.336 s: about 29.7 events in each 5 s step, none lost
    per_step = np.diff(traj["switches"])
    assert per_step.min() >= 29 and per_step.max() <= 30
    # 594: counted by stepping from event to event in exact rational arithmetic
    assert traj["switches"][-1] == tank_reference(c, 100.0)[2] == 594


def test_tank_budget_leaves_the_valve_shut_and_the_level_rising(tank: Fmu) -> None:
    c = Tank(max_switches=7)  # the 7th event would be an opening: refused
    traj = tank.simulate(asdict(c), 1500.0, step_size=1.0)
    assert traj["switches"].max() == 6
    events = tank_event_times(c, 1500.0)
    assert len(events) == 6
    last_close = events[-1]
    after = traj.time > last_close
    assert not traj["valve_open"][after].any()
    assert traj["level"][-1] > c.level_high  # nothing opens it any more
    np.testing.assert_allclose(
        traj["level"][after],
        c.level_low + c.inflow / c.area * (traj.time[after] - last_close),
        rtol=0,
        atol=1e-12,
    )


def test_tank_events_on_communication_points_are_taken_there(tank: Fmu) -> None:
    # Dyadic numbers: rates +-0.5 m/s over a 0.5 m band, events exactly at
    # t = 0, 1, 2, ... (the first because the level starts on level_high).
    c = Tank(inflow=0.5, outflow=1.0, area=1.0, level_low=0.25, level_high=0.75, level_start=0.75)
    traj = tank.simulate(asdict(c), 6.0, step_size=0.5)
    assert traj["switches"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7]
    assert traj["valve_open"].tolist() == [i % 4 < 2 for i in range(13)]
    atol = level_atol(tank)
    assert traj["level"] == pytest.approx([0.75, 0.5, 0.25, 0.5] * 3 + [0.75], rel=0, abs=atol)
    for t, level, is_open, n in zip(
        traj.time, traj["level"], traj["valve_open"], traj["switches"], strict=True
    ):
        ref = tank_reference(c, t)
        assert (is_open, n) == ref[1:] and level == pytest.approx(ref[0], rel=0, abs=atol)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"outflow": 0.002}, "outflow = 0.002 m3/s must exceed inflow = 0.0021 m3/s"),
        ({"level_low": 0.9}, "level_low = 0.9 m must be below level_high = 0.83 m"),
        ({"level_start": 0.1}, "level_start = 0.1 m is outside [level_low, level_high]"),
        ({"area": 0.0}, "inflow = 0.0021 m3/s and area = 0 m2 must both be > 0"),
    ],
)
def test_tank_refuses_inconsistent_parameters(tank: Fmu, values: dict, message: str) -> None:
    with pytest.raises(SimulationError, match=re.escape(message)) as info:
        tank.simulate({**asdict(Tank()), **values}, 10.0, step_size=1.0)
    assert info.value.function == "fmi2ExitInitializationMode"


# ---- counter: Integer and Boolean only -----------------------------------------------


@pytest.fixture(scope="module")
def counter() -> Iterator[Fmu]:
    with Fmu(build_test_fmu("counter")) as fmu:
        yield fmu


@pytest.mark.parametrize(
    ("start", "increment", "count_down", "step", "stop"),
    [
        (0, 1, False, 0.5, 10.0),
        (7, 3, True, 0.1, 5.0),  # 0.1-steps: whole seconds reached through rounding
        (-4, 2, False, 0.25, 6.0),
        (5, 0, True, 1.0, 3.0),
    ],
)
def test_counter_counts_whole_seconds(
    counter: Fmu, start: int, increment: int, count_down: bool, step: float, stop: float
) -> None:
    traj = counter.simulate(
        {"start": start, "increment": increment, "count_down": count_down},
        stop,
        step_size=step,
        outputs=["count", "even", "elapsed_seconds"],
    )
    seconds = np.floor(np.round(traj.time, 9)).astype(np.int64)
    expected = start + (-1 if count_down else 1) * increment * seconds
    assert traj["elapsed_seconds"].tolist() == seconds.tolist()
    assert traj["count"].tolist() == expected.tolist()
    assert traj["even"].tolist() == (expected % 2 == 0).tolist()
    assert traj["count"].dtype == np.int64 and traj["even"].dtype == bool


def test_counter_refuses_to_leave_the_integer_range(counter: Fmu) -> None:
    with pytest.raises(SimulationError, match="outside the 32-bit Integer range") as info:
        counter.simulate({"start": 2_147_483_000, "increment": 1000}, 3.0, step_size=1.0)
    assert info.value.function == "fmi2DoStep"
    assert "count = 2147484000 at t = 1 s" in str(info.value)


# ---- faulty: a healthy lag, and each way an FMU fails ---------------------------


@pytest.fixture(scope="module")
def faulty() -> Iterator[Fmu]:
    with Fmu(build_test_fmu("faulty")) as fmu:
        yield fmu


def lag(t: np.ndarray, u: float, tau: float, y0: float) -> np.ndarray:
    return u + (y0 - u) * np.exp(-t / tau)


@pytest.mark.parametrize(
    ("values", "step", "stop"),
    [
        ({"u": 2.5, "tau": 0.7, "y_start": -1.0}, 0.05, 5.0),
        ({"u": -3.0, "tau": 40.0, "y_start": 4.0}, 1.0, 120.0),
        ({"u": 1.0, "tau": 0.001, "y_start": 0.0}, 0.5, 2.0),  # the smallest tau allowed
        # a fault code only acts from fault_time: 1, 4 and 5 are safe to run here
        ({"u": 2.0, "tau": 0.3, "y_start": 1.0, "fault": 1, "fault_time": 1.0}, 0.1, 0.9),
        ({"u": 2.0, "tau": 0.3, "y_start": 1.0, "fault": 4, "fault_time": 1.0}, 0.1, 0.9),
        ({"u": 2.0, "tau": 0.3, "y_start": 1.0, "fault": 5, "fault_time": 1.0}, 0.1, 0.9),
    ],
)
def test_faulty_healthy_path_is_the_exact_exponential(
    faulty: Fmu, values: dict, step: float, stop: float
) -> None:
    traj = faulty.simulate(values, stop, step_size=step)
    expected = lag(traj.time, values["u"], values["tau"], values["y_start"])
    np.testing.assert_allclose(traj["y"], expected, rtol=0, atol=1e-12)


def test_fault_1_fails_the_step_that_reaches_fault_time(faulty: Fmu) -> None:
    with pytest.raises(SimulationError) as info:
        faulty.simulate({"fault": 1, "fault_time": 1.0}, 3.0, step_size=0.1)
    err = info.value
    assert err.function == "fmi2DoStep"
    assert err.status == 3  # fmi2Error
    assert "injected error at t=0.9 s (fault_time = 1 s)" in str(err)
    assert err.time == pytest.approx(0.9)
    # the adapter drops the broken instance: the next run is healthy again
    traj = faulty.simulate({"tau": 2.0}, 1.0, step_size=0.5)
    np.testing.assert_allclose(traj["y"], lag(traj.time, 1.0, 2.0, 0.0), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("fault_time", "first_nan"), [(2.0, 2.0), (1.2, 1.5), (0.0, 0.0)])
def test_fault_4_output_turns_nan_from_fault_time(
    faulty: Fmu, fault_time: float, first_nan: float
) -> None:
    with pytest.raises(SimulationError, match=rf"output y is nan at t = {first_nan:g}\b") as info:
        faulty.simulate({"fault": 4, "fault_time": fault_time}, 4.0, step_size=0.5)
    assert info.value.time == first_nan


def test_tau_below_the_minimum_fails_initialization(faulty: Fmu) -> None:
    with pytest.raises(SimulationError) as info:
        faulty.simulate({"tau": 0.0005}, 1.0, step_size=0.1)
    assert info.value.function == "fmi2ExitInitializationMode"
    assert str(info.value).endswith(
        "fmi2ExitInitializationMode: tau = 0.0005 s is below the stable minimum 0.001 s"
    )


# Runs the faulty FMU in a child process: each run in argv[2] prints a line
# when it returns; the last line is the child's peak resident set size.
CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from physics.fmu import Fmu

    fmu = Fmu(sys.argv[1])
    for values, stop_time in json.loads(sys.argv[2]):
        fmu.simulate(values, stop_time, step_size=0.1)
        print("returned from run to", stop_time, flush=True)
    # Peak RSS of this process's own address space (kB). ru_maxrss would not do:
    # Linux carries it across exec from the (large) parent that forked us.
    try:
        with open("/proc/self/status") as fh:
            peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("maxrss", peak, flush=True)
    """
)


def _child(runs: list[tuple[dict, float]]) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of a child running ``runs`` on the faulty FMU."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return [sys.executable, "-c", CHILD, str(build_test_fmu("faulty")), json.dumps(runs)], env


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="signals and rusage are POSIX")


@posix_only
def test_fault_3_kills_the_process_by_sigsegv_only_after_fault_time() -> None:
    values = {"fault": 3, "fault_time": 1.0}
    cmd, env = _child([(values, 0.9), (values, 2.0)])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGSEGV, proc.stderr
    assert proc.stdout.splitlines() == ["returned from run to 0.9"]


@posix_only
def test_fault_2_never_returns_once_fault_time_is_reached() -> None:
    values = {"fault": 2, "fault_time": 1.0}
    cmd, env = _child([(values, 0.9), (values, 2.0)])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        # The clock starts once the child has imported and run up to 0.9 s, so
        # a slow start cannot pass for a hang.
        assert proc.stdout is not None
        assert proc.stdout.readline() == "returned from run to 0.9\n"
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_fault_5_leaks_a_mebibyte_per_step() -> None:
    children = []
    for fault in (0, 5):
        cmd, env = _child([({"fault": fault, "fault_time": 0.0}, 20.0)])  # 200 steps
        children.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    peak_kib = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        assert out.splitlines()[0] == "returned from run to 20.0"
        peak_kib.append(int(out.split()[-1]))
    healthy, leaking = peak_kib
    assert leaking - healthy >= 150 * 1024
