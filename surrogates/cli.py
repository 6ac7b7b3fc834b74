"""``twin train | export | verify | promote``: the surrogate stage of the ``twin`` command.

    twin train   --dataset DIR --out RUN [--config FILE] [--spec FILE] [--set KEY=VALUE ...]
    twin train   --adaptive --budget N --out RUN [--initial N0] [--batch B] [--holdout H]
    twin export  RUN --out BUNDLE [--no-register] [--fmu OUT.fmu [--fmi 2|3]]
    twin export  BUNDLE --fmu OUT.fmu [--fmi 2|3] [--choices enumeration|integer]
    twin verify  BUNDLE [--n 300] [--seed 9001] [--out DIR] [--slice NAME ...] [--strict]
    twin promote NAME [--version V]

Loaded by ``twin`` through the ``asset_twin.commands`` entry points; torch, onnx and
mlflow are imported inside the commands, so listing them costs nothing. Every run
is tracked in MLflow (a SQLite store ``mlflow.db`` in the working folder unless
MLFLOW_TRACKING_URI says otherwise; ``--no-track`` to skip). Exit codes: 0 done,
1 a check failed (parity, gate with --strict, promotion refused), 2 bad input.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from physics._cli_errors import fail
from physics._cli_errors import handle_errors as _physics_errors

F = TypeVar("F", bound=Callable[..., Any])


def _handle(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from physics.expr import ExpressionError
        from surrogates._errors import ParityError, SurrogateError
        from surrogates._tracking import PromotionError

        try:
            return _physics_errors(func)(*args, **kwargs)
        except PromotionError as exc:
            fail(str(exc), 1)
        except ParityError as exc:
            fail(str(exc), 1)
        except (SurrogateError, ExpressionError) as exc:
            fail(str(exc), 2)

    return wrapper  # type: ignore[return-value]


def _spec_for(spec_path: str | None, fallback: Any) -> Any:
    from physics.spec import load_spec

    path = spec_path or fallback
    if path is None:
        raise click.UsageError("no twin spec: give --spec, or name one in the config (spec:)")
    return load_spec(path), Path(path)


def _print_metrics(title: str, metrics: dict[str, dict[str, float]]) -> None:
    from surrogates._metrics import summary_row

    click.echo(title)
    for name, m in metrics.items():
        click.echo("  " + summary_row(name, m))


@click.command("train")
@click.option("--dataset", type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Training YAML.")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), help="Twin spec (YAML).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@click.option("--track/--no-track", default=True, show_default=True, help="Log to MLflow.")
@click.option(
    "--adaptive", is_flag=True, help="Sample where the ensemble is unsure (no --dataset)."
)
@click.option("--budget", type=int, help="Adaptive: training simulations at most.")
@click.option("--initial", type=int, help="Adaptive: the first Latin hypercube [budget / 4].")
@click.option("--batch", type=int, help="Adaptive: runs added per round [budget / 10].")
@click.option("--holdout", default=300, show_default=True, type=int,
              help="Adaptive: fresh runs the acceptance thresholds are checked on.")  # fmt: skip
@click.option(
    "--explore",
    default=0.0,
    show_default=True,
    type=float,
    help="Adaptive: share of each batch spread out instead of chosen by disagreement.",
)
@click.option("--workers", default=0, show_default=True, type=int, help="Worker processes.")
@_handle
def train(
    dataset: str | None,
    out: str,
    config_path: str | None,
    spec_path: str | None,
    overrides: tuple[str, ...],
    track: bool,
    adaptive: bool,
    budget: int | None,
    initial: int | None,
    batch: int | None,
    holdout: int,
    explore: float,
    workers: int,
) -> None:
    """Train a calibrated deep-ensemble surrogate on a dataset of `twin data generate`,
    or (--adaptive) on runs it chooses itself, round by round."""
    from surrogates._config import load_config
    from surrogates._fit import load_rows
    from surrogates._fit import train as fit

    config = load_config(config_path, overrides)
    spec, spec_file = _spec_for(spec_path, config.spec_path())
    if adaptive:
        adapted = _train_adaptive(spec, config, out, dataset, budget, initial, batch, holdout,
                                  explore, workers)  # fmt: skip
        rows, dataset = adapted.rows, str(Path(out) / "data")
    elif dataset is None:
        raise click.UsageError("give --dataset DIR, or --adaptive --budget N")
    elif budget is not None or initial is not None or batch is not None or explore:
        raise click.UsageError("--budget, --initial, --batch and --explore go with --adaptive")
    else:
        rows = load_rows(dataset, spec)  # refuses a dataset of another spec before any work
    failed = sum(rows.failed.values())
    click.echo(
        f"{spec.name}: {len(rows.frame)} ok runs"
        + (f", {failed} failed runs not learned ({rows.failed})" if failed else "")
    )
    with contextlib.ExitStack() as stack:
        tracker = None
        if track:
            from surrogates._tracking import TrainingRun

            tracker = stack.enter_context(
                TrainingRun(spec.name, run_name=f"train {Path(out).name}")
            )
        if adaptive:  # the final round's fit is the model: tracked, not trained again
            result = adapted.last
            if tracker is not None:
                for row in result.history.epochs:
                    tracker.log_epoch(int(row["epoch"]), row)
                tracker.log_params({"adaptive.rounds": len(adapted.rounds),
                                    "adaptive.met": adapted.met})  # fmt: skip
        else:
            on_epoch = None if tracker is None else tracker.log_epoch
            result = fit(rows, spec, config, out, dataset=dataset, progress=True,
                         on_epoch=on_epoch)  # fmt: skip
        result.surrogate.info["spec_file"] = str(spec_file.resolve())
        if tracker is not None:
            _log_training(tracker, result, rows, config)
            result.surrogate.info["mlflow_run_id"] = tracker.run_id
        result.surrogate.save(Path(out))
    info = result.surrogate.info
    click.echo(
        f"trained in {info['training']['seconds']:.1f} s, {info['training']['epochs_run']} epochs; "
        f"features {len(result.surrogate.features.features)}; saved {out}"
    )
    _print_metrics("test split (rows without an event for regressions):", result.test_metrics)


def _train_adaptive(
    spec: Any,
    config: Any,
    out: str,
    dataset: str | None,
    budget: int | None,
    initial: int | None,
    batch: int | None,
    holdout: int,
    explore: float,
    workers: int,
) -> Any:
    """The adaptive loop (surrogates._adaptive.AdaptiveResult); its final fit is the model."""
    from surrogates._adaptive import adaptive

    if dataset is not None:
        raise click.UsageError("--adaptive makes its own dataset (OUT/data): drop --dataset")
    if budget is None or budget < 1:
        raise click.UsageError("--adaptive needs --budget N (training simulations, N >= 1)")
    initial = initial or max(budget // 4, 40)
    batch = batch or max(budget // 10, 1)
    for name, value in (("initial", initial), ("batch", batch), ("holdout", holdout)):
        if value < 1:
            raise click.UsageError(f"--{name}: {value} must be >= 1")
    if not 0.0 <= explore <= 1.0:
        raise click.UsageError(f"--explore: {explore} must be in [0, 1]")
    result = adaptive(
        spec, config, out, budget=budget, initial=initial, batch=batch, holdout=holdout,
        seed=config.seed, workers=workers, explore=explore, progress=True,
        log=click.echo,
    )  # fmt: skip
    last = result.rounds[-1]
    verdict = "met" if result.met else f"not met ({len(last.failures)} thresholds missed)"
    click.echo(f"adaptive: {last.runs} training runs in {len(result.rounds)} rounds; "
               f"acceptance on {holdout} held-out runs {verdict}")  # fmt: skip
    return result


def _log_training(tracker: Any, result: Any, rows: Any, config: Any) -> None:
    from surrogates._plots import learning_curves, parity_plots, reliability_plot
    from surrogates._verify import flat_metrics

    tracker.log_params(
        {
            "spec": result.surrogate.info["spec_name"],
            "spec_hash": result.surrogate.info["spec_hash"],
            **config.model_dump(),
            "features": len(result.surrogate.features.features),
            "rows_ok": len(rows.frame),
        }
    )
    dataset_name = Path(result.surrogate.info["dataset"]["path"]).name
    tracker.log_dataset(
        rows.card, rows.frame, name=dataset_name, source=result.surrogate.info["dataset"]["path"]
    )
    tracker.log_metrics(flat_metrics(result.test_metrics), prefix="test")
    test = result.splits["test"]
    if len(test):
        pred = result.surrogate.predict_frame(test)
        quiet = pred.quiet_mask(test)
        names = [t.name for t in result.surrogate.targets.of_kind("regression")]
        y_true = {n: test[n].to_numpy(dtype=float)[quiet] for n in names}
        y_pred = {n: pred.column(n)[quiet] for n in names}
        units = {n: result.surrogate.spec.kpis[n].unit for n in result.surrogate.spec.kpis}
        tracker.log_figure(parity_plots(y_true, y_pred, units), "plots/parity_test.png")
        if pred.event_names:
            prob = {n: pred.probability[:, j] for j, n in enumerate(pred.event_names)}
            outcome = {n: test[n].to_numpy(dtype=float) for n in pred.event_names}
            tracker.log_figure(reliability_plot(prob, outcome), "plots/reliability_test.png")
    tracker.log_figure(learning_curves(result.history.epochs), "plots/learning_curves.png")


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Bundle folder (from a run).")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), help="Twin spec (YAML).")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Log the bundle (and FMU) to the training run in MLflow and register it.")
@click.option("--fmu", "fmu_path", type=click.Path(dir_okay=False),
              help="Also write the bundle as a co-simulation FMU (generated C, no runtime).")
@click.option("--fmi", type=click.Choice(["2", "3"]), default="2", show_default=True,
              help="FMI version of the FMU.")
@click.option("--choices", type=click.Choice(["enumeration", "integer"]), default="enumeration",
              show_default=True, help="Categorical inputs of the FMU as enumerations or "
              "integers (for importers without enumerations).")  # fmt: skip
@_handle
def export(run_dir: str, out: str | None, spec_path: str | None, register: bool,
           fmu_path: str | None, fmi: str, choices: str) -> None:  # fmt: skip
    """Export a trained surrogate as an ONNX model bundle, checked against PyTorch; or a
    bundle (or the new one) as an FMU, checked against onnxruntime."""
    if (Path(run_dir) / "signature.json").is_file():
        if out is not None:
            fail(f"--out: {run_dir} is a bundle already; give --fmu OUT.fmu to export it as "
                 "an FMU", 2)
        if fmu_path is None:
            fail(f"{run_dir} is a bundle: give --fmu OUT.fmu to export it as an FMU", 2)
        _export_fmu(Path(run_dir), Path(fmu_path), fmi, choices, register)
        return
    if out is None:
        fail(f"--out: missing (the bundle folder to export the run {run_dir} to)", 2)
    _export_bundle(run_dir, out, spec_path, register)
    if fmu_path is not None:
        _export_fmu(Path(out), Path(fmu_path), fmi, choices, register)


def _export_fmu(bundle: Path, fmu: Path, fmi: str, choices: str, register: bool) -> None:
    from surrogates._fmu import check_fmu, export_fmu

    made = export_fmu(bundle, fmu, fmi, choices)
    p = made.program
    click.echo(f"exported {fmu}: FMI {made.fmi_version} co-simulation, {len(made.inputs)} "
               f"inputs, {len(made.outputs)} outputs; {p.nodes} graph nodes as C, "
               f"{p.weights:,} constants, {p.workspace_bytes:,} bytes of workspace")  # fmt: skip
    click.echo(f"its twin spec: {made.spec} (twin fmu simulate --spec {made.spec} ...)")
    diffs = check_fmu(bundle, fmu)
    click.echo(f"parity FMU (fmpy) vs onnxruntime over {diffs.pop('rows'):.0f} rows, "
               f"{diffs.pop('outside'):.0f} outside the training domain (max difference over "
               "max(1, the KPI's scale)): " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    signature = json.loads((bundle / "signature.json").read_text())
    ml = signature.get("mlflow") or {}
    if register and ml.get("run_id") and ml.get("version"):
        from surrogates._tracking import log_fmu

        where = log_fmu(ml["run_id"], fmu, registered_name=ml["registered_name"],
                        version=int(ml["version"]), fmi_version=made.fmi_version)  # fmt: skip
        click.echo(f"logged to {ml['registered_name']} version {ml['version']}: {where}")


def _export_bundle(run_dir: str, out: str, spec_path: str | None, register: bool) -> None:
    from surrogates._bundle import write_bundle
    from surrogates._export import build_onnx, check_parity, session
    from surrogates._surrogate import Surrogate

    spec = None
    if spec_path is not None:
        from physics.spec import load_spec

        spec = load_spec(spec_path)
    s = Surrogate.load(Path(run_dir), spec)  # spec None: the one recorded at training
    spec = s.spec
    spec_file = Path(spec_path or s.info["spec_file"])
    proto = build_onnx(s)
    raw = _parity_rows(s, Path(run_dir))
    diffs = check_parity(s, session(proto), raw)
    signature = write_bundle(s, Path(out), proto=proto, parity=diffs, spec_file=spec_file)
    click.echo(
        f"exported {out}: {signature['model']['nodes']} nodes, "
        f"{signature['model']['parameters']:,} parameters, bundle {signature['bundle_hash'][:12]}"
    )
    click.echo("parity onnxruntime vs PyTorch (max relative): "
               + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))  # fmt: skip
    run_id = s.info.get("mlflow_run_id")
    if register and run_id:
        from surrogates._bundle import save_signature
        from surrogates._tracking import log_bundle

        version = log_bundle(run_id, Path(out), registered_name=spec.name, input_example=raw[:5])
        signature["mlflow"] = {"run_id": run_id, "registered_name": spec.name, "version": version}
        save_signature(Path(out), signature)
        click.echo(f"registered {spec.name} version {version} (run {run_id})")


def _parity_rows(s: Any, run_dir: Path) -> Any:
    """Raw rows of the test split (all rows when there is none) for the parity check."""
    from physics.dataset import read_runs

    frame = read_runs(s.info["dataset"]["path"]).to_pandas()
    frame = frame.loc[frame["status"] == "ok"]
    split = json.loads((run_dir / "split.json").read_text())
    ids = set(split.get("test") or split["train"])
    return s.raw(frame.loc[frame["run_id"].isin(ids)])


@click.command("verify")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--n", "n", default=300, show_default=True, type=int, help="Fresh FMU runs.")
@click.option("--seed", default=9001, show_default=True, type=int, help="Seed of their design.")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False),
              help="Twin spec (default: the bundle's own copy).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder of the runs (default: next to the bundle).")  # fmt: skip
@click.option("--workers", default=0, show_default=True, type=int, help="Worker processes.")
@click.option("--slice", "slices", multiple=True, metavar="NAME",
              help="Only this verification slice of the spec (repeatable; default all).")
@click.option("--strict", is_flag=True, help="Exit 1 when the gate fails.")
@_handle
def verify(
    bundle: str,
    n: int,
    seed: int,
    spec_path: str | None,
    out: str | None,
    workers: int,
    slices: tuple[str, ...],
    strict: bool,
) -> None:
    """Score a bundle against fresh FMU runs of every verification slice of the spec
    (n runs each) and apply the spec's acceptance gate to each slice, the pooled runs
    and each partition."""
    from surrogates._bundle import SPEC, read_signature
    from surrogates._verify import flat_metrics, partition_table, threshold_table
    from surrogates._verify import verify as run_verify

    signature = read_signature(bundle)
    spec, _ = _spec_for(spec_path, Path(bundle) / SPEC)
    folder = Path(out) if out else Path(bundle).parent / f"verify-seed{seed}-n{n}"
    result = run_verify(bundle, spec, n=n, seed=seed, out=folder, workers=workers,
                        progress=True, only=slices)  # fmt: skip
    _print_metrics(
        f"verification: {result.runs} fresh FMU runs over {len(result.slices)} slices in "
        f"{folder}, pooled",
        result.metrics,
    )
    click.echo("slices:")
    for r in result.slices.values():
        click.echo(f"  {r.design}: {r.runs} runs, seed {r.seed}")
    click.echo("acceptance thresholds per slice (! missed; slices: coverage below its "
               "threshold beyond chance, binomial p < 0.05):")
    for line in threshold_table(spec, result):
        click.echo(line)
    if table := partition_table(spec, result):
        click.echo("interval coverage per partition of the pooled runs:")
        for line in table:
            click.echo(line)
    ml = signature.get("mlflow")
    if ml:
        from surrogates._tracking import log_verification, set_gate

        figures = flat_metrics(result.metrics)
        for name, r in result.slices.items():
            figures.update({f"{name}.{k}": v for k, v in flat_metrics(r.metrics).items()})
        log_verification(ml["run_id"], figures)
        set_gate(ml["registered_name"], ml["version"], passed=not result.failures,
                 failures=result.failures)  # fmt: skip
    if result.failures:
        click.echo(f"gate: FAILED, {len(result.failures)} acceptance thresholds missed:")
        for line in result.failures:
            click.echo(f"  {line}")
        if strict:
            sys.exit(1)
    else:
        click.echo("gate: passed, every acceptance threshold of the spec is met")


@click.command("promote")
@click.argument("name")
@click.option("--version", "version", type=int, help="Model version (default: the latest).")
@_handle
def promote(name: str, version: int | None) -> None:
    """Point the registry alias `champion` at a version that passed its gate."""
    from surrogates._tracking import configure
    from surrogates._tracking import promote as do_promote

    configure()
    promoted = do_promote(name, version)
    click.echo(f"{name}@champion -> version {promoted}")
