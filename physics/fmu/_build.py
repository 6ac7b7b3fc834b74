"""Build our C models into FMUs, cached by the hash of everything that goes in.

A model is a folder ``physics/models/<name>/`` holding ``model.yaml`` (the
variable table) and C sources. The build generates ``model_vars.h`` and
``modelDescription.xml`` from the table, compiles the model with the shared
FMI framework in ``physics/cmodel/`` using the machine's C compiler, and zips
binary, sources and description into ``<cache>/fmus/<name>/<hash>/<name>.fmu``.

Every build compiles and ships the version-independent core
(``framework_core.c``/``.h`` and ``model.h``) with the wrapper that the table's
``fmi_version`` picks: ``fmi2_framework.c`` (FMI 2.0, the default) or
``fmi3_framework.c`` (FMI 3.0); the other version's wrapper is never shipped.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from physics.fmu._codegen import (
    ModelTable,
    load_table,
    render_build_description_fmi3,
    render_header,
    render_header_fmi3,
    render_model_description,
    render_model_description_fmi3,
)
from physics.fmu._errors import BuildError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
MODELS_DIR = PACKAGE_DIR / "models"
FRAMEWORK_DIR = PACKAGE_DIR / "cmodel"
FMI2_HEADERS = ("fmi2Functions.h", "fmi2FunctionTypes.h", "fmi2TypesPlatform.h")
FMI3_HEADERS = ("fmi3Functions.h", "fmi3FunctionTypes.h", "fmi3PlatformTypes.h")
# physics/cmodel files every build compiles and ships, whatever its FMI version.
FRAMEWORK_CORE = ("framework_core.c", "framework_core.h", "model.h")
# The wrapper of each FMI version; a build compiles and ships its own only.
FRAMEWORKS = {"2.0": "fmi2_framework.c", "3.0": "fmi3_framework.c"}
# Fixed zip timestamps: the same sources give a byte-identical FMU.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BuiltFmu:
    name: str
    path: Path
    source_hash: str
    cached: bool
    warnings: str = ""  # what the C compiler said of a build that succeeded


def cache_dir() -> Path:
    """Where built FMUs go: ``$ASSET_TWIN_CACHE`` or ``~/.cache/asset-twin``."""
    root = os.environ.get("ASSET_TWIN_CACHE") or Path.home() / ".cache" / "asset-twin"
    return Path(root) / "fmus"


def available_models(models_dir: Path = MODELS_DIR) -> list[str]:
    """Names of the model folders (those with a model.yaml)."""
    return sorted(p.parent.name for p in models_dir.glob("*/model.yaml"))


def fmi_platform() -> str:
    """FMI 2.0 platform folder name for this machine (binaries/<platform>)."""
    bits = "64" if sys.maxsize > 2**32 else "32"
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win"}.get(platform.system())
    if system is None:
        raise BuildError(f"cannot build FMUs on {platform.system()}: not Linux, macOS or Windows")
    return system + bits


def fmi3_platform() -> str:
    """FMI 3.0 platform tuple for this machine (binaries/<arch>-<os>)."""
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        platform.machine().lower()
    )
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "windows"}.get(platform.system())
    if arch is None or system is None or (system == "windows" and arch != "x86_64"):
        raise BuildError(
            f"cannot build FMI 3.0 FMUs on {platform.machine()} {platform.system()}: "
            "supported are x86_64-linux, aarch64-linux, x86_64-darwin, aarch64-darwin, "
            "x86_64-windows"
        )
    return f"{arch}-{system}"


def _shared_library_suffix() -> str:
    return {"Darwin": ".dylib", "Windows": ".dll"}.get(platform.system(), ".so")


def fmi_headers_dir() -> Path:
    """The FMI 2.0 standard headers, as shipped with fmpy."""
    try:
        import fmpy
    except ImportError as exc:  # pragma: no cover - fmpy is in the sim extra
        raise BuildError("building FMUs needs fmpy: pip install 'asset-twin[sim]'") from exc
    path = Path(fmpy.__file__).parent / "c-code"
    if not (path / "fmi2Functions.h").is_file():
        raise BuildError(f"FMI 2.0 headers not found in {path}")
    return path


def _fmi_headers(version: str) -> list[Path]:
    """The standard headers a build of this FMI version compiles against."""
    names = FMI3_HEADERS if version == "3.0" else FMI2_HEADERS
    paths = [fmi_headers_dir() / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise BuildError(f"FMI {version} headers not found in {fmi_headers_dir()}: {missing}")
    return paths


def _framework_sources(version: str) -> list[Path]:
    """physics/cmodel files a build of this FMI version compiles: the core and its wrapper."""
    return [FRAMEWORK_DIR / name for name in (*FRAMEWORK_CORE, FRAMEWORKS[version])]


def _write_generated(table: ModelTable, src: Path, work: Path, tool: str) -> None:
    """Generated headers into sources/, descriptions for the table's FMI version."""
    (src / "model_vars.h").write_text(render_header(table))
    c_files = sorted(p.name for p in src.glob("*.c"))
    if table.fmi_version == "3.0":
        (src / "model_vars_fmi3.h").write_text(render_header_fmi3(table))
        (src / "buildDescription.xml").write_text(render_build_description_fmi3(table, c_files))
        description = render_model_description_fmi3(table, c_files, tool=tool)
    else:
        description = render_model_description(table, c_files, tool=tool)
    (work / "modelDescription.xml").write_text(description)


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise BuildError("no C compiler found: install gcc or clang, or set CC")
    return cc


