"""The surrogates package's exceptions::

ValueError
└── SurrogateError        anything this package refuses or cannot do
    ├── ConfigError       a training config is wrong (every problem, one per line)
    ├── DataError         a dataset cannot be trained on (too few ok rows, wrong spec)
    └── BundleError       a model bundle is missing a file or disagrees with itself
"""

from __future__ import annotations


class SurrogateError(ValueError):
    """Base of the surrogates package's errors."""


class ConfigError(SurrogateError):
    """A training configuration that cannot be used; lists every problem."""

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        head = f"invalid training config{f' {source}' if source else ''}:"
        super().__init__("\n  ".join([head, *problems]))


class DataError(SurrogateError):
    """A dataset that cannot be trained on as asked."""


class BundleError(SurrogateError):
    """A model bundle that is incomplete or inconsistent."""


class ParityError(BundleError):
    """onnxruntime and PyTorch disagree beyond the parity limit."""
