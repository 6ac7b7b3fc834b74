"""The surrogate's parts against closed forms: the fused nets, conformal quantiles,
temperature scaling, target transforms, and the config's messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from surrogates._calibrate import (
    Calibration,
    Outputs,
    calibrate,
    conformal_quantile,
    fit_temperature,
    spread,
)
from surrogates._config import load_config
from surrogates._errors import ConfigError, DataError
from surrogates._model import FusedEnsemble


def test_fused_ensemble_equals_separate_nets() -> None:
    torch.manual_seed(0)
    m = FusedEnsemble(3, 2, members=2, per_kpi=True, hidden=[4, 5], activation="silu")
    x = torch.randn(7, 3)
    out = m(x)  # [M, N, K]
    assert out.shape == (2, 7, 2)
    for member in range(2):
        for k in range(2):
            g = m.group_of(member, k)
            h = x
            for i, (w, b) in enumerate(zip(m.weights, m.biases, strict=True)):
                h = h @ w[g] + b[g, 0]
                if i < 2:
                    h = torch.nn.functional.silu(h)
            torch.testing.assert_close(out[member, :, k], h[:, 0])


def test_shared_ensemble_equals_separate_nets() -> None:
    torch.manual_seed(1)
    m = FusedEnsemble(3, 4, members=3, per_kpi=False, hidden=[6], activation="tanh")
    x = torch.randn(5, 3)
    out = m(x)
    for member in range(3):
        h = torch.tanh(x @ m.weights[0][member] + m.biases[0][member, 0])
        torch.testing.assert_close(out[member], h @ m.weights[1][member] + m.biases[1][member, 0])


def test_wrong_feature_count_is_refused() -> None:
    m = FusedEnsemble(3, 1, members=1)
    with pytest.raises(ValueError, match=r"features: expected shape \[N, 3\], got \[2, 4\]"):
        m(torch.zeros(2, 4))


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.arange(1.0, 20.0)  # 19 scores: rank ceil(20 * 0.9) = 18
    assert conformal_quantile(scores, 0.9) == 18.0
    assert conformal_quantile(scores, 0.95) == 19.0
    assert conformal_quantile(np.arange(1.0, 10.0), 0.95) == float("inf")  # n too small


def test_conformal_interval_covers_exchangeable_data() -> None:
    rng = np.random.default_rng(0)
    n, members = 4000, 5
    s_true = rng.uniform(0.2, 2.0, n)  # heteroscedastic noise, seen by the spread
    y = rng.normal(0.0, s_true)
    z = rng.normal(0.0, 0.3 * s_true, size=(members, n))  # spread proportional to the noise
    cal, fresh = slice(0, 2000), slice(2000, None)
    c = calibrate(Outputs(z[:, cal, None], y[cal, None], np.ones(2000, bool),
                          np.zeros((2000, 0))), 1, 0.9)  # fmt: skip
    mu, s = z[:, fresh].mean(0), z[:, fresh].std(0)
    half = c.q[0] * (s + c.floor[0])
    covered = np.mean(np.abs(y[fresh] - mu) <= half)
    assert abs(covered - 0.9) < 0.02


def _heteroscedastic(rng: np.random.Generator, n: int) -> tuple[Outputs, np.ndarray, np.ndarray]:
    """Rows whose noise the ensemble's spread does not see: the noise grows with a
    feature x1 (a state band, exp(0.8 x1): 0.45 to 2.2) and is twice as large in group 1
    (a material); the members agree with each other to a constant spread."""
    x = rng.uniform(-1.0, 1.0, size=(n, 3))
    group = rng.integers(0, 3, n)
    sigma = np.exp(0.8 * x[:, 1]) * np.where(group == 1, 2.0, 1.0)
    y = rng.normal(0.0, sigma)
    z = rng.normal(0.0, 0.05, size=(5, n))  # spread unrelated to the noise
    return Outputs(z[:, :, None], y[:, None], np.ones(n, bool), x, group), x, group


def _slice_coverage(
    c: Calibration, fresh: Outputs, x: np.ndarray, group: np.ndarray
) -> dict[str, float]:
    mu, s = fresh.members.mean(0), fresh.members.std(0)
    half = c.quantiles(fresh.group) * c.scale(s, fresh.x)
    hit = np.abs(fresh.y - mu)[:, 0] <= half[:, 0]
    return {
        "all": float(hit.mean()),
        "x1 high": float(hit[x[:, 1] > 0.6].mean()),
        "x1 low": float(hit[x[:, 1] < -0.6].mean()),
        **{f"group {g}": float(hit[group == g].mean()) for g in range(3)},
    }


def test_marginal_conformal_fails_per_slice_where_difficulty_and_groups_hold() -> None:
    """Synthetic heteroscedastic rows: the spread-normalised (marginal) interval covers
    90 % on average but far less where the noise is high (the x1 band, group 1), and far
    more where it is low; the learned spread model with a quantile per group holds
    every slice within 2 points of the level."""
    rng = np.random.default_rng(11)
    fit, _, _ = _heteroscedastic(rng, 3000)
    cal, _, _ = _heteroscedastic(rng, 3000)
    fresh, x, group = _heteroscedastic(rng, 20000)
    marginal = _slice_coverage(calibrate(cal, 1, 0.9), fresh, x, group)
    chosen = _slice_coverage(
        calibrate(cal, 1, 0.9, method="difficulty", fit=fit, groups="g", n_choices=3),
        fresh, x, group,
    )  # fmt: skip
    assert abs(marginal["all"] - 0.9) < 0.015
    # measured: group 1 0.82, x1 high 0.77, x1 low 0.99, group 0 0.96
    assert marginal["group 1"] < 0.84 and marginal["x1 high"] < 0.8
    assert marginal["x1 low"] > 0.97 and marginal["group 0"] > 0.945
    for name, covered in chosen.items():  # measured: 0.894 to 0.909
        assert abs(covered - 0.9) < 0.02, (name, chosen)


def test_temperature_scaling_recovers_the_temperature() -> None:
    rng = np.random.default_rng(2)
    logit = rng.normal(0, 4, 20000)
    outcome = (rng.uniform(size=logit.size) < 1 / (1 + np.exp(-logit / 2.5))).astype(float)
    assert fit_temperature(logit, outcome) == pytest.approx(2.5, rel=0.06)


def test_targets_kinds_and_transforms(spindle_spec) -> None:  # type: ignore[no-untyped-def]
    from surrogates._targets import TargetMap

    rng = np.random.default_rng(3)
    n = 200
    frame = pd.DataFrame({k: rng.uniform(1, 2, n) for k in spindle_spec.kpis})
    frame["tool_broken_end"] = (rng.uniform(size=n) < 0.2).astype(float)
    frame["tool_life"] = np.exp(rng.uniform(0, 8, n))  # heavy tail, positive
    frame["energy"] = np.where(rng.uniform(size=n) < 0.2, 0.0, np.exp(rng.uniform(0, 8, n)))
    frame["breakage_cause_end"] = np.where(frame["tool_broken_end"] > 0, 3.0, 0.0)
    frame["tool_wear"] = rng.uniform(0, 0.25, n)  # the state tool_wear_end starts from
    frame["tool_wear_end"] = frame["tool_wear"] + 0.1 * frame["tool_life"] / 3000
    with pytest.raises(DataError, match="bases: no values for tool_wear_end, tool_changes, "):
        TargetMap.fit(spindle_spec, frame)
    # tool_wear_end over its start value; the other baselines as zeros (learned as is).
    based = [k for k, v in spindle_spec.kpis.items() if v.baseline or v.start]
    bases = {k: np.zeros(n) for k in based} | {"tool_wear_end": frame["tool_wear"].to_numpy()}
    # The spec names the margins breakage follows: without their values, a clear error.
    with pytest.raises(DataError, match=r"kpis\.tool_broken_end\.margins: no values for frac"):
        TargetMap.fit(spindle_spec, frame, bases=bases)
    # Declared an event, it is learned as a classifier of the flag.
    declared = {"tool_broken_end": "event"}
    tm = TargetMap.fit(spindle_spec, frame, bases=bases, declared=declared)
    kinds = {t.name: t for t in tm.targets}
    assert kinds["tool_life"].baseline == "tool_life_planned"
    assert kinds["tool_broken_end"].kind == "event" and kinds["tool_broken_end"].margins is None
    assert kinds["breakage_cause_end"].kind == "constant"  # 0 wherever nothing broke
    assert kinds["tool_life"].transform == "log" and kinds["tool_life"].shift == 0.0
    assert kinds["energy"].transform == "log" and kinds["energy"].shift > 0
    assert kinds["wall_error_max"].transform == "identity"
    # Learned as the increment over the order: its mean is that of the increment.
    wear = kinds["tool_wear_end"]
    assert wear.start == "tool_wear"
    increment = (frame["tool_wear_end"] - frame["tool_wear"])[tm.no_event(frame)]
    assert np.isclose(wear.mean, np.log(increment + wear.shift).mean() if wear.transform
                      == "log" else increment.mean())  # fmt: skip
    for name in ("tool_life", "energy", "wall_error_max"):
        t = kinds[name]
        y = frame[name].to_numpy()[tm.no_event(frame)]
        np.testing.assert_allclose(t.inverse(t.forward(y)), y, rtol=1e-12, atol=1e-9)
    # Beyond the training range the inverse is clipped, never explodes.
    big = kinds["tool_life"].inverse(np.array([1e3]))
    assert big[0] <= np.exp(kinds["tool_life"].high + 0.1 * 8.0) * 1.001


def test_margin_event_follows_its_margins(spindle_spec) -> None:  # type: ignore[no-untyped-def]
    """Breakage is derived from the margins the spec names (it occurs when any reaches
    1); fitting refuses margins that do not explain the flag, naming the first row."""
    from surrogates._targets import TargetMap, margin_limit

    rng = np.random.default_rng(5)
    n = 300
    frame = pd.DataFrame({k: rng.uniform(1, 2, n) for k in spindle_spec.kpis})
    frame["tool_stress_ratio_max"] = rng.uniform(0.2, 1.2, n)
    fracture = rng.uniform(0.1, 1.1, n)
    broke = (frame["tool_stress_ratio_max"] >= 1.0) | (fracture >= 1.0)
    frame["tool_broken_end"] = broke.astype(float)
    frame["breakage_cause_end"] = np.where(broke, 3.0, 0.0)
    based = [k for k, v in spindle_spec.kpis.items() if v.baseline or v.start]
    bases = {k: np.zeros(n) for k in based}
    tm = TargetMap.fit(spindle_spec, frame, bases=bases, derived={"fracture_margin": fracture})
    kinds = {t.name: t for t in tm.targets}
    event = kinds["tool_broken_end"]
    assert event.kind == "margin" and event.margins == ["fracture_margin", "tool_stress_ratio_max"]
    assert [t.name for t in tm.outcomes] == ["tool_broken_end"]
    assert "tool_broken_end" not in [t.name for t in tm.learned + tm.reported]
    # The stress ratio is learned on the quiet rows: no broken row in its statistics.
    ratio = kinds["tool_stress_ratio_max"]
    quiet = frame["tool_stress_ratio_max"][tm.no_event(frame)].to_numpy()
    assert tm.no_event(frame).sum() == n - broke.sum()
    assert np.isclose(ratio.inverse(np.array([margin_limit(ratio, np.array(1.0))]))[0], 1.0)
    assert quiet.max() < 1.0
    # A flag the margins do not explain is refused with the row and its margins.
    wrong = frame.copy()
    i = int(np.flatnonzero(~broke.to_numpy())[0])
    wrong.loc[i, "tool_broken_end"] = 1.0
    expected = (
        f"kpis.tool_broken_end.margins: on 1 of {n} training rows the flag is not 'a margin "
        f"reached 1' (row {i}: tool_broken_end 1, fracture_margin {fracture[i]:.6g}, "
        f"tool_stress_ratio_max {frame['tool_stress_ratio_max'][i]:.6g}); the margins do not "
        "explain the event: learn it as a classifier (kpi_kinds: {tool_broken_end: event}) "
        "or name the margins it follows"
    )
    with pytest.raises(DataError) as info:
        TargetMap.fit(spindle_spec, wrong, bases=bases, derived={"fracture_margin": fracture})
    assert str(info.value) == expected


def test_config_errors_name_the_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  members: 0\n  hiden: [3]\ntraining:\n  device: cpu\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith(f"invalid training config {path}:")
    assert "model.members: " in text and "greater than or equal to 1" in text
    assert "hiden" in text and "hidden" in text  # the typo, and what was meant
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["training.epochs"])
    assert load_config(None, ["training.epochs=7", "model.hidden=[8, 8]"]).model.hidden == [8, 8]


def _fixed_model() -> FusedEnsemble:
    """A small ensemble with weights from a formula (no RNG): the same on any machine."""
    m = FusedEnsemble(3, 2, members=2, per_kpi=True, hidden=[4, 4], activation="silu")
    with torch.no_grad():
        for i, p in enumerate(m.parameters()):
            values = 0.5 * np.sin(np.arange(p.numel()) * 0.7 + i)
            p.copy_(torch.from_numpy(values).reshape(p.shape).float())
    return m


# Outputs [member, row, KPI] of _fixed_model on linspace(-1, 1, 9) as 3 rows, stored
# when the fused layout (g = m K + k, linear skip path) was written.
REFERENCE = [
    [[-0.7413599, -0.3675808], [-0.1216674, -0.0232891], [0.4974748, 0.3179777]],
    [[1.3177657, -0.1390417], [0.4107990, 0.4897700], [-0.5013632, 1.1183181]],
]


def test_fixed_model_reproduces_its_stored_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from surrogates._model import load_checkpoint, save_checkpoint

    m = _fixed_model()
    x = torch.from_numpy(np.linspace(-1, 1, 9).reshape(3, 3)).float()
    np.testing.assert_allclose(m(x).detach().numpy(), REFERENCE, atol=2e-6)
    save_checkpoint(m, tmp_path / "m.pt", note="kept")
    again, extra = load_checkpoint(tmp_path / "m.pt")
    assert extra == {"note": "kept"} and again.config() == m.config()
    np.testing.assert_allclose(again(x).detach().numpy(), REFERENCE, atol=2e-6)


def test_device_is_checked() -> None:
    from surrogates._train import pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match=r"training\.device: 'gpu0' is not a device"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available here"):
            pick_device("cuda")


def test_training_domain_reaches_the_design_bounds_its_rows_reach(spindle_spec) -> None:  # type: ignore[no-untyped-def]
    from surrogates._features import design_bounds

    s = spindle_spec
    # warmup is drawn uniformly on [0, 1]: 10,000 rows reaching 3e-4 of each end stand
    # for the whole design (10 spacings: 1e-3); a warm spindle (1.0) is in the domain.
    assert design_bounds(s, "warmup", 3e-4, 1 - 3e-4, 10_000) == (0.0, 1.0)
    assert design_bounds(s, "warmup", 3e-4, 0.9, 10_000) == (0.0, 0.9)
    assert design_bounds(s, "warmup", 2e-3, 1.0, 10_000) == (2e-3, 1.0)
    # spindle_speed is log-uniform on [800, 24000]: spacings in log space (10 of 1,000
    # rows: ln(30) / 100 = 0.034); 805 rpm is 0.006 in, 1000 rpm 0.22.
    assert design_bounds(s, "spindle_speed", 805.0, 23_900.0, 1_000) == (800.0, 24_000.0)
    assert design_bounds(s, "spindle_speed", 1_000.0, 23_900.0, 1_000) == (1_000.0, 24_000.0)
    # Not a factor (held fixed by the DOE), and rows outside the declared range: as seen.
    assert design_bounds(s, "coolant_temperature", 20.0, 20.0, 1_000) == (20.0, 20.0)
    assert design_bounds(s, "warmup", 3e-4, 1.5, 10_000) == (3e-4, 1.5)


def test_redundant_derived_features_are_left_out(spindle_spec, spindle_dataset) -> None:  # type: ignore[no-untyped-def]
    """A derived feature that is a linear function of a kept one adds parameters and
    nodes and nothing else: left out, the later of two kept (a chain's result)."""
    from physics.dataset import read_runs
    from surrogates._features import REDUNDANT_CORRELATION, Feature, FeatureMap, _independent

    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, 500)
    b = x**2
    c = b + 1e-7 * rng.normal(size=500)  # a refinement of b: |r| above the threshold
    d = x**2 + 0.1 * rng.normal(size=500)
    assert abs(np.corrcoef(b, c)[0, 1]) >= REDUNDANT_CORRELATION
    features = [Feature("x", "input", False), *(Feature(n, "derived", False) for n in "abcd")]
    values = np.column_stack([x, 2 * x + 1, b, c, d])
    assert _independent(features, values).tolist() == [True, False, False, True, True]
    # An input is never left out, even when a derived value duplicates it.
    features[1] = Feature("a", "input", False)
    assert _independent(features, values).tolist() == [True, True, False, True, True]

    frame = read_runs(spindle_dataset).to_pandas()
    names = {(f.name, f.log) for f in FeatureMap.fit(spindle_spec, frame).features}
    # The wear clock's last Newton step is the clock of the tool's starting wear.
    assert ("wear_clock_start", False) in names and ("wear_clock_5", False) not in names
    # The order's planned parts are its quantity (drawn log-uniformly: logged only).
    assert ("quantity", True) in names and ("parts_planned", True) not in names


