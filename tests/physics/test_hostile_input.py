"""Hostile input to ``twin data generate``: every case exits 2 with one line that names
the file or field and the problem, and writes nothing (the --out folder is never made)."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from physics.cli import main
from tests.fmus import build_test_fmu

MD = "modelDescription.xml"
IDENT, EVIL = re.compile(r'modelIdentifier="\w+"'), 'modelIdentifier="../../evil"'
OUTSIDE, SRC = ("../outside.txt", b"x"), "sources/ridge.c"


def ridge_spec_data(fmu: Path) -> dict:
    unit = {"source": "order", "unit": "1", "min": 0, "max": 1}
    return {
        "name": "ridge",
        "version": 1,
        "fmu": {"path": str(fmu), "step_size": 1.0},
        "inputs": {"x1": {"variable": "x1", **unit}, "x2": {"variable": "x2", **unit}},
        "quantity": {"unit": "1", "min": 1, "max": 10, "integer": True},
        "stop_time": "1.0",
        "doe": {"factors": {"x1": {}, "x2": {}}, "fixed": {"quantity": 1}},
        "kpis": {"y": {"variable": "y", "reduction": "final", "unit": "1", "role": "process"}},
    }


def rewrite(src: Path, dst: Path, change: Callable[[str, bytes], tuple[str, bytes] | None]) -> None:
    """Copy an FMU, passing each member through ``change`` (None drops it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            kept = change(info.filename, zin.read(info.filename))
            if kept is not None:
                zout.writestr(kept[0], kept[1])


def _md(edit: Callable[[str], str]) -> Callable[[str, bytes], tuple[str, bytes]]:
    return lambda name, data: (name, edit(data.decode()).encode()) if name == MD else (name, data)


def _binary(data: bytes | None) -> Callable[[str, bytes], tuple[str, bytes] | None]:
    def change(name: str, blob: bytes) -> tuple[str, bytes] | None:
        if name.startswith("binaries/linux64/"):
            return None if data is None else (name, data)
        return name, blob

    return change


CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "not-a-zip": (
        lambda src, dst: dst.write_text("hello"),
        "{fmu}: not an FMU (not a zip archive: File is not a zip file)",
    ),
    "no-model-description": (
        lambda src, dst: rewrite(src, dst, lambda n, d: None if n == MD else (n, d)),
        "{fmu}: not an FMU (no modelDescription.xml in the archive)",
    ),
    "invalid-xml": (
        lambda src, dst: rewrite(src, dst, _md(lambda x: x[: len(x) // 2])),
        "{fmu}: modelDescription.xml is not valid XML (",
    ),
    "fmi-1": (
        lambda src, dst: rewrite(src, dst, _md(lambda x: x.replace('"2.0"', '"1.0"', 1))),
        "{fmu}: FMI 1.0 is not supported (FMI 2.0 and 3.0 are)",
    ),
    "model-identifier-path": (
        lambda src, dst: rewrite(src, dst, _md(lambda x: IDENT.sub(EVIL, x))),
        "{fmu}: modelIdentifier '../../evil' is not a C identifier",
    ),
    "member-outside": (
        lambda src, dst: rewrite(src, dst, lambda n, d: OUTSIDE if n == SRC else (n, d)),
        "{fmu}: the archive member '../outside.txt' points outside the FMU",
    ),
    "no-binary-here": (
        lambda src, dst: rewrite(src, dst, _binary(None)),
        "{fmu}: no binary for this platform (binaries/linux64/ridge.so); it has no binaries",
    ),
    "broken-binary": (
        lambda src, dst: rewrite(src, dst, _binary(b"\x7fELF but not really")),
        "{fmu}: its binary binaries/linux64/ridge.so does not load or instantiate (",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_fmu_is_refused_before_any_work(case: str, tmp_path: Path) -> None:
    make, message = CASES[case]
    fmu = tmp_path / "ridge.fmu"
    make(build_test_fmu("ridge"), fmu)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(ridge_spec_data(fmu)))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["data", "generate", "--spec", str(spec), "--n", "4", "--out", str(out), "--no-progress"],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: " + message.format(fmu=fmu)), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not out.exists()
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_a_spec_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(
        yaml.safe_dump(ridge_spec_data(build_test_fmu("ridge"))).encode() + b"# \xff\xfe\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["data", "generate", "--spec", str(spec), "--n", "4", "--out", str(out), "--no-progress"],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: invalid twin spec {spec}"), result.stderr
    assert "UTF-8" in result.stderr
    assert not out.exists()


def test_an_unwritable_out_is_refused(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:  # root writes anywhere: use a path below a file instead
        parent = tmp_path / "a-file"
        parent.write_text("x")
        out = parent / "ds"
        expected = f"error: --out: cannot write to {out} (Not a directory)\n"
    else:
        parent = tmp_path / "ro"
        parent.mkdir(mode=0o500)
        out = parent / "ds"
        expected = f"error: --out: cannot write to {out} (Permission denied)\n"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(ridge_spec_data(build_test_fmu("ridge"))))
    result = CliRunner().invoke(
        main,
        ["data", "generate", "--spec", str(spec), "--n", "4", "--out", str(out), "--no-progress"],
    )
    assert (result.exit_code, result.stderr) == (2, expected)
    shutil.rmtree(tmp_path / "ro", ignore_errors=True)
