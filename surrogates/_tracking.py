"""MLflow tracking and registry for surrogate training.

The embedded default is a SQLite store (``mlflow.db``) with artifacts in a local
folder (``mlartifacts/<experiment>``), both in the working folder; setting
``MLFLOW_TRACKING_URI`` points everything at a real server instead.

mlflow, onnx and onnxruntime are imported inside the functions that use them, so
importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

DEFAULT_STORE = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"

# MLflow's own limits (mlflow.utils.validation), restated so this module stays import-free.
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
MAX_DIGEST = 36
_BATCH_METRICS = 1000
_BATCH_PARAMS = 100

GATE_TAG = "gate"
GATE_FAILURES_TAG = "gate_failures"
BUNDLE_HASH_TAG = "bundle_hash"
RUN_ID_TAG = "run_id"

_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-./ ]+")


# -- where the store lives ----------------------------------------------------------------


# mlflow.set_tracking_uri() also writes MLFLOW_TRACKING_URI into os.environ (so that
# subprocesses inherit it). What configure() put there must not later pass for a
# server the user chose, so remember it.
_configured: dict[str, str | bool | None] = {"uri": None, "from_env": False}


def _user_tracking_env() -> str | None:
    """MLFLOW_TRACKING_URI when the user set it (not when configure() left it there)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if not env:
        return None
    if env == _configured["uri"] and not _configured["from_env"]:
        return None
    return env


