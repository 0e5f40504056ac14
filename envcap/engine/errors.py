"""The engine's own failures: raised by ``envcap.engine``, mapped by the stage that called it.

Why a family of their own: "no engine answers", "the engine refused this request" and "the engine
died while building" need different next steps, and a build or a replay adds what it was doing
(a replay saves its partial report). Before this family, an API refusal read as "no engine answers".
"""

from __future__ import annotations

from envcap.errors import EnvcapError


class EngineError(EnvcapError):
    """Something went wrong talking to the container engine."""

    exit_code = 12


class EngineUnavailable(EngineError):
    """No engine answers at the places looked (or the one named by DOCKER_HOST)."""

    exit_code = 7

    def __init__(self, message: str, hint: str | None = None, *, reason: str = "") -> None:
        super().__init__(message, hint)
        self.reason = reason  # a few words (connection refused, no such socket), for connect()'s list


class EngineLost(EngineError):
    """The engine stopped answering in the middle of a build or a run (killed, restarted, overloaded)."""


class EngineRefused(EngineError):
    """The engine answered, but refused the request (an API error)."""


class ImageMissing(EngineError):
    """The engine has no image by that name or id."""


class ImagePullFailed(EngineError):
    """A base image could not be pulled from its registry."""


class ContainerFailed(EngineError):
    """A container could not be created or started (bad options, no GPU runtime, missing init)."""


class BuildStepFailed(EngineError):
    """A build step exited non-zero: which step, and the last lines of its log for the user."""

    exit_code = 8

    def __init__(self, message: str, hint: str | None = None, *, step: str | None = None,
                 log_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint)
        self.step = step
        self.log_tail = log_tail


__all__ = ["BuildStepFailed", "ContainerFailed", "EngineError", "EngineLost", "EngineRefused", "EngineUnavailable",
           "ImageMissing", "ImagePullFailed"]
