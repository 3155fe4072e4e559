"""Exception types cfattack raises on bad input, so callers can catch them precisely.

Every error a user can cause (a bad file, a bad argument) derives from `CfattackError`;
the CLI turns any `CfattackError` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

__all__ = [
    "CfattackError",
    "InvalidInputError",
    "MissingDependencyError",
    "NetworkLoadError",
    "UnsafePickleError",
    "UntrustedCodeError",
]


class CfattackError(Exception):
    """Base class of every error cfattack raises because of its input or environment."""


class InvalidInputError(CfattackError, ValueError):
    """An argument or input value is not acceptable (wrong range, shape, name, ...)."""


class MissingDependencyError(CfattackError, ImportError):
    """An optional feature needs a package that is not installed; the message names the pip extra.

    E.g. `Explanation.plot` needs matplotlib: ``pip install 'cfattack[plot]'``.
    """


class NetworkLoadError(CfattackError):
    """A network file (official pickle or our checkpoint) is missing, truncated, corrupt or not a network."""


class UnsafePickleError(NetworkLoadError):
    """A pickle references a global that is not on the allow-list; nothing from it was executed.

    Attributes:
        global_name: the offending ``module.name`` the pickle asked for.
    """

    def __init__(self, global_name: str, message: str | None = None) -> None:
        self.global_name = global_name
        super().__init__(message or f"refusing to load pickle: it references the disallowed global {global_name!r}")


class UntrustedCodeError(CfattackError):
    """A file that is code (a factory classifier, a TorchScript program) was not loaded: trust was not given.

    Nothing from the file was imported or run. Pass ``trust_code=True`` (CLI: ``--trust-code``)
    only for files whose author you trust.
    """