def tracking_uri(workdir: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store in ``workdir`` (default: cwd)."""
    env = _user_tracking_env()
    if env:
        return env
    db = (Path(workdir) if workdir is not None else Path.cwd()).absolute() / DEFAULT_STORE
    return f"sqlite:///{db}"


def configure(workdir: Path | None = None) -> str:
    """Point MLflow's tracking and registry at :func:`tracking_uri`; return that URI.

    ``MLFLOW_REGISTRY_URI``, when set, still wins for the registry. Note that MLflow
    copies the tracking URI into ``os.environ["MLFLOW_TRACKING_URI"]``.
    """
    import mlflow

    from_env = _user_tracking_env() is not None
    uri = tracking_uri(workdir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI") or uri)
    _configured.update(uri=uri, from_env=from_env)
    return uri


def _client() -> MlflowClient:
    """A client on the configured store (configuring the default one if nobody did)."""
    import mlflow
    from mlflow import MlflowClient

    if not mlflow.is_tracking_uri_set():
        configure()
    return MlflowClient()


# -- names and values MLflow accepts --------------------------------------------------------


def sanitize_key(name: str) -> str:
    """A metric/param name MLflow accepts on every platform (ASCII, no colon, no '..')."""
    key = _BAD_KEY_CHARS.sub("_", str(name))
    parts = [p for p in key.split("/") if p not in ("", ".", "..")]
    key = "/".join(parts).strip()
    return key[:MAX_KEY] or "_"


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    return prefix + name if prefix.endswith(("/", ".", "_", "-")) else f"{prefix}/{name}"


def flatten_params(params: Mapping[str, Any], parent: str = "") -> dict[str, str]:
    """Nested mappings flattened with dots; values as strings cut to MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{parent}.{key}" if parent else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, name))
        else:
            text = value if isinstance(value, str) else _to_text(value)
            flat[sanitize_key(name)] = text[:MAX_PARAM_VALUE]
    return flat


def _to_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        try:
            return json.dumps(list(value), default=str)
        except (TypeError, ValueError):
            pass
    return str(value)


def _metric_entities(metrics: Mapping[str, float], *, step: int, prefix: str = "") -> list[Any]:
    from mlflow.entities import Metric
    from mlflow.utils.time import get_current_time_millis

    now = get_current_time_millis()
    return [
        Metric(sanitize_key(_join(prefix, str(k))), float(v), now, int(step))
        for k, v in metrics.items()
    ]


def _log_metric_batch(client: MlflowClient, run_id: str, entities: Sequence[Any]) -> None:
    for i in range(0, len(entities), _BATCH_METRICS):
        client.log_batch(run_id, metrics=entities[i : i + _BATCH_METRICS])


# -- datasets ------------------------------------------------------------------------------


def _chunk_entries(card: Mapping[str, Any]) -> list[list[Any]]:
    """(name, size, checksum) of every chunk the card lists, sorted by name."""
    raw = None
    for key in ("chunks", "manifest", "files"):
        if card.get(key):
            raw = card[key]
            break
    if raw is None:
        return []
    items: list[Mapping[str, Any]]
    if isinstance(raw, Mapping):
        items = [
            {"name": name, **(info if isinstance(info, Mapping) else {"size": info})}
            for name, info in raw.items()
        ]
    else:
        items = [i if isinstance(i, Mapping) else {"name": i} for i in raw]
    entries = []
    for item in items:
        name = item.get("name") or item.get("file") or item.get("path")
        size = item.get("size", item.get("bytes"))
        checksum = item.get("sha256") or item.get("checksum")
        entries.append([Path(str(name)).name, size, checksum])
    return sorted(entries, key=lambda e: str(e[0]))


def dataset_digest(card: Mapping[str, Any]) -> str:
    """A stable digest of a dataset card (at most MLflow's 36 characters).

    The card's own ``digest`` when it has one; else a hash of the twin spec hash, the
    row counts, and the chunk names/sizes (and checksums) when the card lists chunks.
    Key order, timestamps and paths do not change it.
    """
    if card.get("digest"):
        return str(card["digest"])[:MAX_DIGEST]
    spec = card.get("spec")
    spec_hash = spec.get("hash") if isinstance(spec, Mapping) else None
    basis = {
        "spec_hash": spec_hash or card.get("spec_hash"),
        "counts": card.get("counts"),
        "chunks": _chunk_entries(card),
    }
    blob = json.dumps(basis, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _dataset_source(card: Mapping[str, Any], name: str) -> str:
    for key in ("folder", "path", "dir", "dataset_dir", "source"):
        value = card.get(key)
        if isinstance(value, str | Path) and str(value):
            return str(value)
    return name


# -- runs -----------------------------------------------------------------------------------


def _ensure_experiment(client: MlflowClient, name: str, workdir: Path | None) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    location = None
    if _user_tracking_env() is None:
        root = (Path(workdir) if workdir is not None else Path.cwd()).absolute()
        location = (root / DEFAULT_ARTIFACTS / name).as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:  # another process created it between the lookup and now
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


class TrainingRun:
    """One MLflow run, as a context manager.

    ``__init__`` configures the store and creates the experiment if missing; entering
    starts the run (nested when another run is active); leaving ends it FINISHED, or
    FAILED/KILLED when an exception escapes. Every method logs through a client with
    the run's id, so it also works from other threads.
    """

    def __init__(
        self,
        experiment: str,
        *,
        run_name: str | None = None,
        workdir: Path | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.experiment = experiment
        self.run_name = run_name
        self.workdir = workdir
        self.tags = dict(tags or {})
        self.uri = configure(workdir)
        self.experiment_id = _ensure_experiment(_client(), experiment, workdir)
        self._run_id: str | None = None

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            raise RuntimeError("TrainingRun: enter the context (`with TrainingRun(...)`) first")
        return self._run_id

    def __enter__(self) -> TrainingRun:
        import mlflow

        run = mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=self.run_name,
            tags=self.tags or None,
            nested=mlflow.active_run() is not None,
        )
        self._run_id = run.info.run_id
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import mlflow

        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        active = mlflow.active_run()
        if active is not None and active.info.run_id == self._run_id:
            mlflow.end_run(status=status)
        elif self._run_id is not None:
            _client().set_terminated(self._run_id, status=status)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) parameters; dotted names, string values cut to 6000 characters."""
        from mlflow.entities import Param

        flat = [Param(k, v) for k, v in flatten_params(params).items()]
        client = _client()
        for i in range(0, len(flat), _BATCH_PARAMS):
            client.log_batch(self.run_id, params=flat[i : i + _BATCH_PARAMS])

    def log_epoch(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log one epoch's values (losses, learning rate) at ``step`` in one request.

        An ``epoch`` key is dropped: it is the step already.
        """
        values = {k: v for k, v in metrics.items() if k != "epoch"}
        _log_metric_batch(_client(), self.run_id, _metric_entities(values, step=step))

    def log_metrics(self, metrics: Mapping[str, float], *, prefix: str = "") -> None:
        """Log final metrics; names get ``prefix/`` and are made acceptable to MLflow."""
        _log_metric_batch(_client(), self.run_id, _metric_entities(metrics, step=0, prefix=prefix))

    def log_dataset(
        self,
        card: Mapping[str, Any],
        frame: pandas.DataFrame,
        *,
        name: str,
        context: str = "training",
        source: str | Path | None = None,
    ) -> None:
        """Record the dataset a stage used as a run input, digest from its card.

        ``source`` defaults to the folder the card names (``folder``/``path``), else
        ``name``; physics' cards do not record their own folder, so pass it.
        """
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        src = str(source) if source is not None else _dataset_source(card, name)
        with warnings.catch_warnings():
            # A local path matches two registered source types that are the same class.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            # The schema is only a description here; integer inputs are meant as integers.
            warnings.filterwarnings("ignore", message=".*Inferred schema contains integer")
            dataset = from_pandas(frame, source=src, name=name, digest=dataset_digest(card))
            entity = dataset._to_mlflow_entity()  # the schema is inferred here
        tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
        _client().log_inputs(self.run_id, datasets=[DatasetInput(entity, tags=tags)])

    def log_figure(self, fig: Figure, artifact_file: str) -> None:
        """Save a matplotlib figure as a run artifact (``plots/parity.png``)."""
        _client().log_figure(self.run_id, fig, artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a file, or a folder (under ``artifact_path``, default: its own name)."""
        path = Path(path)
        client = _client()
        if path.is_dir():
            client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        elif path.is_file():
            client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log a string as a text artifact (``model_card.md``)."""
        _client().log_text(self.run_id, text, artifact_file)


# -- bundles and the registry ------------------------------------------------------------


def log_bundle(
    run_id: str,
    bundle_dir: Path,
    *,
    registered_name: str,
    input_example: np.ndarray,
    input_name: str = "x",
    execution_providers: Sequence[str] = ("CPUExecutionProvider",),
) -> int:
    """Log a bundle's ``model.onnx`` (mlflow.onnx flavour) into a run and register it.

    The signature comes from ``input_example`` and what onnxruntime returns for it; the
    whole bundle folder is logged under ``bundle``; the new version is tagged with the
    bundle hash (``signature.json``) and the run id. Returns the version number.
    """
    import mlflow
    import mlflow.onnx
    import numpy as np
    import onnx
    import onnxruntime as ort
    from mlflow.models import infer_signature

    bundle_dir = Path(bundle_dir)
    model_path = bundle_dir / "model.onnx"
    if not model_path.is_file():
        raise FileNotFoundError(f"{bundle_dir}: no model.onnx")
    bundle_hash = _bundle_hash(bundle_dir)

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    if inputs != [input_name]:
        raise ValueError(f"{model_path}: inputs are {inputs}, expected [{input_name!r}]")
    dtype = {"tensor(double)": np.float64}.get(session.get_inputs()[0].type, np.float32)
    example = np.asarray(input_example, dtype=dtype)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {input_name: example}), strict=True))
    signature = infer_signature({input_name: example}, outputs)

    client = _client()
    metadata = {BUNDLE_HASH_TAG: bundle_hash} if bundle_hash else None
    active = mlflow.active_run()
    resume = active is None or active.info.run_id != run_id
    status = client.get_run(run_id).info.status
    run_ctx = mlflow.start_run(run_id=run_id, nested=active is not None) if resume else None
    try:
        info = mlflow.onnx.log_model(
            onnx.load(str(model_path)),
            name="model",
            signature=signature,
            input_example={input_name: example},
            registered_model_name=registered_name,
            onnx_execution_providers=list(execution_providers),
            metadata=metadata,
            # What MLflow would infer, without the 2-3 s subprocess it spends inferring it.
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"numpy=={np.__version__}",
                f"onnx=={onnx.__version__}",
                f"onnxruntime=={ort.__version__}",
            ],
        )
    finally:
        if run_ctx is not None:
            # Resuming marks the run RUNNING; put its status back as it was.
            mlflow.end_run(status=status if status != "RUNNING" else "FINISHED")
            if status == "RUNNING":  # still running elsewhere (another process)
                client.update_run(run_id, status="RUNNING")
    client.log_artifacts(run_id, str(bundle_dir), "bundle")

    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"{registered_name}: MLflow did not return a model version")
    if bundle_hash:
        client.set_model_version_tag(registered_name, str(version), BUNDLE_HASH_TAG, bundle_hash)
    client.set_model_version_tag(registered_name, str(version), RUN_ID_TAG, run_id)
    return int(version)


