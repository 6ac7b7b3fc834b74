"""The model card: the signature, written for people (Markdown)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _metrics_table(metrics: Mapping[str, Mapping[str, float]], units: Mapping[str, str]) -> str:
    lines = [
        "| KPI | n | NRMSE | R² | RMSE | max abs error | coverage | mean width |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    events = []
    for name, m in metrics.items():
        if "accuracy" in m:
            events.append((name, m))
            continue
        unit = units.get(name.removesuffix(".increment"), "")
        lines.append(
            f"| {name} | {int(m['n'])} | {100 * m['nrmse']:.2f} % | {_fmt(m['r2'])} | "
            f"{_fmt(m['rmse'])} {unit} | {_fmt(m['max_abs_error'])} {unit} | "
            f"{100 * m['coverage']:.1f} % | {_fmt(m['mean_width'])} {unit} |"
        )
    if events:
        lines += [
            "",
            "| event | n | events | accuracy | Brier | AUC |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, m in events:
            lines.append(
                f"| {name} | {int(m['n'])} | {int(m['events'])} | {100 * m['accuracy']:.2f} % | "
                f"{m['brier']:.4f} | {_fmt(m['auc'])} |"
            )
    return "\n".join(lines)


def _domain_row(i: Mapping[str, Any]) -> str:
    head = f"| {i['name']} | {i.get('unit') or ''} | "
    if "choices" in i:
        return head + " / ".join(i["choices"]) + " | |"
    return head + f"{_fmt(i['min'])} | {_fmt(i['max'])} |"


def _slice_section(ver: Mapping[str, Any]) -> list[str]:
    """Per slice and per partition part: each regression's interval coverage (and RMSE),
    each event's accuracy."""
    out: list[str] = []
    groups = [("slice", {k: v["kpis"] for k, v in ver.get("slices", {}).items()}),
              ("partition", ver.get("partitions", {}))]  # fmt: skip
    for what, columns in groups:
        if not columns:
            continue
        names = list(columns)
        kpis = list(next(iter(columns.values())))
        out += [
            f"Per {what} (regressions: coverage of the interval; events: accuracy):",
            "",
            "| KPI | " + " | ".join(names) + " |",
            "| --- |" + " ---: |" * len(names),
        ]
        for kpi in kpis:
            cells = []
            for name in names:
                m = columns[name].get(kpi)
                if m is None:
                    cells.append("")
                elif "accuracy" in m:
                    cells.append(f"{100 * m['accuracy']:.1f} %")
                else:
                    cells.append(f"{100 * m['coverage']:.1f} %" if m["n"] else "")
            out.append(f"| {kpi} | " + " | ".join(cells) + " |")
        out.append("")
    if ver.get("slices"):
        out += ["Slices: " + "; ".join(
            f"{v['design']}, {v['runs']} runs, seed {v['seed']}" for v in ver["slices"].values()
        ) + ".", ""]  # fmt: skip
    return out


def model_card(sig: Mapping[str, Any]) -> str:
    units = {k: v["unit"] for k, v in sig["kpis"].items()}
    model = sig["model"]
    data = sig["dataset"]
    doe = data.get("doe", {})
    gate = sig["gate"]
    kinds: dict[str, list[str]] = {}
    for name, k in sig["kpis"].items():
        label = k["kind"] + (f" ({k['transform']})" if k["kind"] == "regression" else "")
        notes = [f"its increment over {k['start']}"] if k.get("start") else []
        if k.get("baseline"):
            notes.append(
                f"equal to the spec's {k['baseline']} to rounding"
                if k["kind"] == "constant"
                else f"learned as its difference from {k['baseline']}"
            )
        if k.get("cap") is not None:
            notes.append(f"censored at its cap {k['cap']:g}, never reported above it")
        shown = f"{name} ({'; '.join(notes)})" if notes else name
        kinds.setdefault(label, []).append(shown)
    parts = [
        f"# Surrogate of {sig['name']} (spec v{sig['spec']['version']})",
        "",
        f"Bundle hash `{sig['bundle_hash']}`; spec hash `{sig['spec']['hash'][:16]}`; "
        f"created {sig['created']}.",
        "",
        "## What it is",
        "",
        f"A deep ensemble of {model['members']} members"
        + (" with one small MLP per KPI" if model["per_kpi"] else " of shared MLPs")
        + f" (hidden {model['hidden']}, {model['activation']}; {model['parameters']:,} "
        f"parameters, {model['nodes']} ONNX nodes, opset {model['opset']}), "
        "trained on FMU simulations of the twin spec. It takes the spec's raw inputs "
        f"({len(sig['inputs'])} float32 columns, categorical inputs as the index of their "
        "choice) and computes its features inside the graph, the spec's derived "
        "expressions included.",
        "",
        "Outputs: `mean`, `std` (the members' spread), `lower` and `upper` (a "
        f"{100 * sig['interval']['level']:.0f} % interval, {sig['interval']['method']}, "
        f"calibrated on {sig['interval']['calibration_rows']} held-out runs) per KPI, and "
        "`probability` per event.",
        "",
        "## Choices",
        "",
        _events_line(sig["events"])
        + (
            "Every other KPI is regressed on the runs where no event occurred: an event "
            "changes them all at once (the machine halts), so the regressions answer "
            '"what happens if it does not", beside the event\'s probability.'
            if sig["events"]["names"]
            else ""
        ),
        *(f"- {label}: {', '.join(names)}" for label, names in sorted(kinds.items())),
        "- Predictions are clipped to 10 % beyond each KPI's training range (in the "
        "transformed space), so extrapolation cannot explode.",
        "",
        "## Data",
        "",
        f"Dataset `{data.get('path')}`: DOE {doe.get('method')} seed {doe.get('seed')}, "
        f"{data.get('rows_ok')} ok runs "
        f"(failed, not learned: {data.get('rows_failed') or 'none'}), "
        f"FMU sha256 `{str(data.get('fmu_sha256'))[:16]}`. Splits by DOE point: "
        + ", ".join(f"{k} {v}" for k, v in sig["splits"].items())
        + ".",
        "",
        "Training domain (min / max seen in training; outside it the MES gets UNDECIDED):",
        "",
        "| input | unit | min | max |",
        "| --- | --- | ---: | ---: |",
        *(_domain_row(i) for i in sig["inputs"]),
        "",
        "## Accuracy on the test split",
        "",
        _metrics_table(sig["metrics"]["test"], units),
        "",
        "## Verification against fresh FMU runs",
        "",
    ]
    ver = sig["metrics"].get("verification")
    if ver:
        parts += [
            f"{ver['runs']} fresh runs ({ver['design']}), not from the training data:",
            "",
            _metrics_table(ver["kpis"], units),
            "",
            *_slice_section(ver),
        ]
    else:
        parts += ["Not verified yet (`twin verify`).", ""]
    parts += [f"## Gate: {gate['status']}", ""]
    parts += [f"- {f}" for f in gate["failures"]] or [
        "Every acceptance threshold of the spec is met."
    ]
    parts += _seed_section(sig.get("seed_spread"))
    parity = sig["parity"]["max_relative_difference"]
    parts += [
        "",
        "## Export check",
        "",
        "onnxruntime against PyTorch on the test split, largest relative difference: "
        + ", ".join(f"{k} {v:.1e}" for k, v in parity.items())
        + f" (limit {sig['parity']['rtol']:g}).",
        "",
        *_fmu_section(sig),
    ]
    return "\n".join(parts)


