"""Errors of the FMU layer.

FmuError
├── BuildError       a model table or its C code could not be turned into an FMU
├── FmuFileError     a file that is not an FMU this runner can use (bad input)
└── SimulationError  an FMI call failed or returned a non-finite value
"""

from __future__ import annotations


class FmuError(Exception):
    """Base of everything the FMU layer raises."""


class BuildError(FmuError):
    """A model could not be built; the message names the model and the cause."""


class FmuFileError(FmuError):
    """Not an FMU that can be run here: not a zip, no or invalid modelDescription.xml,
    an FMI version or kind not supported, an unsafe archive, no binary for this platform
    or one that does not load. The message names the file and what is wrong."""


class SimulationError(FmuError):
    """A simulation failed. Carries the FMI function, its status and the model time."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "error",
        fmu: str = "",
        function: str | None = None,
        status: int | None = None,
        time: float | None = None,
        log: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.kind = kind  # "error": an FMI call failed; "nan": an output was not finite
        self.fmu = fmu
        self.function = function
        self.status = status
        self.time = time
        self.log = log
