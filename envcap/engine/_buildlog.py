"""The classic builder's JSON stream, read item by item: progress for the caller, and what the build made.

Why apart from the engine: the stream is the only place the builder names its intermediate
containers (``Running in``) and the images of the steps it ran (`` ---> <id>``), and those names are
what a later run needs when the engine dies in the middle (``leftovers.BuildJournal``); reading them
is pure text work, tested without an engine.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any

from envcap.engine import BuildEvent
from envcap.engine.leftovers import BuildJournal

STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
RUNNING_IN_RE = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})")
STEP_IMAGE_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$")
USING_CACHE = " ---> Using cache"
BUILT_RE = re.compile(r"^Successfully built ([0-9a-f]+)")
LOG_TAIL_LINES = 25


class BuildLog:
    """Feeds on the stream's items; ``started`` are the builder's containers, ``image_id`` the result."""

    def __init__(self, emit: Callable[[BuildEvent], None], journal: BuildJournal) -> None:
        self.emit = emit
        self.journal = journal
        self.started: list[str] = []
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.step_text: str | None = None
        self.step_label: str | None = None
        self.image_id: str | None = None
        self.error: str | None = None
        self._cached = False  # the current step made no image of its own (a cache hit, a FROM)

    def feed(self, item: dict[str, Any]) -> None:
        if "stream" in item:
            for line in str(item["stream"]).splitlines():
                self._line(line)
        elif "aux" in item and isinstance(item["aux"], dict) and item["aux"].get("ID"):
            self.image_id = str(item["aux"]["ID"])
        elif "error" in item:
            self.error = str(item.get("error") or item.get("errorDetail", {}).get("message") or "failed")
            self.emit(BuildEvent("error", self.error))
        elif "status" in item:  # a base image being pulled
            self.emit(BuildEvent("log", str(item["status"])))

    def _line(self, line: str) -> None:
        match = STEP_RE.match(line)
        if match:
            self.step_text = match.group(3)
            self.step_label = f"{match.group(1)}/{match.group(2)}"
            # a FROM step names an image the build starts from, not one it made
            self._cached = self.step_text.lstrip().upper().startswith("FROM ")
            self.tail.clear()
            self.emit(BuildEvent("step", self.step_text, step=int(match.group(1)), total=int(match.group(2))))
            return
        running = RUNNING_IN_RE.match(line)
        if running:
            self.started.append(running.group(1))
            self.journal.container(running.group(1))
        elif line.startswith(USING_CACHE):
            self._cached = True
        else:
            made = STEP_IMAGE_RE.match(line)
            if made and not self._cached:
                self.journal.image(made.group(1))
            found = BUILT_RE.match(line)
            if found and self.image_id is None:
                self.image_id = found.group(1)
        if line.strip():
            self.tail.append(line)
            self.emit(BuildEvent("log", line))
