"""The spindle FMU's chatter figures against beam theory and independent solutions.

The tool's mode against finite elements and the uniform cantilever's closed form; the
stability limit against a numpy semi-discretization of the same tooth period and a
dense-scan solution of the zeroth-order characteristic equation (chatter_reference.py);
the semi-discretization against the zeroth-order solution where that one is exact
enough (many teeth in a slot); the C eigenvalue solver against numpy's.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from physics.fmu import Fmu, fmu_for_model
from tests.physics import chatter_reference as cref
from tests.physics import spindle_reference as ref

MODEL_DIR = Path(__file__).resolve().parents[2] / "physics" / "models" / "spindle"
OUTPUTS = [
    "stability_limit",
    "stability_margin",
    "stability_method",
    "tool_frequency",
    "tool_modal_stiffness",
    "tip_stiffness",
    "tangent_cutting_coefficient",
]
C45_REFERENCE = {
    "material": "steel_c45",
    "tool_diameter": 12.0,
    "n_teeth": 4,
    "feed_per_tooth": 0.1,
    "spindle_speed": 1000 * 200 / (math.pi * 12),
    "axial_depth": 5.0,
    "radial_width": 5.0,
    "tool_overhang": 36.0,
}


@pytest.fixture(scope="module")
def fmu() -> Iterator[Fmu]:
    with Fmu(fmu_for_model("spindle")) as f:
        yield f


def constants(fmu: Fmu, p: dict) -> dict[str, float]:
    tr = fmu.simulate(
        ref.fmu_start_values(p), 1.0, step_size=1.0, output_interval=1.0, outputs=OUTPUTS
    )
    return {k: float(tr[k][0]) for k in OUTPUTS}


# ---- the tool-tip modes ----------------------------------------------------------------------


def test_a_uniform_tool_is_the_clamped_cantilever_of_beam_theory(fmu: Fmu) -> None:
    # Flutes over the whole overhang: beta1 L = 1.8751 (first root of 1 + cos cosh = 0),
    # modal mass at the tip a quarter of the beam's, static tip stiffness 3 EI / L^3.
    p = ref.params(**C45_REFERENCE, flute_length_ratio=10.0)
    out = constants(fmu, p)
    d, big_l = 1e-3 * p["tool_core_ratio"] * p["tool_diameter"], 1e-3 * p["tool_overhang"]
    ei = 1e6 * p["tool_modulus"] * math.pi * d**4 / 64
    mu = p["tool_density"] * math.pi * d * d / 4
    wn = 1.875104068711961**2 * math.sqrt(ei / (mu * big_l**4))
    assert out["tool_frequency"] == pytest.approx(wn / (2 * math.pi), rel=1e-10)
    assert out["tool_modal_stiffness"] == pytest.approx(1e-6 * wn**2 * mu * big_l / 4, rel=1e-8)
    k_tip = 1 / (big_l**3 / (3 * ei) + 1 / (1e6 * p["spindle_stiffness"]))
    assert out["tip_stiffness"] == pytest.approx(1e-6 * k_tip, rel=1e-10)


@pytest.mark.parametrize(
    "case",
    [
        {},
        {"tool_overhang": 60.0, "neck_length": 20.0, "neck_ratio": 0.9},
        {"tool_diameter": 6.0, "tool_overhang": 25.0},
    ],
)
def test_a_stepped_tool_mode_and_compliance_follow_finite_elements(fmu: Fmu, case: dict) -> None:
    p = ref.params(**{**C45_REFERENCE, **case})
    out = constants(fmu, p)
    wn, modal_mass = cref.beam_first_mode(cref.tool_beam(p), elements=60)
    # Hermite elements converge from above as h^4: 60 of them are within 1e-7 (more
    # lose it again to the conditioning of the stiffness matrix).
    assert out["tool_frequency"] == pytest.approx(wn / (2 * math.pi), rel=1e-6)
    assert out["tool_modal_stiffness"] == pytest.approx(1e-6 * wn * wn * modal_mass, rel=1e-5)
    assert out["tip_stiffness"] == pytest.approx(
        1e-3 / ref.tip_compliance(p, p["tool_overhang"]), rel=1e-10
    )
    # The shank (full D) is stiffer than the flutes: the stepped tool is stiffer than
    # one cantilever of the flutes' core over its whole overhang.
    uniform = constants(fmu, {**p, "flute_length_ratio": 10.0})
    assert out["tip_stiffness"] > uniform["tip_stiffness"]
    assert out["tool_frequency"] > uniform["tool_frequency"]


def test_a_tap_test_replaces_the_beam_model(fmu: Fmu) -> None:
    p = ref.params(**C45_REFERENCE, tool_mode_stiffness=12.0, tool_mode_frequency=4200.0)
    out = constants(fmu, p)
    assert out["tool_frequency"] == 4200.0
    assert out["tool_modal_stiffness"] == 12.0
    m = ref.MATERIAL_DATA["steel_c45"]
    hm = ref.geometry(p)["hm"]
    assert out["tangent_cutting_coefficient"] == pytest.approx(
        (1 - m["mc"]) * m["kc11"] * hm ** -m["mc"], rel=1e-12
    )


# ---- the stability limit -----------------------------------------------------------------------

LOW_IMMERSION = [
    # cuts the semi-discretization solves (few vibration periods per tooth pass)
    {
        "material": "steel_c45",
        "tool_diameter": 10.0,
        "n_teeth": 2,
        "spindle_speed": 16000.0,
        "feed_per_tooth": 0.05,
        "axial_depth": 8.0,
        "radial_width": 0.5,
        "tool_overhang": 40.0,
        "helix_angle": 0.0,
        "edge_contact_width": 0.0,
    },
    {
        "material": "aluminium_6061",
        "tool_diameter": 12.0,
        "n_teeth": 2,
        "spindle_speed": 24000.0,
        "feed_per_tooth": 0.08,
        "axial_depth": 12.0,
        "radial_width": 1.0,
        "tool_overhang": 60.0,
        "helix_angle": 30.0,
        "edge_contact_width": 0.05,
    },
]


def sdm_steps(p: dict, cut: cref.Cut) -> int:
    whi = max(m[1] for m in cut.modes)
    span = min(cut.phi_ex - cut.phi_st + cut.kappa * 1e-3 * p["axial_depth"], 2 * math.pi / cut.z)
    return max(
        12, math.ceil(p["stability_nodes_per_cycle"] * whi / (2 * math.pi) * span / cut.omega)
    )


@pytest.mark.parametrize("order", LOW_IMMERSION)
def test_low_immersion_limit_is_the_semi_discretization(fmu: Fmu, order: dict) -> None:
    p = ref.params(**order)
    out = constants(fmu, p)
    assert out["stability_method"] == 2
    cut = cref.cut_of(p)
    m = sdm_steps(p, cut)
    limit = cref.sdm_limit(cut, m, 3e-3 * p["axial_depth"])
    assert limit < 3e-3 * p["axial_depth"]  # a real crossing, not the search bound
    assert out["stability_limit"] == pytest.approx(1e3 * limit, rel=2e-4)
    assert out["stability_margin"] == pytest.approx(
        out["stability_limit"] / p["axial_depth"], rel=1e-12
    )
    # The discretization has converged to a few per cent: twice the steps move it little.
    finer = cref.sdm_limit(cut, 2 * m, 3e-3 * p["axial_depth"])
    assert finer == pytest.approx(limit, rel=0.04)


def test_dense_lobes_use_the_zeroth_order_characteristic_equation(fmu: Fmu) -> None:
    p = ref.params(**C45_REFERENCE)
    out = constants(fmu, p)
    assert out["stability_method"] == 1
    cut = cref.cut_of(p)
    assert out["stability_limit"] == pytest.approx(
        1e3 * cref.zoa_limit(cut, 3e-3 * p["axial_depth"]), rel=3e-4
    )
    assert out["stability_margin"] < 1  # this reference cut chatters on this machine


def test_semi_discretization_agrees_with_the_zeroth_order_solution_in_a_slot() -> None:
    # Six straight teeth in a full slot: the directional factor barely varies over the
    # tooth period, where the average-directional-factor solution is accurate.
    p = ref.params(
        **{
            **C45_REFERENCE,
            "n_teeth": 6,
            "radial_width": 12.0,
            "helix_angle": 0.0,
            "spindle_speed": 14000.0,
            "edge_contact_width": 0.0,
        }
    )
    cut = cref.cut_of(p)
    sdm = cref.sdm_limit(cut, 40, 0.05)
    zoa = cref.zoa_limit(cut, 0.05, scan=8000)
    assert sdm == pytest.approx(zoa, rel=0.06)


def test_process_damping_stabilises_low_speed_cuts_and_needs_the_flank_contact(fmu: Fmu) -> None:
    # Ti-6Al-4V wall finishing at 60 m/min: unstable without the flank's indentation,
    # stable with it (the review's hand-checked order).
    ti = {
        "material": "ti6al4v",
        "tool_diameter": 12.0,
        "n_teeth": 4,
        "feed_per_tooth": 0.06,
        "spindle_speed": 1000 * 60 / (math.pi * 12),
        "axial_depth": 12.0,
        "radial_width": 0.5,
        "tool_overhang": 40.0,
        "helix_angle": 40.0,
    }
    damped = constants(fmu, ref.params(**ti))
    bare = constants(fmu, ref.params(**ti, edge_contact_width=0.0))
    assert bare["stability_margin"] < 1 <= damped["stability_margin"]
    # The dynamic coefficient is the tangent of the Kienzle law, below its secant kc(hm).
    assert damped["tangent_cutting_coefficient"] < ref.kc(ref.params(**ti))


def test_the_c_eigenvalue_solver_matches_numpy(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    driver = tmp_path / "eig.c"
    driver.write_text(
        '#include <stdio.h>\n#include <stdlib.h>\n#include "stability.h"\n'
        'int main(void) { int n; while (scanf("%d", &n) == 1) {\n'
        "  double *a = malloc(sizeof(double) * n * n);\n"
        "  double *re = malloc(sizeof(double) * n), *im = malloc(sizeof(double) * n);\n"
        '  for (int i = 0; i < n * n; i++) if (scanf("%lf", &a[i]) != 1) return 2;\n'
        '  printf("%d", real_eigenvalues(n, a, re, im));\n'
        '  for (int i = 0; i < n; i++) printf(" %.17g %.17g", re[i], im[i]);\n'
        '  printf("\\n"); free(a); free(re); free(im); } return 0; }\n'
    )
    exe = tmp_path / "eig"
    subprocess.run(
        [
            cc,
            "-std=c99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{MODEL_DIR}",
            str(driver),
            str(MODEL_DIR / "stability.c"),
            "-lm",
            "-o",
            str(exe),
        ],
        check=True,
    )
    rng = np.random.default_rng(20261207)
    matrices = [rng.normal(size=(n, n)) for n in (1, 2, 3, 7, 30, 94)]
    matrices.append(np.triu(rng.normal(size=(12, 12)), -1))  # already Hessenberg
    matrices.append(np.diag([0.5] * 6) + 1e-7 * rng.normal(size=(6, 6)))  # clustered
    text = "".join(
        f"{m.shape[0]} " + " ".join(f"{x:.17g}" for x in m.ravel()) + "\n" for m in matrices
    )
    lines = subprocess.run(
        [str(exe)], input=text, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for m, line in zip(matrices, lines, strict=True):
        values = np.array(line.split()[1:], float).reshape(-1, 2)
        assert line.split()[0] == "1"
        ours = np.sort_complex(values[:, 0] + 1j * values[:, 1])
        theirs = np.sort_complex(np.linalg.eigvals(m))
        assert np.allclose(
            np.sort(np.abs(ours)),
            np.sort(np.abs(theirs)),
            rtol=0,
            atol=1e-9 * max(1, np.abs(theirs).max()),
        )
        assert np.isclose(ours.real.sum(), np.trace(m), atol=1e-9 * m.shape[0])
