"""A progress bar for long work: one redrawn line on a terminal, plain lines otherwise.

On a terminal it redraws ``label [#####.....] 120/2000 6%  41.2 runs/s  ETA 0:45  failed 3``
at most ten times a second. Without one (CI, a pipe, a log file) it prints a
plain line at every tenth of the work or every 10 s, whichever comes first, and
never uses carriage returns or colours.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def _is_terminal(stream: TextIO) -> bool:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or unknown
        return "--:--"
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts done and failed items out of a total and reports rate and ETA."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "",
        unit: str = "runs",
        stream: TextIO | None = None,
        done: int = 0,
        enabled: bool = True,
        show_failed: bool = True,
    ) -> None:
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.terminal = _is_terminal(self.stream)
        self.start_done = done  # already done before this session (resume): not in the rate
        self.done = done
        self.failed = 0
        self.show_failed = show_failed
        self.note = ""  # shown at the end of the line (a loss, a phase)
        self._t0 = time.monotonic()
        self._last_draw = 0.0
        self._last_plain_fraction = int(10 * done / total) if total else 0
        self._last_plain_time = self._t0
        self._last_plain_done = -1

    def update(self, n: int = 1, *, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        self._report(final=False)

    def close(self) -> None:
        self._report(final=True)
        if self.enabled and self.terminal:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._t0
        return (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        rate = self.rate
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        bar = ""
        if self.terminal:
            filled = round(24 * frac)
            bar = "[" + "#" * filled + "." * (24 - filled) + "] "
        head = f"{self.label} " if self.label else ""
        tail = f"  failed {self.failed}" if self.show_failed else ""
        note = f"  {self.note}" if self.note else ""
        return (
            f"{head}{bar}{self.done}/{self.total} {100 * frac:3.0f}%  "
            f"{rate:.1f} {self.unit}/s  ETA {_clock(eta)}{tail}{note}"
        )

    def _report(self, *, final: bool) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.terminal:
            if final or now - self._last_draw >= 0.1:
                self._last_draw = now
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
            return
        tenth = int(10 * self.done / self.total) if self.total else 10
        due = tenth > self._last_plain_fraction or now - self._last_plain_time >= 10
        if (final and self.done != self._last_plain_done) or (due and not final):
            self._last_plain_fraction = tenth
            self._last_plain_time = now
            self._last_plain_done = self.done
            self.stream.write(self.line() + "\n")
            self.stream.flush()
