"""Exceptions raised for user mistakes and bad input.

Every error a user can cause derives from :class:`TurborecError`; the CLI turns
these into one readable line and a non-zero exit, the service into a 4xx.
Anything else escaping is a bug in turborec.
"""

from __future__ import annotations


class TurborecError(Exception):
    """Base class for errors caused by input, configuration or environment."""

    exit_code: int = 2


class DataError(TurborecError, ValueError):
    """A data file or array is missing, malformed or inconsistent.

    ``source`` names the file (and line where known) so the message points at it.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(f"{where}{message}")
        self.source = source
        self.line = line


class ConfigError(TurborecError, ValueError):
    """An option, config value or combination of options is invalid."""


class ArtifactError(TurborecError):
    """An artifact directory is missing, corrupted, truncated or of an unknown version."""


class DependencyError(TurborecError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs '{package}', which is not installed; "
            f"install it with: pip install 'turborec[{extra}]'"
        )
        self.package = package
        self.extra = extra


class NotFittedError(TurborecError, RuntimeError):
    """A model was asked to recommend before it was fitted or loaded."""


class UnknownIdError(TurborecError, KeyError):
    """An external user or item id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown id"


class UnknownIdWarning(UserWarning):
    """Some ids were unknown and were served by the cold-start rule (``unknown="popular"``) or left out."""
