"""Fan a study out to an existing Dask cluster.

Each Dask task runs a batch of runs through a one-worker ``LocalPool`` on the
Dask worker's machine, so a hung or crashing FMU is contained exactly as on the
local pool (watchdog, crash rows) instead of taking a Dask worker down. Batches
amortise Dask's per-task cost over several runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from physics.runner import LocalPool, PoolOptions, RunResult, SimulationJob, Task


def run_batch(job: SimulationJob, tasks: list[Task], options: PoolOptions) -> list[RunResult]:
    """Executed on a Dask worker: the batch's runs, in one isolated worker process."""
    return list(LocalPool(job, replace(options, workers=1)).run(tasks))


class DaskRunner:
    """Runs tasks on a Dask cluster and yields results as batches complete."""

    def __init__(
        self, job: SimulationJob, options: PoolOptions, address: str, *, batch_size: int = 16
    ) -> None:
        from distributed import Client

        self.job = job
        self.options = options
        self.batch_size = batch_size
        try:
            self.client = Client(address, timeout=10)
        except ValueError as exc:  # distributed's own parse of a malformed address
            raise ConnectionError(f"--address {address!r}: {exc}") from None
        except OSError as exc:
            raise ConnectionError(
                f"--address {address}: no Dask scheduler answers there ({exc})"
            ) from None

    def run(self, tasks: Iterable[Task]) -> Iterator[RunResult]:
        from distributed import as_completed

        tasks = list(tasks)
        batches = [tasks[i : i + self.batch_size] for i in range(0, len(tasks), self.batch_size)]
        try:
            futures = [
                self.client.submit(run_batch, self.job, b, self.options, pure=False)
                for b in batches
            ]
            for future in as_completed(futures):
                yield from future.result()
        finally:
            self.client.close()


_ADDRESS = re.compile(r"^(tcp|tls|ucx)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


def dask_executor_for(
    address: str, *, batch_size: int = 16
) -> Callable[[SimulationJob, PoolOptions], Any]:
    """A factory ``generate(..., executor=...)`` calls with the job and options; a
    malformed address is refused here, before anything is started or written."""
    match = _ADDRESS.match(address)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        raise ConnectionError(
            f"--address {address!r}: expected SCHEME://HOST:PORT (e.g. tcp://127.0.0.1:8786), "
            "port 1 to 65535"
        )
    return lambda job, options: DaskRunner(job, options, address, batch_size=batch_size)
