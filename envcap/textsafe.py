"""Text that is safe where it lands: a terminal, rich markup, Markdown, JSON. Every renderer uses these.

Why: a lock or a pasted report comes from a stranger. A value holding ``[/bold]`` crashed rich,
an escape sequence reached the terminal raw (it can rewrite what the user sees), a lone surrogate
could not be encoded, and a secret could ride along. Each helper first redacts (``envcap.redact``),
then neutralises what the destination would interpret.
"""

from __future__ import annotations

import json
import re
from typing import Any

from envcap import redact

# C0 and C1 controls (not tab and newline), DEL, bidi overrides and invisible formatting, lone surrogates.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064"
                      "\u2066-\u2069\ufeff\ud800-\udfff]")
# In JSON written with ensure_ascii=False, json already escapes C0; the rest of the set stays raw.
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
                       "\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Control characters shown as escapes (``\\x1b``), so nothing reaches the terminal to interpret."""
    return _CONTROL.sub(_visible, text)


def terminal(value: object) -> str:
    """For plain terminal output: redacted, no control characters."""
    return printable(redact.text(str(value)))


def markup(value: object) -> str:
    """For a string placed inside rich markup: redacted, no controls, its own brackets escaped."""
    from rich.markup import escape

    return escape(terminal(value))


def md(value: object) -> str:
    """For a Markdown table cell or list item: one line, no table, code-span or HTML breakout."""
    text = terminal(value).replace("\n", " ").replace("\r", " ")
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
            .replace("<", "&lt;").replace(">", "&gt;"))


def md_code(value: object) -> str:
    """A Markdown code span that its content cannot close early: a fence longer than any backtick run.

    Pipes stay escaped (GitHub reads table cells before code spans); newlines become spaces.
    """
    text = terminal(value).replace("\n", " ").replace("\r", " ").replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """JSON of redacted data, readable (UTF-8 kept) yet with every control or surrogate escaped."""
    text = json.dumps(redact.document(data), indent=indent, sort_keys=True, ensure_ascii=False)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


__all__ = ["json_text", "markup", "md", "md_code", "printable", "terminal"]
