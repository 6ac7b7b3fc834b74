"""FMUs: build our C models, and run any FMI 2.0 co-simulation FMU through fmpy."""

from physics.fmu._adapter import Fmu, Profile, Trajectories, file_sha256
from physics.fmu._build import (
    BuiltFmu,
    available_models,
    build_all,
    build_model,
    cache_dir,
    fmu_for_model,
)
from physics.fmu._errors import BuildError, FmuError, FmuFileError, SimulationError

__all__ = [
    "BuildError",
    "BuiltFmu",
    "Fmu",
    "FmuError",
    "FmuFileError",
    "Profile",
    "SimulationError",
    "Trajectories",
    "available_models",
    "build_all",
    "build_model",
    "cache_dir",
    "file_sha256",
    "fmu_for_model",
]
