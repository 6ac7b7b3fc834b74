"""Verification designs of a twin spec: the slices and partitions ``twin verify`` judges.

A spec's ``verification`` section names the regions an MES asks about, so a surrogate
is judged there and not only on average over its training design::

    verification:
      slices:
        uniform: {}                                   # the DOE's own distribution
        corners: {design: corners}                    # factors near their bounds
        shop:                                         # the state a running shop keeps
          factors: {warmup: {low: 0.7, high: 1}, tool_wear: {low: 0.15, high: 0.3}}
      partitions: [material]                          # coverage per choice

A slice is a design of its own: the DOE's factors with some narrowed to a band (a
factor entry here overrides the DOE's fields it names) and drawn with an emphasis
(``physics.doe.warp``). ``twin verify`` simulates each from its own seed and scores
every acceptance threshold on it. A partition splits the pooled runs of all slices by
the choices of a categorical or boolean factor. Without a section, verification is
one uniform slice and no partitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from physics._spec_text import fmt, name_problem, suggest

if TYPE_CHECKING:
    from physics.spec import FactorSpec, SliceSpec, TwinSpec

DEFAULT_SLICE = "uniform"


def slices_of(spec: TwinSpec) -> dict[str, SliceSpec]:
    """The spec's verification slices, in declaration order (one uniform slice when the
    spec declares none)."""
    from physics.spec import SliceSpec

    if spec.verification is None:
        return {DEFAULT_SLICE: SliceSpec(description="the DOE's own distribution")}
    return dict(spec.verification.slices)


def partitions_of(spec: TwinSpec) -> list[str]:
    return [] if spec.verification is None else list(spec.verification.partitions)


def merged_factor(base: FactorSpec, override: FactorSpec) -> FactorSpec:
    """The DOE's factor with the fields the slice names replaced."""
    from physics.spec import FactorSpec

    fields = {**base.model_dump(exclude_unset=True), **override.model_dump(exclude_unset=True)}
    return FactorSpec.model_validate(fields)


def slice_spec(spec: TwinSpec, name: str) -> TwinSpec:
    """``spec`` with its DOE narrowed to slice ``name`` (the emphasis is the slice's
    ``design``, passed to the design separately)."""
    sl = slices_of(spec)[name]
    if not sl.factors:
        return spec
    doe = spec.doe
    assert doe is not None  # check_verification refuses slices without a DOE
    factors = {
        k: merged_factor(f, sl.factors[k]) if k in sl.factors else f
        for k, f in doe.factors.items()
    }
    return spec.model_copy(update={"doe": doe.model_copy(update={"factors": factors})})


def describe_slice(name: str, sl: SliceSpec) -> str:
    """One line: the slice's name, emphasis and bands."""
    bands = []
    for key, f in sl.factors.items():
        if f.choices is not None:
            bands.append(f"{key} in {{{', '.join(map(fmt, f.choices))}}}")
        else:
            low = "" if f.low is None else fmt(f.low)
            high = "" if f.high is None else fmt(f.high)
            bands.append(f"{key} {low}..{high}")
    parts = [sl.design, *bands]
    text = f"{name}: {', '.join(parts)}"
    return f"{text} ({sl.description})" if sl.description else text


def partition_masks(spec: TwinSpec, frame: Any) -> dict[str, np.ndarray]:
    """``{"factor=choice": row mask}`` for every partition and choice present in ``frame``."""
    out: dict[str, np.ndarray] = {}
    for key in partitions_of(spec):
        column = frame[key].to_numpy()
        for value in dict.fromkeys(column.tolist()):
            out[f"{key}={fmt(value) if isinstance(value, bool) else value}"] = column == value
    return out


def check_verification(
    spec: TwinSpec,
    p: list[str],
    check_factor: Callable[[str, str, FactorSpec, TwinSpec, list[str]], None],
) -> None:
    """Structure checks of ``spec.verification`` (``check_factor``: the DOE's own check of
    one factor, applied to each slice's merged factor)."""
    v = spec.verification
    assert v is not None
    if spec.doe is None:
        p.append("verification: needs a doe section (slices narrow its factors)")
        return
    if not v.slices:
        p.append("verification.slices: empty; give at least one slice")
    factors = spec.doe.factors
    for name, sl in v.slices.items():
        at = f"verification.slices.{name}"
        if problem := name_problem(name, reserved=False):
            p.append(f"{at}: {problem}")
        for key, f in sl.factors.items():
            if key not in factors:
                p.append(f"{at}.factors.{key}: not a DOE factor{suggest(key, factors)}")
                continue
            check_factor(f"{at}.factors.{key}", key, merged_factor(factors[key], f), spec, p)
    seen: set[str] = set()
    for i, key in enumerate(v.partitions):
        at = f"verification.partitions[{i}]"
        if key in seen:
            p.append(f"{at}: {key!r} is listed twice")
        seen.add(key)
        if key not in factors:
            p.append(f"{at}: {key!r} is not a DOE factor{suggest(key, factors)}")
        elif spec.factor_domain(key)[0] not in ("boolean", "categorical"):
            p.append(f"{at}: {key!r} is a {spec.factor_domain(key)[0]} factor; a partition "
                     "needs a categorical or boolean one")
