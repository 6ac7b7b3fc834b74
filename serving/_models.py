"""Model bundles as the service holds them: one onnxruntime session per model, loaded once.

A source is a bundle folder (``signature.json``, ``model.onnx``, ``spec.yaml``) or a
registry alias ``models:/<name>@<alias>``, whose version's ``bundle/`` artifacts are
downloaded into a cache folder first (mlflow is imported only then, so a folder-only
deployment runs without it). The model file's sha256 must equal the signature's
``bundle_hash``: a bundle changed after export is refused.

``ModelSet`` holds the loaded models. A reload builds the new session beside the old
one and swaps a reference: requests in flight finish on the model they started with.
The request schemas are derived from the specs at start-up, so a replacement must keep
the ``schema_key`` of the model first served under its name (``ModelSet.schema_key``).

Where a model's training domain is narrower than its spec (the DOE varied the quantity
over 1-100 parts of the 1-500 the spec admits), an order in the gap is valid but
answered UNDECIDED: ``domain_gaps`` lists each such input, the load logs a warning and
``GET /v1/models/{name}`` shows them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from physics.spec import TwinSpec, load_spec
from serving._errors import ModelLoadError, NotFound

__all__ = ["LoadedModel", "ModelNotFound", "ModelSet", "load_model", "pinned_source"]

FORMAT = "asset-twin-bundle/1"
log = logging.getLogger("asset_twin.serving")


class ModelNotFound(ModelLoadError):
    """The source names nothing: no such bundle folder, or not in the registry."""


# Rows per onnxruntime call for a large batch (see ``LoadedModel.run``).
RUN_ROWS = 256


@dataclass
class LoadedModel:
    """A bundle with its session; ``run`` answers raw float32 rows."""

    name: str
    source: str
    version: str  # registry version, or "folder"
    folder: Path
    signature: dict[str, Any]
    spec: TwinSpec
    session: Any  # onnxruntime.InferenceSession
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def bundle_hash(self) -> str:
        return str(self.signature["bundle_hash"])

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return list(self.signature["inputs"])

    @property
    def regression_names(self) -> list[str]:
        return list(self.signature["outputs"].get("mean", []))

    @property
    def event_names(self) -> list[str]:
        return list(self.signature["outputs"].get("probability", []))

    @property
    def level(self) -> float:
        return float(self.signature["interval"]["level"])

    @cached_property
    def domain_gaps(self) -> list[dict[str, Any]]:
        """The inputs whose training domain is narrower than the spec's range."""
        return domain_gaps(self.spec, self.inputs)

    @property
    def schema_key(self) -> str:
        """What the request schema is derived from: a reload must keep it."""
        cols = [(c["name"], c["kind"], c.get("unit"), c.get("choices")) for c in self.inputs]
        return hashlib.sha256(json.dumps(cols).encode()).hexdigest()

    @cached_property
    def _io(self) -> tuple[list[str], str]:
        return [o.name for o in self.session.get_outputs()], self.signature["model"]["input"]

    def run(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph for rows [N, inputs] (float32).

        A single row runs as two copies of itself: onnxruntime's matrix product takes
        another kernel for one row than for several, whose float32 sums differ in the
        last digits, while any number of rows from two up gives each row the same bits.
        So a row's answer does not depend on which requests shared its model call
        (``serving._fastpath``) or on whether it came alone."""
        names, input_name = self._io
        n = raw.shape[0]
        if n == 1:
            out = self.session.run(names, {input_name: np.repeat(raw, 2, axis=0)})
            return {name: value[:1] for name, value in zip(names, out, strict=True)}
        if n <= 2 * RUN_ROWS:
            return dict(zip(names, self.session.run(names, {input_name: raw}), strict=True))
        # Large batches run in slices of RUN_ROWS: the graph's cost per row grows with the
        # batch once its activations leave the cache (on the demo bundle, one thread:
        # 11.6 us a row at 256 rows, 19.6 at 10,000). The last slice keeps at least two
        # rows, so each row's bits are those of any call of two rows or more.
        cuts = list(range(RUN_ROWS, n - 1, RUN_ROWS))
        parts = [self.session.run(names, {input_name: chunk})
                 for chunk in np.split(raw, cuts)]
        return {name: np.concatenate([p[k] for p in parts])
                for k, name in enumerate(names)}

    def describe(self) -> dict[str, Any]:
        sig = self.signature
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "bundle_hash": self.bundle_hash,
            "spec": sig["spec"],
            "loaded_at": self.loaded_at.isoformat(),
            "inputs": [_input_text(self.spec, c) for c in self.inputs],
            "outputs": {
                name: {
                    "unit": k["unit"],
                    "role": k["role"],
                    "kind": k["kind"],
                    "description": self.spec.kpis[name].description,
                }
                for name, k in sig["kpis"].items()
            },
            "interval": {"level": self.level, "method": sig["interval"]["method"]},
            "domain_gaps": self.domain_gaps,
            "constraints": sig["constraints"],
            "metrics": {
                "verification": sig["metrics"].get("verification"),
                "gate": sig.get("gate"),
            },
            "dataset": sig.get("dataset"),
        }


def _input_text(spec: TwinSpec, column: dict[str, Any]) -> dict[str, Any]:
    name = column["name"]
    out = {
        "name": name,
        "kind": column["kind"],
        "unit": column.get("unit"),
        "source": column.get("source"),
    }
    if name == "quantity":
        out.update(
            description=spec.require_quantity().description or "planned quantity",
            min=spec.require_quantity().min,
            max=spec.require_quantity().max,
        )
    else:
        inp = spec.inputs[name]
        out.update(description=inp.description, min=inp.min, max=inp.max, default=inp.default)
    if column.get("choices"):
        out["choices"] = column["choices"]
        lo, hi = int(column["min"]), int(column["max"])
        out["training_domain"] = {"choices": column["choices"][lo : hi + 1]}
    else:
        out["training_domain"] = {"min": column["min"], "max": column["max"]}
    return out


def domain_gaps(spec: TwinSpec, columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per signature column whose trained range (or choices) is narrower than the spec
    allows: ``{input, unit, spec: [lo, hi], trained: [lo, hi]}`` for numbers (with the
    share of the spec's range covered), ``{input, spec_choices, trained_choices}`` for
    choices and booleans. An order in a gap is valid, but answered UNDECIDED."""
    gaps: list[dict[str, Any]] = []
    for col in columns:
        name = col["name"]
        lo, hi = float(col["min"]), float(col["max"])
        if name == "quantity":
            q = spec.require_quantity()
            bounds: tuple[float | None, float | None] = (q.min, q.max)
            kind = "integer" if q.integer else "real"
        else:
            inp = spec.inputs[name]
            bounds, kind = (inp.min, inp.max), inp.kind
        if kind in ("categorical", "boolean"):
            allowed: list[Any] = list(col.get("choices") or [False, True])
            trained = allowed[int(lo) : int(hi) + 1]
            if len(trained) < len(allowed):
                gaps.append({"input": name, "spec_choices": allowed,
                             "trained_choices": trained})
            continue
        slo, shi = bounds
        if slo is None or shi is None or not (lo > slo or hi < shi):
            continue
        gaps.append({"input": name, "unit": col.get("unit"), "spec": [slo, shi],
                     "trained": [lo, hi],
                     "covered": round((hi - lo) / (shi - slo), 4) if shi > slo else 1.0})
    return gaps


def _gap_text(gap: dict[str, Any]) -> str:
    if "spec" not in gap:
        return (f"{gap['input']} trained on {', '.join(map(str, gap['trained_choices']))} "
                f"of {', '.join(map(str, gap['spec_choices']))}")
    unit = "" if gap["unit"] in (None, "", "1") else f" {gap['unit']}"
    (slo, shi), (lo, hi) = gap["spec"], gap["trained"]
    return f"{gap['input']} trained {lo:.6g}-{hi:.6g} of {slo:.6g}-{shi:.6g}{unit}"


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Small models on a web server: one thread per request, no spinning between calls
    # (spinning threads burn the cores the HTTP workers need).
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Without buffer reuse between nodes, a surrogate's ~1,000 small nodes run about a
    # tenth faster at batch 1, at the same peak memory at batch 1,024 (the spindle's graph).
    opts.enable_mem_reuse = False
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def read_bundle(folder: Path) -> dict[str, Any]:
    """The signature of a bundle folder, checked against its model file."""
    path = folder / "signature.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder}: not a model bundle (no signature.json)")
    try:
        signature: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None
    if signature.get("format") != FORMAT:
        raise ModelLoadError(
            f"{path}: format {signature.get('format')!r}, expected {FORMAT!r}"
        )
    model = folder / signature["model"]["file"]
    if not model.is_file() or not (folder / signature["spec"]["file"]).is_file():
        raise ModelLoadError(f"{folder}: the bundle lacks its model or spec file")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    if digest != signature["bundle_hash"]:
        raise ModelLoadError(
            f"{model}: sha256 {digest[:12]}, the signature says "
            f"{signature['bundle_hash'][:12]}: the bundle was changed after export"
        )
    return signature