def test_capped_kpi_is_learned_censored_at_its_cap(spindle_spec) -> None:  # type: ignore[no-untyped-def]
    """A KPI the FMU caps (the chatter limit is searched up to 3 ap) is censored there:
    the nets learn the value below the cap from the rows that reach it only as 'at least
    the cap', and the members are clipped to it, so nothing above the cap is reported."""
    from surrogates._config import TrainingConfig
    from surrogates._targets import TargetMap
    from surrogates._train import Trainer, predict_members

    assert spindle_spec.kpis["stability_margin"].cap == 3.0
    rng = np.random.default_rng(11)
    n = 600
    x = rng.uniform(0.0, 1.0, n)
    latent = 1.0 + 4.0 * x  # reaches the cap at x = 0.5
    frame = pd.DataFrame({k: rng.uniform(1, 2, n) for k in spindle_spec.kpis})
    frame["tool_broken_end"] = 0.0
    frame["breakage_cause_end"] = 0.0
    frame["stability_margin"] = np.minimum(3.0, latent)
    frame["tool_stress_ratio_max"] = rng.uniform(0.2, 0.9, n)
    based = [k for k, v in spindle_spec.kpis.items() if v.baseline or v.start]
    bases = {k: np.zeros(n) for k in based}
    derived = {"fracture_margin": np.full(n, 0.5)}
    tm = TargetMap.fit(spindle_spec, frame, bases=bases, derived=derived)
    target = {t.name: t for t in tm.targets}["stability_margin"]
    assert target.cap == 3.0 and target.clip_bounds()[1] == 3.0
    assert target.inverse(np.array([target.ceiling() + 5.0]))[0] == 3.0
    regs = tm.of_kind("regression")
    j = [t.name for t in regs].index("stability_margin")
    ceiling = tm.ceilings()
    assert np.isclose(ceiling[j], (3.0 - target.mean) / target.std)
    assert np.isinf(np.delete(ceiling, j)).all()
    # Values above the cap are refused with the row and the value.
    over = frame.copy()
    over.loc[7, "stability_margin"] = 3.5
    with pytest.raises(DataError) as info:
        TargetMap.fit(spindle_spec, over, bases=bases, derived=derived)
    assert str(info.value) == (
        f"kpis.stability_margin.cap: 1 of {n} training rows exceed the cap 3 (row 7: 3.5); "
        "the cap is the most the FMU's output can be: raise it or leave it out"
    )

    # Censored training on this one KPI: the latent line is learned through the cap.
    y = tm.encode(frame, bases)[:, [j]]
    features = ((x - 0.5) / 0.29)[:, None]
    torch.manual_seed(0)
    model = FusedEnsemble(1, 1, members=2, hidden=[16])
    config = TrainingConfig(epochs=150, batch_size=64, learning_rate=1e-2, patience=150)
    trainer = Trainer(model, config, n_regression=1, progress=False, ceiling=ceiling[[j]])
    quiet = np.ones(n)
    trainer.fit((features, y, quiet), (features[:200], y[:200], quiet[:200]))
    grid = np.linspace(0.0, 1.0, 11)
    gx = (((grid - 0.5) / 0.29)[:, None]).astype(np.float32)
    raw = target.inverse(predict_members(model, gx).mean(axis=0)[:, 0])
    clipped = target.inverse(predict_members(model, gx, ceiling=ceiling[[j]]).mean(axis=0)[:, 0])
    below = grid <= 0.4
    np.testing.assert_allclose(clipped[below], 1.0 + 4.0 * grid[below], atol=0.08)
    assert (clipped <= 3.0).all() and (clipped[grid >= 0.7] == 3.0).all()
    # The latent value goes on above the cap (a plain squared loss would bend to 3).
    assert (predict_members(model, gx).mean(axis=0)[grid >= 0.7, 0] > ceiling[j]).all()
    assert raw[-1] == 3.0  # the inverse clips too


