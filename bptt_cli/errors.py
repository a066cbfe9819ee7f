"""Exit statuses and the one exception the core raises for bad input."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes: a stable contract for shell scripts and CI."""

    OK = 0
    VERDICT_MATCHED = 1  # --fail-on matched
    BAD_INPUT = 2
    INTERRUPTED = 130
    BROKEN_PIPE = 141  # stdout closed early (e.g. `| head`), as for a program killed by SIGPIPE


class BadInput(ValueError):
    """Input the tool cannot use; the CLI prints the message on one line and exits 2."""


def one_line(text: str) -> str:
    """``text`` as one printable line, for stderr: what is not printable (a newline, an escape
    sequence of the user's input) is written as its Python escape (``\\n``, ``\\x1b``)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
