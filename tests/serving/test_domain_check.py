"""The constraint check of ``serving._predict`` on the spindle spec: rows that agree in
the inputs the constraints read are checked once, and every row still gets exactly the
violations its own row-by-row evaluation gives, on both sides of ``ROW_BY_ROW``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests._trained import random_inputs
from tests.serving.test_api import ORDER


def _direct(spec: Any, row: dict[str, Any]) -> list[str]:
    names = spec.row_namespace(row)
    return [
        c.expr
        for c, e in zip(spec.constraints, spec.constraint_exprs, strict=True)
        if e.evaluate_row(names) == 0.0
    ]


@pytest.mark.parametrize("distinct", [5, 60])
def test_grouped_rows_get_their_own_violations(spindle_spec: Any, distinct: int) -> None:
    from serving import _predict

    spec = spindle_spec
    rng = np.random.default_rng(distinct)
    drawn = random_inputs(spec, rng, 40 * distinct)
    pool = [
        {k: v[i].item() for k, v in drawn.items()} | {"quantity": 1.0} for i in range(40 * distinct)
    ]
    # Random rows of the DOE bounds nearly all break a constraint (1 in 100 passes):
    # the passing half are the order of the API tests at spindle speeds 0.1 % apart.
    good = [
        pool[0] | ORDER | {"spindle_speed": 5300.0 * (1 + i / 1000)} for i in range(distinct // 2)
    ]
    assert not any(_direct(spec, r) for r in good)
    base = good + [r for r in pool if _direct(spec, r)][: distinct - len(good)]
    other = random_inputs(spec, rng, 4 * distinct)
    keys = set(spec.constraint_inputs)
    rows = []
    for j in range(4 * distinct):  # each distinct row four times, the rest redrawn
        i = j % distinct
        rows.append(
            {k: base[i][k] if k in keys else other[k][j].item() for k in spec.inputs}
            | {"quantity": float(1 + j)}
        )
    violations: list[list[dict[str, Any]]] = [[] for _ in rows]
    _predict._check_constraints(SimpleNamespace(spec=spec), rows, violations)
    got = [[v["value"] for v in vs] for vs in violations]
    assert got == [_direct(spec, r) for r in rows]
    assert any(got) and not all(got)  # both kinds of row are there
    assert (distinct <= _predict.ROW_BY_ROW) == (distinct == 5)
    messages = {c.expr: c.message for c in spec.constraints}
    assert all(
        v["expected"] == messages[v["value"]] and v["field"] == "constraint"
        for vs in violations
        for v in vs
    )
