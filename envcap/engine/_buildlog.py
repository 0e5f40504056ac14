"""The classic builder's JSON stream, read item by item: progress for the caller, and what the build made.

Why apart from the engine: the stream is the only place the builder names its intermediate
containers (``Running in``) and the images of the steps it ran (`` ---> <id>``), and those names are
what a later run needs when the engine dies in the middle (``leftovers.BuildJournal``); reading them
is pure text work, tested without an engine.

Two builders speak this stream. Docker's classic builder writes ``Step 2/5 : RUN ...``, `` ---> <id>``
(12 hex digits) and ``The command '/bin/sh -c ...' returned a non-zero code: 3``. Podman's (buildah,
through the compatible socket) writes ``STEP 2/5: RUN ...``, ``[2/3] STEP 2/5: ...`` in a multi-stage
build (steps counted per stage), ``--> <id>`` (11 digits), no ``Running in`` (its build containers are
not API containers), a bare 64-digit id after ``COMMIT``, and errors worded
``building at STEP "RUN ...": while running runtime: exit status 3``. Both are read into the same
events and the same one-sentence error.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Any

from envcap.engine import BuildEvent
from envcap.engine.leftovers import BuildJournal

STEP_RE = re.compile(r"^(?:\[(\d+)/(\d+)\] )?(?:Step|STEP) (\d+)/(\d+) ?: (.*)$")
RUNNING_IN_RE = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})")
STEP_IMAGE_RE = re.compile(r"^ ?-{2,3}> ([0-9a-f]{11,64})\s*$")
USING_CACHE_RE = re.compile(r"^ ?-{2,3}> Using cache\b")
COMMIT_RE = re.compile(r"^(?:\[\d+/\d+\] )?COMMIT\b")
FULL_ID_RE = re.compile(r"^([0-9a-f]{64})\s*$")
BUILT_RE = re.compile(r"^Successfully built ([0-9a-f]+)")
LOG_TAIL_LINES = 25

# Podman's wording of a failed step, made to read like Docker's (the step is named by the caller already).
_PODMAN_AT_STEP = re.compile(r'^building at STEP "(?:[^"\\]|\\.)*": ')
_PODMAN_EXIT = re.compile(r"(?:while running runtime: )?exit status (\d+)$")
_GO_DUMP = re.compile(r" &\w+\.\w+\{.*$")  # buildah appends a Go struct dump to a parse error


def builder_error(text: str) -> str:
    """The builder's error as one line, in Docker's words where Podman's differ.

    ``building at STEP "RUN x": while running runtime: exit status 3`` becomes ``the command
    returned a non-zero code: 3``; any other Podman error loses its ``building at STEP`` prefix and
    Go struct dump. Docker's errors pass unchanged (but on one line).
    """
    line = " ".join(text.split())
    line = _GO_DUMP.sub("", _PODMAN_AT_STEP.sub("", line))
    exited = _PODMAN_EXIT.fullmatch(line)
    if exited:
        return f"the command returned a non-zero code: {exited.group(1)}"
    return line.rstrip(".") or "failed"


class BuildLog:
    """Feeds on the stream's items; ``started`` are the builder's containers, ``image_id`` the result."""

    def __init__(self, emit: Callable[[BuildEvent], None], journal: BuildJournal) -> None:
        self.emit = emit
        self.journal = journal
        self.started: list[str] = []
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.step_text: str | None = None
        self.step_label: str | None = None  # "3/5", or "3/5 of stage 2/3" (Podman counts steps per stage)
        self.image_id: str | None = None
        self.error: str | None = None
        self._cached = False  # the current step made no image of its own (a cache hit, a FROM)
        self._committed = False  # Podman said COMMIT: a bare full id that follows is the image

    def feed(self, item: dict[str, Any]) -> None:
        if "stream" in item:
            for line in str(item["stream"]).splitlines():
                self._line(line)
        elif "aux" in item and isinstance(item["aux"], dict) and item["aux"].get("ID"):
            self.image_id = str(item["aux"]["ID"])
        elif "error" in item or "errorDetail" in item:
            detail = item.get("errorDetail")
            said = item.get("error") or (detail.get("message") if isinstance(detail, dict) else None)
            self.error = builder_error(str(said or "failed"))
            self.emit(BuildEvent("error", self.error))
        elif "status" in item:  # a base image being pulled
            self.emit(BuildEvent("log", str(item["status"])))

    def _line(self, line: str) -> None:
        match = STEP_RE.match(line)
        if match:
            stage, stages, step, total, text = match.groups()
            self.step_text = text
            self.step_label = f"{step}/{total}" + (f" of stage {stage}/{stages}" if stage and stages != "1" else "")
            # a FROM step names an image the build starts from, not one it made
            self._cached = text.lstrip().upper().startswith("FROM ")
            self._committed = False
            self.tail.clear()
            self.emit(BuildEvent("step", text, step=int(step), total=int(total)))
            return
        running = RUNNING_IN_RE.match(line)
        if running:
            self.started.append(running.group(1))
            self.journal.container(running.group(1))
        elif USING_CACHE_RE.match(line):
            self._cached = True
        elif COMMIT_RE.match(line):
            self._committed = True
        else:
            made = STEP_IMAGE_RE.match(line)
            if made and not self._cached:
                self.journal.image(made.group(1))
            found = BUILT_RE.match(line) or (FULL_ID_RE.match(line) if self._committed else None)
            if found and self.image_id is None:
                self.image_id = found.group(1)
        if line.strip():
            self.tail.append(line)
            self.emit(BuildEvent("log", line))
