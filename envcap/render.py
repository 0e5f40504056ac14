"""Renders a build plan into a Dockerfile and .dockerignore from the Jinja2 templates. Pure.

Templates live in the top-level ``templates/`` and ship inside the wheel as ``envcap/templates``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jinja2

from envcap.plan import BuildPlan

TEMPLATE_FOR_FAMILY = {"python-slim": "python-slim.Dockerfile.j2", "cuda": "cuda.Dockerfile.j2"}


def templates_dir() -> Path:
    """The installed copy (inside the wheel) first, else the source checkout's top-level folder."""
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def docker_quote(value: str) -> str:
    """A JSON string is a valid double-quoted Dockerfile word: quotes, backslashes and newlines escaped.

    ``$`` is escaped too, so a captured value is never expanded as a build variable.
    """
    return json.dumps(value).replace("$", "\\$")


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


def render_dockerfile(plan: BuildPlan) -> str:
    return _environment().get_template(TEMPLATE_FOR_FAMILY[plan.family]).render(plan=plan)


def render_dockerignore() -> str:
    return _environment().get_template("dockerignore.j2").render()
