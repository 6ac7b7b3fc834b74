"""`twin train | export | verify | promote` through the real `twin` command and a real
MLflow store (SQLite in the working folder), with a deliberately bad model that the
gate must refuse, then a good one that it lets through."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests._trained import SMALL, SPEC


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import mlflow

    # MLflow copies the URIs it is given into os.environ: start and end clean.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def _twin(*args: str) -> tuple[int, str]:
    from physics.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def test_bad_model_is_registered_but_not_promoted(workdir: Path, spindle_dataset: Path) -> None:
    from mlflow.tracking import MlflowClient

    from surrogates._tracking import configure

    code, out = _twin(
        "train", "--dataset", str(spindle_dataset), "--spec", str(SPEC), "--out", "bad",
        *_sets(["model.members=2", "model.hidden=[4]", "training.epochs=2"]),
    )  # fmt: skip
    assert code == 0, out
    assert "400 ok runs" in out and "trained in" in out
    code, out = _twin("export", "bad", "--out", "bad-bundle")
    assert code == 0, out
    assert "registered milling_spindle version 1" in out
    code, out = _twin("verify", "bad-bundle", "--n", "60", "--seed", "5", "--slice", "uniform",
                      "--slice", "corners", "--strict")  # fmt: skip
    assert code == 1, out
    assert "gate: FAILED" in out and "slice corners: wall_error_max.feasible: rmse" in out
    assert "pooled: wall_error_max.feasible: rmse" in out
    # the threshold table: one column per slice asked for, then the pooled runs
    assert re.search(r"threshold\s+uniform\s+corners\s+pooled", out), out
    assert "interval coverage per partition of the pooled runs:" in out
    code, out = _twin("promote", "milling_spindle")
    assert code == 1
    assert "milling_spindle version 1 cannot be promoted" in out
    assert "slice uniform: wall_error_max.feasible: rmse" in out

    configure()
    client = MlflowClient()
    version = client.get_model_version("milling_spindle", "1")
    assert version.tags["gate"] == "failed"
    run = client.get_run(version.run_id)
    assert run.data.params["model.members"] == "2"
    assert "test/wall_error_max.rmse" in run.data.metrics
    assert "verify/wall_error_max.rmse" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name == spindle_dataset.name
    assert not client.get_registered_model("milling_spindle").aliases


def test_good_model_passes_its_gate_and_is_promoted(workdir: Path) -> None:
    """The spindle's own thresholds need far more data than a test can afford; a spec
    whose acceptance asks what a 400-run surrogate reaches shows the passing path."""
    import mlflow.artifacts
    import mlflow.onnx
    import yaml
    from mlflow.tracking import MlflowClient

    from surrogates._tracking import configure, model_uri

    spec = yaml.safe_load(SPEC.read_text())
    spec["acceptance"] = {
        "bearing_speed_ratio": {"min_r2": 0.95, "max_rel_error": 0.5},
        "spindle_load_max": {"min_r2": 0.9},
        "tool_broken_end": {"max_mae": 0.15},
    }
    loose = workdir / "spindle.yaml"
    loose.write_text(yaml.safe_dump(spec, sort_keys=False))
    code, out = _twin("data", "generate", "--spec", str(loose), "--n", "400", "--seed", "3",
                      "--out", "data")  # fmt: skip
    assert code == 0, out
    # A dataset of another spec is refused before any work.
    code, out = _twin("train", "--dataset", "data", "--spec", str(SPEC), "--out", "x")
    assert code == 2 and "generate the dataset again from this spec" in out
    code, out = _twin("train", "--dataset", "data", "--spec", str(loose), "--out", "good",
                      *_sets(SMALL))  # fmt: skip
    assert code == 0, out
    code, out = _twin("export", "good", "--out", "good-bundle")
    assert code == 0, out
    code, out = _twin("verify", "good-bundle", "--n", "100", "--seed", "5", "--slice", "uniform",
                      "--strict")  # fmt: skip
    assert code == 0 and "gate: passed" in out, out
    code, out = _twin("promote", "milling_spindle")
    assert code == 0 and "milling_spindle@champion -> version 1" in out, out
    # the bundle as an FMU, registered beside it
    code, out = _twin("export", "good-bundle", "--fmu", "good.fmu")
    assert code == 0, out
    assert "logged to milling_spindle version 1: fmu/fmi2/good.fmu" in out

    configure()
    client = MlflowClient()
    assert client.get_registered_model("milling_spindle").aliases == {"champion": 1}
    tags = client.get_model_version("milling_spindle", "1").tags
    assert (tags["fmu"], tags["fmu_fmi"]) == ("fmu/fmi2/good.fmu", "2.0")
    run_id = client.get_model_version("milling_spindle", "1").run_id
    logged = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="fmu/fmi2/good.fmu")
    assert Path(logged).read_bytes() == (workdir / "good.fmu").read_bytes()
    assert client.get_model_version("milling_spindle", "1").tags["gate"] == "passed"
    model = mlflow.onnx.load_model(model_uri("milling_spindle"))
    assert {o.name for o in model.graph.output} == {"mean", "std", "lower", "upper",
                                                    "probability"}  # fmt: skip