FMU_TAG = "fmu"


def log_fmu(run_id: str, fmu: Path, *, registered_name: str, version: int, fmi_version: str,
            ) -> str:  # fmt: skip
    """Log the bundle's FMU into the version's run (``fmu/<name>.fmu``) and tag the version
    with where it is (``fmu`` = the artifact path, ``fmu_fmi`` = its FMI version)."""
    client = _client()
    folder = f"fmu/fmi{fmi_version[0]}"
    client.log_artifact(run_id, str(fmu), folder)
    where = f"{folder}/{Path(fmu).name}"
    client.set_model_version_tag(registered_name, str(version), FMU_TAG, where)
    client.set_model_version_tag(registered_name, str(version), "fmu_fmi", fmi_version)
    return where


def _bundle_hash(bundle_dir: Path) -> str | None:
    sig = bundle_dir / "signature.json"
    if not sig.is_file():
        return None
    value = json.loads(sig.read_text()).get("bundle_hash")
    return str(value) if value else None


MAX_TAG_CHARS = 5000


def log_verification(run_id: str, metrics: Mapping[str, float], *, prefix: str = "verify") -> None:
    """Add verification metrics (``verify/<name>``) to a run, finished or not."""
    client = _client()
    _log_metric_batch(client, run_id, _metric_entities(metrics, step=0, prefix=prefix))


