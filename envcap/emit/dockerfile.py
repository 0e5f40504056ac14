"""Renders a build plan into a Dockerfile and .dockerignore from the Jinja2 templates. Pure.

Templates live in the top-level ``templates/`` and ship inside the wheel as ``envcap/templates``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from envcap.emit.plan import BuildPlan

TEMPLATE_FOR_FAMILY = {"python-slim": "python-slim.Dockerfile.j2", "cuda": "cuda.Dockerfile.j2"}


def templates_dir() -> Path:
    """The installed copy (inside the wheel) first, else the source checkout's top-level folder."""
    packaged = Path(__file__).resolve().parent.parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def docker_quote(value: str) -> str:
    """A double-quoted Dockerfile word that the engine reads back as exactly ``value``.

    Docker unescapes only backslash, quote and ``$`` inside double quotes (a JSON ``\\u00e9`` would
    arrive literally), so those three are escaped and everything else, UTF-8 and tabs, is kept.
    A line break cannot be written inside a Dockerfile word: plan.image_env leaves such ENV values
    out, and here (labels) it becomes a space, so no value can start a new instruction.
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return '"' + escaped.replace("\r", " ").replace("\n", " ") + '"'


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["dq"] = docker_quote
    return env


def load_templates() -> None:
    """Compiles the snapshot's templates now (9 ms), for a caller with time to spare (the probe runs)."""
    for name in ("_layout.Dockerfile.j2", *TEMPLATE_FOR_FAMILY.values(), "dockerignore.j2"):
        _environment().get_template(name)


def render_dockerfile(plan: BuildPlan) -> str:
    return _environment().get_template(TEMPLATE_FOR_FAMILY[plan.family]).render(plan=plan)


def render_runtime_dockerfile(plan: BuildPlan) -> str | None:
    """The image the install container starts from when the base lacks the exact Python (CUDA bases)."""
    if plan.family != "cuda":
        return None
    return _environment().get_template("runtime.Dockerfile.j2").render(plan=plan)


def render_final_dockerfile(plan: BuildPlan, install_image: str) -> str:
    """The image itself: settings (variables, labels, user) on top of the install image, no RUN."""
    return _environment().get_template("final.Dockerfile.j2").render(plan=plan, install_image=install_image)


def render_dockerignore() -> str:
    return _environment().get_template("dockerignore.j2").render()
