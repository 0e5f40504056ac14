"""Every failure a user can meet, as one exception family with an exit code and a next step.

Why: library code raises, exactly one place (``envcap.cli``) prints ``error:``/``hint:`` and exits;
nothing below the CLI prints or calls ``sys.exit``. The exit codes are listed in the README. The
container engine's failures are a family of their own in ``envcap.engine.errors`` (exit 7, 8, 12).
Exit 13 is reserved; 14 is the cluster's (``envcap fleet``).
"""

from __future__ import annotations


class EnvcapError(Exception):
    """Base: ``message`` says what failed and why, ``hint`` what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(EnvcapError):
    """The command line asks for something that cannot be done."""

    exit_code = 2


class ProbeError(EnvcapError):
    """The target interpreter could not be probed (missing, not Python, crashed)."""

    exit_code = 3


class LockfileError(EnvcapError):
    """A snapshot on disk is missing, unreadable, damaged or of a newer schema."""

    exit_code = 4


class OutputError(EnvcapError):
    """Results could not be written (read-only or full disk)."""

    exit_code = 5


class ArtifactError(EnvcapError):
    """An artifact could not be found, downloaded or failed its hash check."""

    exit_code = 6


class BuildError(EnvcapError):
    """The image build failed at a step."""

    exit_code = 8


class ReplayError(EnvcapError):
    """The replay could not start or the engine failed during it."""

    exit_code = 9


class PreflightError(EnvcapError):
    """The host cannot run the locked environment (driver too old, GPU arch not built for)."""

    exit_code = 10


class ReportFormatError(EnvcapError):
    """A file given to ``diff`` is of no format envcap reads."""

    exit_code = 11


class IndexUnreachable(EnvcapError):
    """No answer from a package index (refused, unresolvable, proxy or TLS refusal), so hashes are missing."""

    exit_code = 13


class ClusterError(EnvcapError):
    """The batch system (Slurm) cannot be asked, knows no such nodes, or no node answered."""

    exit_code = 14