def _fmu_section(sig: Mapping[str, Any]) -> list[str]:
    """How to take the model into an FMI importer (surrogates/_fmu.py)."""
    events = list(sig["outputs"].get("probability") or [])
    first = (sig["outputs"].get("mean") or ["KPI"])[0]
    return [
        "## As an FMU",
        "",
        "`twin export BUNDLE --fmu OUT.fmu [--fmi 2|3] [--choices enumeration|integer]` writes "
        "this model as a co-simulation FMU: the graph as plain C (no runtime inside), "
        "built by the project's FMI framework, its sources in `sources/` and this card and "
        "the signature in `resources/`, checked through fmpy against onnxruntime on 1,000 "
        "rows before it is kept (and logged to the model version's run, `fmu/`).",
        "",
        f"Inputs: the {len(sig['inputs'])} inputs above, with the spec's units and bounds "
        "(categorical ones as enumerations, or integers numbered from 1 with `--choices "
        f"integer`). Outputs per KPI: `{first}` (the mean), `{first}_std`, `{first}_lower` "
        f"and `{first}_upper` (the {sig['interval']['level']:.0%} interval)"
        + (f"; per event `{events[0]}_probability`" if events else "")
        + "; `in_domain` and `domain_violations` (inputs outside the training domain: read "
        "no decision from a row outside it). The outputs follow the inputs held during a "
        "step; any step size will do.",
        "",
    ]


def _seed_section(record: Mapping[str, Any] | None) -> list[str]:
    """The acceptance thresholds over training seeds (experiments/seed_spread.py --card):
    how many every seed meets, and each one met by chance or by none, per slice."""
    if not record:
        return []
    n = len(record["bundles"])
    seeds = ", ".join(str(s) for s in record["seeds"])
    lines = [
        "",
        "## Margin over training seeds",
        "",
        f"The same training with seeds {seeds} (bundles "
        + ", ".join(f"`{b}`" for b in record["bundles"])
        + f"), each verified on the same fresh runs: {record['always']} checks (a threshold "
        f"on a slice, the pooled runs or a partition's part) are met by every seed, "
        f"{record['sometimes']} by some (met by chance), {record['never']} by none.",
    ]
    shaky = [(row["threshold"], column, c) for row in record["rows"]
             for column, c in row["cells"].items() if c["met"] < n]  # fmt: skip
    if shaky:
        lines += ["", "| threshold | slice | lowest..highest | seeds meeting it |",
                  "| --- | --- | --- | ---: |"]  # fmt: skip
        lines += [f"| {t} | {column} | {_fmt(c['low'])}..{_fmt(c['high'])} | {c['met']}/{n} |"
                  for t, column, c in shaky]  # fmt: skip
    return lines


def _events_line(events: dict[str, Any]) -> str:
    """How each event's probability is made: a calibrated classifier, or derived from
    the margins it follows."""
    margins = events.get("margins") or {}
    learned = [n for n in events["names"] if n not in margins]
    parts = []
    if learned:
        parts.append(f"Events {', '.join(learned)} are calibrated classifiers (temperature "
                     "scaling). ")  # fmt: skip
    for name, follows in margins.items():
        parts.append(
            f"{name} is not learned: it occurs when any of {', '.join(follows)} reaches 1, "
            "and its probability is that chance, 0 or 1 for a derived margin and, for a "
            "learned one, from a normal law whose central interval is the calibrated "
            "one. "
        )
    return "- " + ("".join(parts) if parts else "Events: none. ")
