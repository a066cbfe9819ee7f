"""What the terminal can show: colour, and the braille/box glyphs of the pictures and tables.

One rule for every command (``analyze``, ``spectrum``, ``sweep``, ``truncate``):

- colour and other escape codes only when stdout is a terminal, ``NO_COLOR`` is unset (or
  empty) and ``TERM`` is not ``dumb`` (rich's own ``NO_COLOR`` support drops colours but still
  writes bold and italic codes, so a plain console gets no colour system at all);
- the pictures (the gradient chart, the eigenvalue plot, the heat table's colour scale) are
  drawn with braille dots and box-drawing lines under the same conditions, and when the
  console writes UTF-8; everywhere else (a pipe, a file, a CI log, ``NO_COLOR``, ``TERM=dumb``)
  they fall back to plain ASCII, one character per cell, each series its own character, so
  a log read in any viewer or font stays aligned and legible.

The tables follow the same rule: rich's box drawing (``┏━┃``) on such a terminal, and rich's
``box.ASCII`` (``+--|``) everywhere else. Every console of the command line comes from here
(:func:`stdout_console`, :func:`text_console`), so that rule lives in this one place: a
:class:`PlainConsole` reports an ASCII encoding wherever the pictures are ASCII, and rich then
substitutes ``box.ASCII`` for every table's box by itself.
"""

from __future__ import annotations

import io
import os
from typing import Any

from rich.console import Console


def plain_environment() -> bool:
    """``NO_COLOR`` (non-empty) or ``TERM=dumb``: no escape codes, no fancy glyphs."""
    return bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"


PIPE_WIDTH = 120  # columns when stdout is not a terminal and COLUMNS is unset (rich's 80 wraps)


def _may_draw(console: Console, encoding: str) -> bool:
    """The rule: a terminal with colour, outside a plain environment, writing ``encoding``
    (UTF-8)."""
    return (
        console.is_terminal
        and not console.is_dumb_terminal
        and not plain_environment()
        and console.color_system is not None
        and encoding.lower().replace("-", "").startswith("utf")
    )


class PlainConsole(Console):
    """A console that reports the ASCII encoding wherever :func:`fancy` is false, so that rich
    draws every table with ``box.ASCII`` (and its other renderables with ASCII glyphs) there."""

    @property
    def encoding(self) -> str:
        real = super().encoding
        return real if _may_draw(self, real) else "ascii"


class _StdoutConsole(PlainConsole):
    """A console whose reader going away (``| head``) is a :class:`BrokenPipeError`, which the
    command line turns into exit status 141, rather than rich's own ``SystemExit(1)`` (the
    status of a ``--fail-on`` match)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def stdout_console(**kwargs: Any) -> PlainConsole:
    """A console on stdout that writes no escape codes in a plain environment, and is
    ``PIPE_WIDTH`` wide when piped (unless ``COLUMNS`` says otherwise)."""
    if plain_environment():
        kwargs.setdefault("color_system", None)
    console = _StdoutConsole(**kwargs)
    if "width" not in kwargs and not console.is_terminal and "COLUMNS" not in os.environ:
        console = _StdoutConsole(width=PIPE_WIDTH, **kwargs)
    return console


def text_console(width: int) -> PlainConsole:
    """A recording console ``width`` columns wide for ``--output FILE.txt`` (read back with
    ``export_text``): a file, so plain ASCII tables and pictures, no escape codes."""
    return PlainConsole(record=True, file=io.StringIO(), width=width)


def fancy(console: Console) -> bool:
    """Whether the pictures and tables may use braille, box drawing and colour on ``console``:
    a UTF-8 terminal with colour, outside a plain environment."""
    return _may_draw(console, console.encoding)