def _compile_shared(
    sources: list[Path],
    output: Path,
    include: Path,
    *,
    defines: tuple[str, ...] = (),
    libs: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Compile C sources into a shared library: C99, -O2, all warnings, hidden symbols."""
    cmd = [
        compiler(),
        "-shared",
        "-fPIC",
        "-O2",
        "-std=c99",
        "-Wall",
        "-Wextra",
        # A call to an undeclared function is an error, and so is a symbol the library
        # leaves unresolved: otherwise the build succeeds and the FMU fails to load.
        "-Werror=implicit-function-declaration",
        *(["-Wl,--no-undefined"] if sys.platform.startswith("linux") else []),
        *defines,
        "-fvisibility=hidden",
        "-I",
        str(include),
        "-o",
        str(output),
        *map(str, sources),
        *libs,
        "-lm",
    ]
    return subprocess.run(cmd, capture_output=True, text=True)


def _model_sources(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.suffix in (".c", ".h"))


def source_hash(model_dir: Path) -> str:
    """Hash of every input of the build: table, C sources, framework, generator, compiler."""
    h = hashlib.sha256()
    inputs = [
        model_dir / "model.yaml",
        *_model_sources(model_dir),
        *sorted(p for p in (model_dir / "resources").rglob("*") if p.is_file()),
        *sorted(FRAMEWORK_DIR.glob("*.[ch]")),
        Path(__file__).with_name("_codegen.py"),
        Path(__file__),
    ]
    for path in inputs:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(f"{compiler()}|{fmi_platform()}".encode())
    return h.hexdigest()


def resolve_model_dir(model: str | Path) -> Path:
    """A model name under physics/models, or a folder with a model.yaml."""
    path = Path(model)
    if not path.is_dir():
        path = MODELS_DIR / str(model)
    if not (path / "model.yaml").is_file():
        known = ", ".join(available_models()) or "none"
        raise BuildError(f"model {str(model)!r}: no model.yaml found (models here: {known})")
    return path


def build_model(model: str | Path, *, force: bool = False, out_dir: Path | None = None) -> BuiltFmu:
    """Build one model into an FMU, or return the cached FMU of the same sources."""
    model_dir = resolve_model_dir(model)
    name = model_dir.name
    digest = source_hash(model_dir)
    target_dir = (out_dir or cache_dir()) / name / digest[:16]
    target = target_dir / f"{name}.fmu"
    if target.is_file() and not force:
        return BuiltFmu(name, target, digest, cached=True)
    table = load_table(model_dir / "model.yaml")
    if table.name != name:
        raise BuildError(
            f"{model_dir / 'model.yaml'}: name {table.name!r} must equal the folder "
            f"name {name!r} (it is the FMU's model identifier)"
        )
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"build-{name}-", dir=target_dir) as tmp:
        work = Path(tmp)
        src = work / "sources"
        src.mkdir()
        version = table.fmi_version
        for path in [*_model_sources(model_dir), *_framework_sources(version)]:
            shutil.copy2(path, src / path.name)
        for header in _fmi_headers(version):
            shutil.copy2(header, src / header.name)
        shutil.copy2(model_dir / "model.yaml", src / "model.yaml")
        if (model_dir / "resources").is_dir():  # files the model ships beside its binary
            shutil.copytree(model_dir / "resources", work / "resources")
        _write_generated(table, src, work, tool=f"asset-twin ({name} {digest[:12]})")
        c_files = sorted(p.name for p in src.glob("*.c"))
        platform_dir = fmi3_platform() if version == "3.0" else fmi_platform()
        binary = work / "binaries" / platform_dir / (name + _shared_library_suffix())
        binary.parent.mkdir(parents=True)
        proc = _compile_shared([src / c for c in c_files], binary, src)
        if proc.returncode != 0:
            raise BuildError(f"model {name!r}: the C compiler failed:\n{proc.stderr.strip()}")
        tmp_fmu = work / f"{name}.fmu"
        with zipfile.ZipFile(tmp_fmu, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in work.rglob("*") if p.is_file() and p != tmp_fmu):
                info = zipfile.ZipInfo(path.relative_to(work).as_posix(), date_time=ZIP_DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
        os.replace(tmp_fmu, target)  # atomic: a reader never sees half an FMU
    return BuiltFmu(name, target, digest, cached=False, warnings=proc.stderr.strip())


def build_all(*, force: bool = False, out_dir: Path | None = None) -> list[BuiltFmu]:
    """Build every model under physics/models."""
    return [build_model(name, force=force, out_dir=out_dir) for name in available_models()]


def fmu_for_model(model: str | Path) -> Path:
    """Path of the built FMU of a model, building it first when needed."""
    return build_model(model).path


DRIVER_SOURCE = PACKAGE_DIR / "cdriver" / "twin_driver.c"


def build_driver(*, force: bool = False) -> Path:
    """Compile the native driver (physics/cdriver) into a cached shared library."""
    h = hashlib.sha256(DRIVER_SOURCE.read_bytes())
    h.update(f"{compiler()}|{fmi_platform()}".encode())
    digest = h.hexdigest()
    target = (
        cache_dir().parent / "driver" / digest[:16] / ("twin_driver" + _shared_library_suffix())
    )
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    proc = _compile_shared(
        [DRIVER_SOURCE],
        tmp,
        fmi_headers_dir(),
        defines=("-D_POSIX_C_SOURCE=200809L",),
        libs=("-ldl",),
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"native driver: the C compiler failed:\n{proc.stderr.strip()}")
    if proc.stderr.strip():
        tmp.unlink(missing_ok=True)
        raise BuildError(f"native driver: compiler warnings:\n{proc.stderr.strip()}")
    os.replace(tmp, target)
    return target
