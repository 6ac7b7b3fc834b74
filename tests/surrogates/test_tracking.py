"""MLflow tracking/registry layer and diagnostic plots, against a real local store.

One module-scoped training run (SQLite store + local artifacts in a temporary
folder) is shared by the tests that only read it; tests that change the registry
use their own registered names.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from surrogates import _plots, _tracking
from surrogates._tracking import (
    DEFAULT_ARTIFACTS,
    PromotionError,
    TrainingRun,
    configure,
    dataset_digest,
    log_bundle,
    log_verification,
    model_uri,
    promote,
    set_gate,
    tracking_uri,
)

pytest.importorskip("mlflow")
pytest.importorskip("onnxruntime")

W = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], dtype=np.float32)
STD_SCALE = np.float32(0.1)
EXPERIMENT = "spindle-surrogate"
MODEL = "spindle_tiny"
BUNDLE_HASH = "b3f1c0ffee"
EPOCHS = 5

CARD = {
    "format": "asset-twin-dataset/1",
    "spec": {"name": "milling_spindle", "version": 2, "hash": "160fd8e6b640"},
    "counts": {"ok": 6, "error": 0, "rows": 6, "failed": 0, "pending": 0},
    "chunks": [
        {"name": "runs-000001.parquet", "size": 2048, "sha256": "bb"},
        {"name": "runs-000000.parquet", "size": 4096, "sha256": "aa"},
    ],
    "created": "2026-12-01T05:44:51+00:00",
}


def expected(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.astype(np.float32) @ W
    return mean, np.abs(mean) * STD_SCALE + np.float32(0.01)


def write_bundle(folder: Path) -> Path:
    """A tiny ONNX graph: mean = x @ W, std = |mean| * 0.1 + 0.01, plus signature.json."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mean"]),
        helper.make_node("Abs", ["mean"], ["abs_mean"]),
        helper.make_node("Mul", ["abs_mean", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "floor"], ["std"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_ensemble",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("std", TensorProto.FLOAT, ["N", 2]),
        ],
        [
            numpy_helper.from_array(W, "W"),
            numpy_helper.from_array(np.array(STD_SCALE, np.float32), "scale"),
            numpy_helper.from_array(np.array(0.01, np.float32), "floor"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    signature = {
        "bundle_hash": BUNDLE_HASH,
        "inputs": [{"name": n, "unit": "mm"} for n in ("a", "b", "c")],
        "outputs": [{"name": "torque", "unit": "N*m"}, {"name": "temp", "unit": "K"}],
    }
    (folder / "signature.json").write_text(json.dumps(signature, indent=2))
    (folder / "MODEL_CARD.md").write_text("# tiny\n")
    return folder


@dataclass
class Logged:
    workdir: Path
    bundle: Path
    run_id: str
    version: int
    example: np.ndarray
    history: list[dict[str, float]]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    import mlflow
    import pandas as pd

    workdir = tmp_path_factory.mktemp("mlflow-work")
    bundle = write_bundle(workdir / "bundle")
    example = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    history = [
        {"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "lr": 1e-3 * 0.9**e}
        for e in range(EPOCHS)
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        with TrainingRun(
            EXPERIMENT, run_name="tiny", workdir=workdir, tags={"asset": "spindle"}
        ) as run:
            run.log_params(
                {
                    "model": {"members": 5, "hidden": [64, 64], "act": "silu"},
                    "lr": 1e-3,
                    "notes": "x" * 7000,
                }
            )
            for row in history:
                run.log_epoch(int(row["epoch"]), row)
            run.log_metrics({"rmse[torque] (N·m)": 0.25, "r2:torque": 0.99}, prefix="test")
            frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "torque": [5.0, 6.0]})
            run.log_dataset(CARD, frame, name="spindle-doe", source=workdir / "dataset")
            y = {"torque": np.arange(5.0)}
            fig = _plots.parity_plots(y, {"torque": np.arange(5.0) + 0.1}, {"torque": "N*m"})
            run.log_figure(fig, "plots/parity.png")
            run.log_text("# card\n", "model_card.md")
            run.log_artifact(bundle / "signature.json", "extra")
            run_id = run.run_id
        version = log_bundle(run_id, bundle, registered_name=MODEL, input_example=example)
        yield Logged(workdir, bundle, run_id, version, example, history)
        # MLflow copied the URI into os.environ; leave no store configured behind us.
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


@pytest.fixture
def store(logged: Logged, monkeypatch: pytest.MonkeyPatch) -> Logged:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    configure(logged.workdir)
    return logged


def client():  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient()


# -- store location ------------------------------------------------------------------------


def test_tracking_uri_defaults_to_sqlite_in_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.absolute() / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    assert tracking_uri().endswith(f"{tmp_path.absolute()}/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(tmp_path) == "http://mlflow.example:5000"


def test_configure_is_not_mistaken_for_a_user_setting(
    store: Logged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mlflow.set_tracking_uri() copies the URI into os.environ; it must not stick.
    a = configure(tmp_path / "a")
    assert os.environ["MLFLOW_TRACKING_URI"] == a
    assert tracking_uri(tmp_path / "b") == f"sqlite:///{(tmp_path / 'b').absolute() / 'mlflow.db'}"
    # A store the user chose: runs go there and no artifact location is imposed.
    user = f"sqlite:///{tmp_path / 'user.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user)
    monkeypatch.chdir(tmp_path)
    with (
        pytest.raises(RuntimeError, match="boom"),
        TrainingRun("elsewhere", workdir=tmp_path) as run,
    ):
        raise RuntimeError("boom")
    assert run.uri == user
    c = client()
    assert c.get_run(run.run_id).info.status == "FAILED"
    location = c.get_experiment(run.experiment_id).artifact_location
    assert DEFAULT_ARTIFACTS not in location


def test_importing_the_modules_imports_nothing_heavy() -> None:
    code = (
        "import sys, surrogates._tracking, surrogates._plots\n"
        "print(' '.join(m for m in ('mlflow', 'onnx', 'matplotlib', 'onnxruntime')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


# -- the run -------------------------------------------------------------------------------


def test_run_params_metrics_and_epoch_history(store: Logged) -> None:
    run = client().get_run(store.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tiny"
    assert run.data.tags["asset"] == "spindle"
    params = run.data.params
    assert params["model.members"] == "5"
    assert params["model.hidden"] == "[64, 64]"
    assert params["model.act"] == "silu"
    assert params["lr"] == "0.001"
    assert len(params["notes"]) == 6000
    metrics = run.data.metrics
    assert metrics["test/rmse_torque_ _N_m_"] == pytest.approx(0.25)
    assert metrics["test/r2_torque"] == pytest.approx(0.99)
    history = client().get_metric_history(store.run_id, "val_loss")
    assert len(history) == EPOCHS
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(EPOCHS))
    assert sorted(history, key=lambda m: m.step)[-1].value == pytest.approx(1.2 / EPOCHS)
    assert len(client().get_metric_history(store.run_id, "lr")) == EPOCHS
    assert "epoch" not in metrics  # the step already says it


def test_dataset_input_has_card_digest_and_context(store: Logged) -> None:
    inputs = client().get_run(store.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    assert ds.name == "spindle-doe"
    assert ds.digest == dataset_digest(CARD)
    assert json.loads(ds.source)["uri"] == str(store.workdir / "dataset")
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"


def test_dataset_digest_is_stable_and_follows_the_card() -> None:
    reordered = dict(reversed(list(CARD.items())))
    reordered["chunks"] = list(reversed(CARD["chunks"]))  # type: ignore[call-overload]
    reordered["created"] = "another day"
    assert dataset_digest(reordered) == dataset_digest(CARD)
    assert len(dataset_digest(CARD)) <= 36
    more = {**CARD, "counts": {**CARD["counts"], "ok": 7}}  # type: ignore[dict-item]
    assert dataset_digest(more) != dataset_digest(CARD)
    bigger = {**CARD, "chunks": [{"name": "runs-000000.parquet", "size": 1}]}
    assert dataset_digest(bigger) != dataset_digest(CARD)
    assert dataset_digest({**CARD, "digest": "given-1234"}) == "given-1234"


def test_artifacts_include_figure_text_and_bundle(store: Logged) -> None:
    c = client()

    def paths(folder: str | None = None) -> set[str]:
        return {a.path for a in c.list_artifacts(store.run_id, folder)}

    assert {"plots", "model_card.md", "extra", "bundle"} <= paths()
    assert paths("plots") == {"plots/parity.png"}
    assert paths("bundle") == {"bundle/model.onnx", "bundle/signature.json", "bundle/MODEL_CARD.md"}
    assert paths("extra") == {"extra/signature.json"}
    local = c.download_artifacts(store.run_id, "plots/parity.png", str(store.workdir / "dl"))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Artifacts live in <workdir>/mlartifacts/<experiment>, not in the cwd.
    assert (store.workdir / "mlartifacts" / EXPERIMENT).is_dir()


def test_registered_version_and_its_tags(store: Logged) -> None:
    assert store.version == 1
    mv = client().get_model_version(MODEL, "1")
    assert mv.run_id == store.run_id
    assert mv.tags["bundle_hash"] == BUNDLE_HASH
    assert mv.tags["run_id"] == store.run_id
    assert "gate" not in mv.tags


def test_log_verification_adds_metrics_to_the_finished_run(store: Logged) -> None:
    log_verification(store.run_id, {"rmse.torque": 0.3, "coverage/90%": 0.91})
    run = client().get_run(store.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["verify/rmse.torque"] == pytest.approx(0.3)
    assert run.data.metrics["verify/coverage/90_"] == pytest.approx(0.91)


# -- gate and promotion --------------------------------------------------------------------


def test_promotion_follows_the_gate(store: Logged) -> None:
    import mlflow.onnx
    import onnxruntime as ort

    name = "spindle_gate"
    v1 = log_bundle(store.run_id, store.bundle, registered_name=name, input_example=store.example)
    v2 = log_bundle(store.run_id, store.bundle, registered_name=name, input_example=store.example)
    assert (v1, v2) == (1, 2)

    with pytest.raises(PromotionError, match="never verified") as never:
        promote(name, v1)
    assert (never.value.name, never.value.version) == (name, 1)

    failures = ["rmse.torque 0.41 > 0.30 N*m", "coverage90.temp 0.71 < 0.85"]
    set_gate(name, v1, passed=False, failures=failures)
    with pytest.raises(PromotionError) as failed:
        promote(name, v1)
    assert failed.value.failures == failures
    assert "gate failed" in str(failed.value)
    for line in failures:
        assert line in str(failed.value)

    set_gate(name, v1, passed=True, failures=[])
    with pytest.raises(PromotionError, match="never verified"):
        promote(name)  # the latest version is 2, which nobody verified
    assert promote(name, v1) == 1
    assert int(client().get_model_version_by_alias(name, "champion").version) == 1

    proto = mlflow.onnx.load_model(model_uri(name))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]], dtype=np.float32)
    mean, std = session.run(["mean", "std"], {"x": x})
    want_mean, want_std = expected(x)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(std, want_std, rtol=1e-6)


def test_model_uri() -> None:
    assert model_uri("m") == "models:/m@champion"
    assert model_uri("m", "challenger") == "models:/m@challenger"


def test_key_sanitizing() -> None:
    assert _tracking.sanitize_key("a:b µ/../c//d") == "a_b _/c/d"
    assert _tracking.sanitize_key("/lead") == "lead"
    assert _tracking.sanitize_key("") == "_"


# -- serving the champion ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return int(resp.status)


def test_mlflow_serves_the_champion(store: Logged) -> None:
    name = "spindle_served"
    version = log_bundle(
        store.run_id, store.bundle, registered_name=name, input_example=store.example
    )
    set_gate(name, version, passed=True, failures=[])
    promote(name, version)

    port = _free_port()
    bindir = str(Path(sys.executable).parent)  # `mlflow models serve` runs `uvicorn` from PATH
    uri = tracking_uri(store.workdir)
    env = {
        **os.environ,
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
    }
    log = store.workdir / f"serve-{port}.log"
    cmd = [os.path.join(bindir, "mlflow"), "models", "serve", "-m", model_uri(name)]
    cmd += ["--env-manager", "local", "--port", str(port), "--host", "127.0.0.1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited {proc.returncode}:\n{log.read_text()}")
            try:
                if _get(f"http://127.0.0.1:{port}/ping") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready after 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)

        x = [[1.0, 2.0, 3.0], [0.25, -0.5, 4.0]]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": x}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            body = json.loads(resp.read())
        want_mean, want_std = expected(np.array(x))
        np.testing.assert_allclose(body["predictions"]["mean"], want_mean, rtol=1e-6)
        np.testing.assert_allclose(body["predictions"]["std"], want_std, rtol=1e-6)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


# -- plots ---------------------------------------------------------------------------------


@pytest.fixture
def kpis() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
    rng = np.random.default_rng(0)
    names = ["torque", "temp", "wear", "roughness"]
    y_true = {k: rng.normal(10 * (i + 1), 2, 200) for i, k in enumerate(names)}
    y_pred = {k: v + rng.normal(0, 0.3, v.size) for k, v in y_true.items()}
    y_true["wear"][3] = np.nan  # failed runs are NaN rows
    units = {"torque": "N*m", "temp": "K", "wear": "µm", "roughness": "µm"}
    return y_true, y_pred, units


def _panels(fig) -> int:  # type: ignore[no-untyped-def]
    return len(fig.axes)


def test_parity_plots_one_panel_per_kpi(kpis) -> None:  # type: ignore[no-untyped-def]
    y_true, y_pred, units = kpis
    lower = {k: v - 0.5 for k, v in y_pred.items()}
    upper = {k: v + 0.5 for k, v in y_pred.items()}
    fig = _plots.parity_plots(y_true, y_pred, units, lower=lower, upper=upper)
    assert _panels(fig) == 4
    assert "R² = 0.9" in fig.axes[0].get_title()
    assert fig.axes[0].get_xlabel() == "simulated torque [N*m]"
    fig.canvas.draw()
    assert _panels(_plots.parity_plots({"a": np.ones(3)}, {"a": np.ones(3)}, {})) == 1


def test_residual_histograms(kpis) -> None:  # type: ignore[no-untyped-def]
    y_true, y_pred, units = kpis
    fig = _plots.residual_histograms(y_true, y_pred, units)
    assert _panels(fig) == 4
    assert "[K]" in fig.axes[1].get_xlabel()
    fig.canvas.draw()


def test_learning_curves(logged: Logged) -> None:
    fig = _plots.learning_curves(logged.history)
    assert _panels(fig) == 2  # losses + learning-rate twin axis
    assert fig.axes[0].get_yscale() == "log"
    fig.canvas.draw()
    nll = [{"epoch": e, "train_loss": 1.0 - e, "val_loss": 1.5 - e} for e in range(4)]
    fig = _plots.learning_curves(nll)
    assert _panels(fig) == 1
    assert fig.axes[0].get_yscale() == "symlog"
    fig.canvas.draw()


def test_reliability_plot() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 500)
    events = {"out_of_spec": p, "tool_worn": p**2}
    outcomes = {k: rng.uniform(0, 1, v.size) < v for k, v in events.items()}
    fig = _plots.reliability_plot(events, outcomes)
    assert _panels(fig) == 1
    fig.canvas.draw()
    levels = np.array([0.5, 0.8, 0.9, 0.95])
    coverage = {"torque": (levels, levels - 0.02), "temp": (levels, levels + 0.01)}
    fig = _plots.reliability_plot(events, outcomes, coverage=coverage)
    assert _panels(fig) == 2
    assert "coverage" in fig.axes[1].get_xlabel()
    fig.canvas.draw()
