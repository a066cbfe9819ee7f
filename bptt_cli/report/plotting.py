"""Plot files (``--plot FILE`` and ``bptt plot``): checks, loading records, atomic writes.

Nothing here imports matplotlib at module level: :func:`check_plot` runs before any
computation (an unknown suffix, a missing directory or a missing ``bptt-cli[plot]`` extra is
bad input, exit 2, before a long sweep starts), and the figures themselves
(:mod:`bptt_cli.report.figures`) are pure functions of the JSON records, so that ``bptt plot
RESULTS`` redraws a finished run without recomputing it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bptt_cli.errors import BadInput

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
EXTRA = "bptt-cli[plot]"
MISSING = f"--plot needs matplotlib, which is not installed: pip install '{EXTRA}'"
Kind = Literal["analyze", "spectrum", "sweep"]
# reproducible files: no creation date in SVG/PDF (the SVG ids are salted by a fixed string too)
METADATA: dict[str, dict[str, Any]] = {"png": {}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


def require_matplotlib() -> None:
    """Raise :class:`BadInput` naming the extra when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BadInput(MISSING) from None


def check_plot(path: Path | None) -> str | None:
    """The plot format from the suffix of ``path`` (``None`` without ``--plot``), after checking
    everything that could make the plot fail: run this before computing anything."""
    if path is None:
        return None
    from bptt_cli.io.output import check_writable

    fmt = PLOT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BadInput(f"--plot {path}: unknown image format {path.suffix!r} (use .png, .svg or .pdf)")
    check_writable(path)
    require_matplotlib()
    return fmt


def save_figure(fig: Figure, path: Path, fmt: str) -> None:
    """Write ``fig`` to ``path`` (:func:`bptt_cli.io.output.open_output`): a file through a
    temporary file beside it and a rename, so that a failure never leaves a half-written image
    (nor the temporary file); a FIFO or a device in place."""
    import io
    import warnings

    import matplotlib

    from bptt_cli.io.output import open_output

    # drawn in memory first: matplotlib's PDF writer seeks in its file, which a FIFO or a device
    # (written in place) cannot do, and a drawing that fails then touches no file at all
    image = io.BytesIO()
    try:
        with matplotlib.rc_context({"svg.hashsalt": "bptt"}), warnings.catch_warnings():
            # a label (from a saved record) with characters the font lacks: boxes, not a warning
            warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
            fig.savefig(image, format=fmt, metadata=METADATA[fmt])
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror or e}") from None
    with open_output(path, binary=True) as f:
        f.write(image.getvalue())


def record_kind(doc: Any) -> Kind:
    """Which command wrote ``doc`` (a parsed JSON document): ``analyze``, ``spectrum`` or ``sweep``."""
    if isinstance(doc, Mapping):
        if isinstance(doc.get("records"), list):
            return "sweep"
        if "point" in doc and "summary" in doc:
            return "sweep"
        trials = doc.get("trials")
        if isinstance(trials, list) and trials and isinstance(trials[0], Mapping):
            if "grad_h_log10" in trials[0]:
                return "analyze"
            if "singular_values" in (trials[0].get("spectrum") or {}):
                return "spectrum"
    raise BadInput(
        "not a record of bptt analyze, spectrum or sweep (expected the JSON of --format json, "
        "or sweep records as .jsonl, .json or .csv)"
    )


def load_results(path: Path) -> tuple[Kind, Any]:
    """Read ``path`` (analyze/spectrum JSON, sweep JSON, JSONL or CSV) and say what it holds.

    Returns ``("sweep", [records])`` or ``("analyze" | "spectrum", record)``.
    """
    from bptt_cli.io.sweep_records import read_records

    if not path.is_file():
        raise BadInput(f"cannot read {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        records = read_records(path, "csv").records
        return "sweep", _nonempty(records, path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    parsed: list[Any] = []
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
        lines = [line for line in text.splitlines() if line.strip()]
        try:  # JSON lines: one sweep record per line (a last line cut short is dropped, as --resume does)
            parsed = [json.loads(line) for line in lines[:-1]]
            with contextlib.suppress(ValueError):
                parsed.append(json.loads(lines[-1]))
        except (ValueError, IndexError):
            raise BadInput(f"cannot read {path}: neither JSON nor JSON lines") from None
    if doc is None:
        if not parsed or not all(isinstance(r, Mapping) and record_kind(r) == "sweep" for r in parsed):
            raise BadInput(f"cannot read {path}: its lines are not bptt sweep records")
        return "sweep", parsed
    kind = record_kind(doc)
    if kind == "sweep":
        records = doc.get("records", [doc])
        return kind, _nonempty(records, path)
    if kind == "analyze" and doc.get("output"):  # written with --steps K or --summary-only
        raise BadInput(f"cannot draw {path}: it was written with --steps or --summary-only (draw a full one)")
    return kind, doc


def _nonempty(records: Sequence[Any], path: Path) -> list[Any]:
    if not records:
        raise BadInput(f"{path} holds no sweep records")
    return list(records)


def figure_of_file(path: Path, rows: str | None = None, cols: str | None = None) -> Figure:
    """The figure of the records saved in ``path`` (see :func:`load_results`); :class:`BadInput`
    if they are not whole records of bptt (a part missing, or of the wrong type)."""
    kind, data = load_results(path)
    try:
        return figure_of(kind, data, rows, cols)
    except BadInput:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        why = f"{type(e).__name__}: {e}"
        raise BadInput(f"cannot plot {path}: its {kind} record is incomplete or garbled ({why})") from None


def figure_of(kind: Kind, data: Any, rows: str | None = None, cols: str | None = None) -> Figure:
    """The figure for ``data`` (what :func:`load_results` returns, or the record a command just
    made, as parsed JSON)."""
    from bptt_cli.report import figures

    if kind == "analyze":
        return figures.analysis_figure(data)
    if kind == "spectrum":
        return figures.spectrum_figure(data)
    return figures.sweep_figure(data, rows, cols)


def write_plot(
    kind: Kind, data: Any, path: Path, fmt: str, rows: str | None = None, cols: str | None = None
) -> None:
    """Draw the figure for ``data`` (see :func:`figure_of`) and write it to ``path`` atomically."""
    save_figure(figure_of(kind, data, rows, cols), path, fmt)
