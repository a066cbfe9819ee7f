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