def _from_registry(uri: str, cache: Path, tracking_uri: str | None) -> tuple[Path, str]:
    """Download the bundle of ``models:/<name>@<alias>`` (or ``/<version>``)."""
    try:
        import mlflow
        from mlflow import MlflowClient
    except ImportError:
        raise ModelLoadError(
            f"{uri}: registry sources need mlflow (pip install mlflow-skinny); "
            "or serve the bundle folder"
        ) from None
    ref = uri.removeprefix("models:/")
    name, sep, alias = ref.partition("@")
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient()
    try:
        if sep:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, number = ref.partition("/")
            mv = client.get_model_version(name, number)
    except Exception as exc:  # MlflowException: unknown name or alias
        raise ModelNotFound(f"{uri}: not in the registry ({exc})") from None
    target = cache / f"{name}-v{mv.version}"
    if not (target / "bundle" / "signature.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        client.download_artifacts(str(mv.run_id), "bundle", str(target))
    return target / "bundle", str(mv.version)


def load_model(
    source: str, *, threads: int = 1, cache: Path = Path(".twin-models"),
    tracking_uri: str | None = None,
) -> LoadedModel:
    """Load one model source; ModelLoadError says what is wrong with it (ModelNotFound
    when the source names nothing)."""
    try:
        return _load(source, threads, cache, tracking_uri)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # An unreadable file, a path the OS refuses, a signature without its keys.
        raise ModelLoadError(f"{source}: cannot be read as a model bundle "
                             f"({type(exc).__name__}: {exc})") from None


def _load(source: str, threads: int, cache: Path, tracking_uri: str | None) -> LoadedModel:
    if source.startswith("models:/"):
        folder, version = _from_registry(source, cache, tracking_uri)
    else:
        folder, version = Path(source), "folder"
        if not folder.is_dir():
            raise ModelNotFound(f"{source}: no such bundle folder")
    signature = read_bundle(folder)
    try:
        spec = load_spec(folder / signature["spec"]["file"])
    except ValueError as exc:
        raise ModelLoadError(f"{folder}: its spec does not load: {exc}") from None
    if spec.spec_hash != signature["spec"]["hash"]:
        raise ModelLoadError(f"{folder}: spec.yaml does not match the hash in the signature")
    try:
        session = _session(folder / signature["model"]["file"], threads)
    except Exception as exc:  # onnxruntime's own errors: not a graph it can run
        raise ModelLoadError(f"{folder}: onnxruntime cannot load the model ({exc})") from None
    model = LoadedModel(
        name=signature["name"], source=source, version=version, folder=folder,
        signature=signature, spec=spec, session=session,
    )
    if model.domain_gaps:
        log.warning(
            "model %s (%s): the training domain is narrower than spec %s for %d inputs; "
            "orders there are answered UNDECIDED: %s", model.name, source, spec.name,
            len(model.domain_gaps), "; ".join(_gap_text(g) for g in model.domain_gaps))
    return model


def pinned_source(source: str, version: str) -> str:
    """The source of exactly ``version``: ``models:/<name>@<alias>`` becomes
    ``models:/<name>/<version>``; a folder stays itself."""
    if not source.startswith("models:/") or version == "folder":
        return source
    name = source.removeprefix("models:/").partition("@")[0].partition("/")[0]
    return f"models:/{name}/{version}"


class ModelSet:
    """The models a process serves, by name; swapped whole on reload."""

    def __init__(self, models: list[LoadedModel] | None = None) -> None:
        self._models = {m.name: m for m in models or []}
        # The request schemas were derived from these: what every replacement must keep.
        self._schema_keys = {m.name: m.schema_key for m in models or []}
        self._lock = threading.Lock()

    def schema_key(self, name: str) -> str | None:
        """The schema key of the model first served under ``name`` (None: never served)."""
        return self._schema_keys.get(name)

    def names(self) -> list[str]:
        return sorted(self._models)

    def get(self, name: str) -> LoadedModel:
        model = self._models.get(name)
        if model is None:
            raise NotFound(
                f"no model {name!r} is loaded; loaded: {', '.join(self.names()) or 'none'}"
            )
        return model

    def find(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    def all(self) -> list[LoadedModel]:
        return [self._models[n] for n in self.names()]

    def put(self, model: LoadedModel) -> LoadedModel | None:
        """Serve ``model`` from now on; returns the one it replaces."""
        with self._lock:
            old = self._models.get(model.name)
            models = dict(self._models)
            models[model.name] = model
            self._schema_keys.setdefault(model.name, model.schema_key)
            self._models = models  # one reference swap: readers never see a half state
        return old


def peek_spec(
    source: str, *, cache: Path = Path(".twin-models"), tracking_uri: str | None = None
) -> TwinSpec:
    """The twin spec of a source, without building its session (request schemas)."""
    if source.startswith("models:/"):
        folder, _ = _from_registry(source, cache, tracking_uri)
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise ModelLoadError(f"{source}: no such bundle folder")
    signature = read_bundle(folder)
    return load_spec(folder / signature["spec"]["file"])
