"""Serving must run without fmpy, torch or mlflow: the modules it shares with
physics (the twin spec and what it needs) must not import them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("fmpy", "torch", "mlflow", "scipy", "matplotlib", "onnx")


def imported_after(statement: str) -> list[str]:
    code = f"{statement}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_spec_modules_import_no_heavy_dependency() -> None:
    assert imported_after("import physics.spec, physics.workorder, physics.kpi, physics.expr") == []


def test_serving_imports_no_heavy_dependency() -> None:
    assert imported_after("import serving") == []


def test_the_check_itself_sees_heavy_imports() -> None:
    assert imported_after("import physics.fmu._adapter, scipy") == ["scipy"]


def test_twin_lists_and_runs_physics_commands_without_torch() -> None:
    """The surrogate commands come in through entry points, loaded lazily: listing them
    (`twin --help`) and running `twin fmu ...` import neither torch nor mlflow."""
    code = (
        "import sys\n"
        "from physics.cli import main\n"
        "for args in (['--help'], ['fmu', '--help'], ['train', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('HEAVY', ' '.join(m for m in ('torch', 'mlflow', 'onnx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "promote" in out.stdout and "verify" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY"


def test_the_service_imports_no_heavy_dependency() -> None:
    """The app, its routes, the store and the event delivery run on the serve extra."""
    statement = (
        "import serving.app, serving.api, serving.api.routes.work_orders, serving.cli, "
        "serving.adapters.webhooks, serving.adapters.mqtt"
    )
    assert imported_after(statement) == []
