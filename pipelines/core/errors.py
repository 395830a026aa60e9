"""Project errors. The CLI turns an :class:`EphysError` into one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path


class EphysError(Exception):
    """Bad input or an impossible request, with the offending path when there is one.

    Parameters
    ----------
    message : str
        What is wrong, in one line (no trailing period needed).
    path : str | Path | None
        The file or folder the problem is about; printed first.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(str(self.message).split())
        return f"{self.path}: {text}" if self.path else text


class UnreadableRecording(EphysError):
    """A recording that cannot be used (unreadable, voltage-clamp only, no usable sweep)."""


class Interrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM: what SLURM sends at a job's time limit) raised like Ctrl-C,
    so that every ``finally`` runs (temporary files removed, dask clusters closed, locks released).

    Attributes
    ----------
    signum : int, the signal number (the command line exits with 128 + signum).
    """

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"signal {signum}")
