"""The point-mass filter against the hidden truth of streamed machines: the spindle's true
start wear differs from the MES's belief; the filter, fed the machine's noisy signals,
finds it within its stated interval, over seeded machines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from physics.estimate import OrderFilter, Prior
from physics.machine import MachineError, load_machine, orders_of, simulate_play

ROOT = Path(__file__).resolve().parents[2]
MACHINE = ROOT / "experiments" / "machines" / "spindle.yaml"
ORDER = ROOT / "experiments" / "orders" / "demo.yaml"
PRIOR = Prior(mean=0.04, std=0.05, lo=0.0, hi=0.3)  # the order file's belief, and its doubt


@pytest.fixture(scope="module")
def setting() -> Any:
    from physics.run import open_twin
    from physics.spec import load_spec

    config = load_machine(MACHINE)
    spec = load_spec(config.spec_path)
    order = dataclasses.replace(orders_of([ORDER], spec)[0], quantity=3)
    with open_twin(spec) as fmu:
        yield config, spec, fmu, order


def _feed(f: OrderFilter, samples: list[Any], window: float = 10.0) -> None:
    """The samples in machine-time order, the filter updated every ``window`` seconds."""
    last = 0.0
    for s in samples:
        if s.t - last >= window:
            f.update()
            last = s.t
        f.observe(s.signal, s.t, s.value, s.good)
    f.update()


def test_the_filter_finds_the_true_wear_within_its_interval(setting: Any) -> None:
    config, spec, fmu, order = setting
    assert order.values["tool_wear"] == PRIOR.mean
    believed = simulate_play(spec, fmu, config, order.values, 3, "WO", 0.0,
                             np.random.default_rng(0))  # fmt: skip
    belief_end = float(believed.columns["tool_wear"][-1])
    errors, belief_errors, z = [], [], []
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        true_start = float(rng.uniform(0.0, 0.15))
        truth = simulate_play(spec, fmu, config, {**order.values, "tool_wear": true_start}, 3,
                              "WO", 0.0, rng)  # fmt: skip
        f = OrderFilter(spec, fmu, config, order.values, 3, "tool_wear", PRIOR)
        _feed(f, truth.samples)
        end, t_end = float(truth.columns["tool_wear"][-1]), float(truth.time[-1])
        est = f.at("tool_wear", t_end)
        assert est.observations > 4000 and est.std < PRIOR.std / 10
        errors.append(est.mean - end)
        belief_errors.append(belief_end - end)
        z.append((est.mean - end) / est.std)
        start = f.start()
        assert abs(start.mean - true_start) < 4 * start.std
    z = np.abs(np.array(z))
    assert np.all(z < 3.5), z  # never overconfident by much
    assert np.sum(z < 2) >= 5, z  # the 95 % interval: 5 or 6 of 6
    rmse = float(np.sqrt(np.mean(np.square(errors))))
    belief_rmse = float(np.sqrt(np.mean(np.square(belief_errors))))
    assert rmse < 0.05 * belief_rmse, (rmse, belief_rmse)


def test_a_machine_that_says_nothing_keeps_its_prior(setting: Any) -> None:
    config, spec, fmu, order = setting
    truth = simulate_play(spec, fmu, config, {**order.values, "tool_wear": 0.12}, 3, "WO", 0.0,
                          np.random.default_rng(3))  # fmt: skip
    f = OrderFilter(spec, fmu, config, order.values, 3, "tool_wear", PRIOR)
    for s in truth.samples[:200]:
        f.observe(s.signal, s.t, s.value, good=False)  # every value of bad quality
    f.update()
    est = f.start()
    assert est.observations == 0 and f.refinements == 0
    # the prior truncated to [0, 0.3], to the grid's resolution (41 points over it)
    from scipy.stats import truncnorm

    law = truncnorm((PRIOR.lo - PRIOR.mean) / PRIOR.std, (PRIOR.hi - PRIOR.mean) / PRIOR.std,
                    loc=PRIOR.mean, scale=PRIOR.std)  # fmt: skip
    assert est.mean == pytest.approx(law.mean(), abs=0.0075 / 2)  # half a grid spacing
    assert est.std == pytest.approx(law.std(), abs=0.0075 / 2)


def test_filter_mistakes_are_named(setting: Any) -> None:
    config, spec, fmu, order = setting
    with pytest.raises(
        MachineError,
        match=r"^spindle_speed: not a state input of milling_spindle"
        r" \(state inputs: tool_wear, bearing_damage",
    ):
        OrderFilter(spec, fmu, config, order.values, 3, "spindle_speed", PRIOR)
    with pytest.raises(
        MachineError,
        match=r"prior of tool_wear: std 0.0 and \[0.0, 0.3\]; "
        r"expected std > 0 and lo < hi",
    ):
        OrderFilter(spec, fmu, config, order.values, 3, "tool_wear", Prior(0.04, 0.0, 0.0, 0.3))
    f = OrderFilter(spec, fmu, config, order.values, 3, "tool_wear", PRIOR, points=9)
    with pytest.raises(MachineError, match=r"observation of 'vibration': not a signal of MILL-07"):
        f.observe("vibration", 1.0, 0.2)