def test_capped_kpi_is_calibrated_below_its_cap() -> None:
    """80 % of the runs at the cap, every member there: their zero residuals would put the
    95 % quantile at the 75th percentile of the others. Left out, the runs below the cap
    are covered at the level, and those at the cap by any interval."""
    rng = np.random.default_rng(4)

    def outputs(n: int, ceiling: np.ndarray | None) -> Outputs:
        at_cap = rng.uniform(size=n) < 0.8
        y = np.where(at_cap, 1.0, rng.uniform(-2.0, 0.5, n))
        noise = 0.1 * rng.standard_normal((2, n))
        members = np.where(at_cap, 1.0, y + 0.2 * rng.standard_normal(n) + noise)
        members = np.minimum(members, 1.0)  # clipped to the cap, as predict_members does
        return Outputs(members[:, :, None], y[:, None], np.ones(n, bool), np.zeros((n, 1)),
                       ceiling=ceiling)  # fmt: skip

    cap = np.array([1.0])
    plain = calibrate(outputs(4000, None), 1, 0.95)
    capped = calibrate(outputs(4000, cap), 1, 0.95)
    fresh = outputs(20000, cap)
    mu, s = spread(fresh.members)
    below = fresh.y[:, 0] < 1.0

    def coverage(c: Calibration) -> float:
        half = c.q[0] * c.scale(s, fresh.x)[:, 0]
        upper = np.minimum(mu[:, 0] + half, 1.0)
        lower = np.minimum(mu[:, 0] - half, 1.0)
        y = fresh.y[below, 0]
        return float(((lower[below] <= y) & (y <= upper[below])).mean())

    assert capped.q[0] > 1.5 * plain.q[0]
    assert coverage(plain) < 0.85
    assert 0.94 <= coverage(capped) <= 0.97
    assert plain.rows == 4000 and 700 < capped.rows < 900  # the runs below the cap