def set_gate(name: str, version: int, *, passed: bool, failures: Sequence[str]) -> None:
    """Record a version's acceptance gate: ``gate=passed|failed`` and ``gate_failures``."""
    client = _client()
    client.set_model_version_tag(name, str(version), GATE_TAG, "passed" if passed else "failed")
    text = "\n".join(failures)
    if len(text) > MAX_TAG_CHARS:  # MLflow's limit on a tag value; the bundle keeps all
        text = text[: MAX_TAG_CHARS - 40].rsplit("\n", 1)[0] + f"\n... {len(failures)} in all"
    client.set_model_version_tag(name, str(version), GATE_FAILURES_TAG, text)


class PromotionError(Exception):
    """A model version that may not take the alias, and why."""

    def __init__(
        self, name: str, version: int | None, failures: Sequence[str], *, reason: str = ""
    ) -> None:
        self.name = name
        self.version = version
        self.failures = list(failures)
        which = f"{name} version {version}" if version is not None else name
        why = f" ({reason})" if reason else ""
        super().__init__(f"{which} cannot be promoted{why}:\n  " + "\n  ".join(self.failures))


def _latest_version(client: MlflowClient, name: str) -> int:
    quoted = name.replace("'", "\\'")
    versions = [int(v.version) for v in client.search_model_versions(f"name='{quoted}'")]
    if not versions:
        raise PromotionError(name, None, ["no version of this model is registered"])
    return max(versions)


def promote(name: str, version: int | None = None, *, alias: str = "champion") -> int:
    """Give ``alias`` to a version (default: the latest) whose gate passed; return it.

    Raises :class:`PromotionError` naming each failed threshold, or saying the version
    was never verified when it has no gate tag.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    if version is None:
        version = _latest_version(client, name)
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise PromotionError(name, version, [f"not found in the registry ({exc.message})"]) from exc
    gate = mv.tags.get(GATE_TAG)
    if gate is None:
        raise PromotionError(
            name,
            version,
            ["never verified: it has no gate tag (run the verification first)"],
            reason="not verified",
        )
    if gate == "failed":
        text = mv.tags.get(GATE_FAILURES_TAG, "")
        failures = [line for line in text.splitlines() if line.strip()]
        raise PromotionError(
            name,
            version,
            failures or ["(no failed threshold was recorded)"],
            reason="its verification gate failed",
        )
    if gate != "passed":
        raise PromotionError(name, version, [f"gate tag is {gate!r}, not 'passed'"])
    client.set_registered_model_alias(name, alias, str(version))
    return int(version)


def model_uri(name: str, alias: str = "champion") -> str:
    """The registry URI of an alias: ``models:/<name>@<alias>``."""
    return f"models:/{name}@{alias}"
