"""How the ``twin`` commands report failures: one clear line, and an exit code.

Exit codes: 1 a build or simulation failed; 2 bad input (spec, order, design,
dataset folder, options), reported before any work is done.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn our exceptions into one clear message and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from physics.dataset import DatasetError
        from physics.doe import DoeError
        from physics.fmu import BuildError, FmuFileError, SimulationError
        from physics.runner import PoolOptionsError
        from physics.spec import SpecError
        from physics.workorder import OrderError

        try:
            return func(*args, **kwargs)
        except BrokenPipeError:  # the reader stopped early (| head): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except (
            SpecError,
            OrderError,
            DoeError,
            DatasetError,
            PoolOptionsError,
            FmuFileError,
            FileNotFoundError,
            ConnectionError,
        ) as exc:
            fail(str(exc), 2)
        except (BuildError, SimulationError) as exc:
            fail(str(exc), 1)
        except OSError as exc:  # a full disk, a file over a size limit, a vanished folder
            where = f"{exc.filename}: " if exc.filename else ""
            fail(
                f"{where}{exc.strerror or exc}; what was written before is kept (the same "
                "command resumes)",
                1,
            )

    return wrapper  # type: ignore[return-value]
