"""envcap's log: what it does behind the scenes (every subprocess, engine call and HTTP request).

Why a logger and not progress objects: any module can say what it is doing with
``logging.getLogger("envcap.<room>")`` and ``-v`` decides whether anyone hears it, instead of a
progress object threaded through four layers (pypa/build keeps its log the same way). Every line
passes through the redaction filter, so a command line or URL with a token in it is logged safely.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

LOGGER = logging.getLogger("envcap")
_HANDLER_NAME = "envcap-cli"
class _Redacting(logging.Filter):
    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        return True


def setup(verbosity: int, redact: Callable[[str], str] | None = None) -> None:
    """``-v``: every call on stderr, one line each; without it, nothing is added (and a ``-v`` handler
    from an earlier call in this process is taken away again)."""
    ours = [h for h in LOGGER.handlers if h.get_name() == _HANDLER_NAME]
    for handler in ours:
        LOGGER.removeHandler(handler)
    if verbosity <= 0:
        if ours:  # undo what an earlier -v set, and nothing else (a test's caplog keeps its level)
            LOGGER.setLevel(logging.NOTSET)
            LOGGER.propagate = True
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("envcap: [%(name)s] %(message)s"))
    if redact is None:
        from envcap.textsafe import terminal

        redact = terminal
    handler.addFilter(_Redacting(redact))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG)
    LOGGER.propagate = False


def get(room: str) -> logging.Logger:
    """The logger of one room (``envcap.engine``, ``envcap.subprocess``, ``envcap.net``)."""
    return LOGGER.getChild(room)
