"""bptt: exact backpropagation-through-time gradients and spectra for recurrent networks.

The Python API (``import bptt_cli as bptt``): :func:`analyze`, :func:`spectrum`, :func:`truncate`,
:func:`sweep`, :func:`advise` and :func:`plot` take the options of the commands of the same names and
return typed results (:mod:`bptt_cli.api.results`); bad input raises :class:`BadInput`, a ``ValueError``. They
are imported on first use, so that ``bptt --help`` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

__all__ = [
    "AdviseResult",
    "AnalyzeResult",
    "BadInput",
    "SpectrumResult",
    "SweepFailed",
    "SweepResult",
    "TruncateResult",
    "advise",
    "analyze",
    "plot",
    "spectrum",
    "sweep",
    "truncate",
]

if TYPE_CHECKING:
    from bptt_cli.api.commands import SweepFailed, advise, analyze, plot, spectrum, sweep, truncate
    from bptt_cli.api.results import AdviseResult, AnalyzeResult, SpectrumResult, SweepResult, TruncateResult
    from bptt_cli.errors import BadInput

_COMMANDS = ("advise", "analyze", "spectrum", "truncate", "sweep", "plot", "SweepFailed")
_RESULTS = ("AdviseResult", "AnalyzeResult", "SpectrumResult", "TruncateResult", "SweepResult")
_WHERE = {
    "BadInput": "bptt_cli.errors",
    **dict.fromkeys(_COMMANDS, "bptt_cli.api.commands"),
    **dict.fromkeys(_RESULTS, "bptt_cli.api.results"),
}


def __getattr__(name: str) -> Any:
    """The API's names, imported when first used."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'bptt_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), *__all__]
