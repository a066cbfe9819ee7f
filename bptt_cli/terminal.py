"""What the terminal can show: colour, and the braille/box glyphs of the pictures.

One rule for every command (``analyze``, ``spectrum``, ``sweep``):

- colour and other escape codes only when stdout is a terminal, ``NO_COLOR`` is unset (or
  empty) and ``TERM`` is not ``dumb`` (rich's own ``NO_COLOR`` support drops colours but still
  writes bold and italic codes, so a plain console gets no colour system at all);
- the pictures (the gradient chart, the eigenvalue plot, the heat table's colour scale) are
  drawn with braille dots and box-drawing lines under the same conditions, and when the
  console writes UTF-8; everywhere else (a pipe, a file, a CI log, ``NO_COLOR``, ``TERM=dumb``)
  they fall back to plain ASCII, one character per cell, each series its own character, so
  a log read in any viewer or font stays aligned and legible.

The tables keep rich's box drawing (as before): their lines carry no information, and the
existing scripts that read them expect it.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console


def plain_environment() -> bool:
    """``NO_COLOR`` (non-empty) or ``TERM=dumb``: no escape codes, no fancy glyphs."""
    return bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"


PIPE_WIDTH = 120  # columns when stdout is not a terminal and COLUMNS is unset (rich's 80 wraps)


class _StdoutConsole(Console):
    """A console whose reader going away (``| head``) is a :class:`BrokenPipeError`, which the
    command line turns into exit status 141, rather than rich's own ``SystemExit(1)`` (the
    status of a ``--fail-on`` match)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def stdout_console(**kwargs: Any) -> Console:
    """A console on stdout that writes no escape codes in a plain environment, and is
    ``PIPE_WIDTH`` wide when piped (unless ``COLUMNS`` says otherwise)."""
    if plain_environment():
        kwargs.setdefault("color_system", None)
    console = _StdoutConsole(**kwargs)
    if "width" not in kwargs and not console.is_terminal and "COLUMNS" not in os.environ:
        console = _StdoutConsole(width=PIPE_WIDTH, **kwargs)
    return console


def fancy(console: Console) -> bool:
    """Whether the pictures may use braille, box drawing and colour on ``console``: a UTF-8
    terminal with colour, outside a plain environment."""
    return (
        console.is_terminal
        and not console.is_dumb_terminal
        and not plain_environment()
        and console.color_system is not None
        and console.encoding.lower().replace("-", "").startswith("utf")
    )
