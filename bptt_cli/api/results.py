"""What the Python API returns: typed results holding numpy arrays, the CLI's JSON as ``to_dict()``,
pandas frames, and rich tables that render themselves (in a terminal with ``rich.print`` and in
Jupyter).

``AnalyzeResult.trials[i]`` is trial ``i``'s record with the JSON's keys (docs/json.md), its values
numpy arrays and numbers rather than lists: ``result.trials[0].grad_h_log10`` is an array of T
values (``-inf`` where the JSON has ``null`` for an exact zero, NaN where it has ``null`` for
undefined), ``result.trials[0].spectrum.spectral_radius`` a number. ``to_dict()`` is exactly
what ``--format json`` prints, as Python objects.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bptt_cli.analysis.result import FAIL_ON, Analysis
from bptt_cli.io.jsontext import jsonable

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

    from bptt_cli.analysis.spectrum import SpectrumReport
    from bptt_cli.report.plotting import Kind
    from bptt_cli.run.advise import Advice
    from bptt_cli.run.experiment import Experiment
    from bptt_cli.run.sweep import SweepRun


class Record(dict[str, Any]):
    """A JSON object of a record whose keys are also attributes (``trial.spectrum.eigenvalues``),
    its numbers as numpy values."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return Record(value) if isinstance(value, Mapping) and not isinstance(value, Record) else value

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self.keys()]


class _Collector:
    """A stand-in console that keeps what is printed (for ``__rich_console__``), and answers every
    other question (width, colours, terminal) as the real console does."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self.items: list[Any] = []

    def print(self, *objects: Any, **_: Any) -> None:
        self.items.extend(objects)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console, name)


class Rendered:
    """A result that renders itself: the command's tables, in a terminal (``rich.print(result)``)
    and in Jupyter (``_repr_html_``)."""

    def render(self, console: Console, **view: Any) -> None:
        """Print the command's tables to ``console`` (``view``: what they show, e.g. ``layer``)."""
        raise NotImplementedError

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        collector = _Collector(console)
        self.render(collector)  # type: ignore[arg-type]
        yield from collector.items

    def _repr_html_(self) -> str:
        from rich.console import Console

        console = Console(record=True, width=110, file=io.StringIO(), force_terminal=True,
                          color_system="truecolor", force_jupyter=False)
        self.render(console)
        return console.export_html(inline_styles=True)

    def text(self, width: int = 100, **view: Any) -> str:
        """The tables as plain text (what ``--format table --output FILE.txt`` writes)."""
        from bptt_cli.report.terminal import text_console

        console = text_console(width)
        self.render(console, **view)
        return console.export_text()


def _frame(columns: Mapping[str, Any]) -> Any:
    """A pandas DataFrame of ``columns`` (``pip install 'bptt-cli[pandas]'``)."""
    try:
        import pandas as pd
    except ImportError:
        from bptt_cli.errors import BadInput

        raise BadInput("to_frame() needs pandas, an optional extra: pip install 'bptt-cli[pandas]'") from None
    return pd.DataFrame(dict(columns))


def _record_options(steps: Any, summary_only: Any) -> tuple[int, bool]:
    """``steps`` and ``summary_only`` checked as ``--steps`` and ``--summary-only`` are
    (:func:`bptt_cli.api.options.record_options`): :class:`~bptt_cli.errors.BadInput` with the
    CLI's message."""
    from bptt_cli.api import options as opt

    checked = opt.check(opt.record_options, {"steps": steps, "summary_only": summary_only})
    return checked["steps"], checked["summary_only"]


@dataclass
class AnalyzeResult(Rendered):
    """The result of :func:`bptt_cli.analyze`: every trial's exact BPTT gradients, spectrum and theory.

    ``analysis``: the full :class:`~bptt_cli.analysis.result.Analysis` (arrays with the trial axis
    first: ``analysis.grad_h_log10`` is ``(n, T)``, ``analysis.net.W_hh`` ``(n, h, h)``);
    ``experiment``: the checked settings.
    """

    analysis: Analysis
    experiment: Experiment
    _record: dict[str, Any] | None = field(default=None, repr=False)

    def record(
        self, fail_on: str | None = None, steps: int = 1, summary_only: bool = False
    ) -> dict[str, Any]:
        """The JSON object of ``bptt analyze --format json`` with numpy values (``fail_on``: as the
        CLI's ``config.fail_on``; ``steps``, ``summary_only``: as ``--steps K`` and
        ``--summary-only``, :func:`bptt_cli.io.records.output_record`)."""
        from bptt_cli.io.records import analysis_record, output_record

        steps, summary_only = _record_options(steps, summary_only)
        if self._record is None:
            self._record = analysis_record(self.analysis, self.experiment.report_config(self.analysis))
        record = {**self._record, "config": {**self._record["config"], "fail_on": fail_on}}
        return output_record(record, self.analysis.grad_h_log10.shape[1], steps, summary_only)

    @property
    def trials(self) -> list[Record]:
        """Each trial's record (the JSON's ``trials[i]``), values as numpy arrays and numbers."""
        return [Record(t) for t in self.record()["trials"]]

    @property
    def summary(self) -> Record:
        """Medians over trials, the verdict, the theory's summary (the JSON's ``summary``)."""
        return Record(self.record()["summary"])

    @property
    def config(self) -> Record:
        """Every setting, resolved (the JSON's ``config``)."""
        return Record(self.record()["config"])

    @property
    def verdict(self) -> str:
        """``vanishing``, ``stable``, ``exploding`` or ``undefined``: of the median gain over trials."""
        return self.analysis.verdict

    @property
    def gain_log10(self) -> float:
        """Median over trials of ``log10 ||dL/dh_1|| / ||dL/dh_T||`` along the last step's chain."""
        return self.analysis.median_gain_log10

    def fails(self, fail_on: str | None) -> bool:
        """Whether the verdict matches ``fail_on`` (``vanishing``, ``exploding``, ``unstable``)."""
        if fail_on is not None and fail_on not in FAIL_ON:
            from bptt_cli.errors import BadInput

            raise BadInput(f"unknown fail_on {fail_on!r} (choose from {', '.join(FAIL_ON)})")
        return self.analysis.fails(fail_on)

    def to_dict(
        self, fail_on: str | None = None, steps: int = 1, summary_only: bool = False
    ) -> dict[str, Any]:
        """What ``bptt analyze --format json`` prints, as Python objects (``null`` is ``None``)."""
        return jsonable(self.record(fail_on, steps, summary_only))

    def to_frame(self) -> Any:
        """One row per trial and step: the columns of ``--format csv`` (pandas)."""
        from bptt_cli.io.records import analysis_columns

        return _frame(analysis_columns(self.analysis))

    def write(
        self, fmt: str, write: Callable[[str], object], fail_on: str | None = None, steps: int = 1,
        summary_only: bool = False,
    ) -> None:
        """The ``json`` or ``csv`` text of ``--format``, written in pieces (``steps``,
        ``summary_only``: ``--steps K``, ``--summary-only``)."""
        from bptt_cli.io.jsontext import write_json
        from bptt_cli.io.records import write_analysis_csv

        steps, summary_only = _record_options(steps, summary_only)
        if fmt == "json":
            write_json(self.record(fail_on, steps, summary_only), write)
            write("\n")
        else:
            if summary_only:
                from bptt_cli.errors import BadInput

                raise BadInput("--summary-only is for --format json (the CSV has one row per step)")
            write_analysis_csv(self.analysis, write, steps)

    def check_layer(self, layer: int = 0, direction: int = 0) -> None:
        """:class:`~bptt_cli.errors.BadInput` unless the network has layer ``layer``, ``direction``."""
        from bptt_cli.report.tables import layer_index

        layer_index(self.analysis, layer, direction)

    def render(self, console: Console, layer: int = 0, direction: int = 0, **_: Any) -> None:
        """The tables of ``bptt analyze``; the step table and chart of ``layer``, ``direction``."""
        from bptt_cli.report.tables import render_analysis

        exp = self.experiment
        weights = exp.files.get("weights")
        source = None if weights is None else str(weights)
        drawn = exp.drawn if any(exp.files.values()) else None  # named when files gave the rest
        render_analysis(self.analysis, console, weights=source, drawn=drawn, layer=layer, direction=direction)

    def __repr__(self) -> str:
        spec = self.analysis.spec
        n, T, h = self.analysis.net.shape[:3]
        return (f"<AnalyzeResult cell={spec.cell} T={T} hidden={h} trials={n}: {self.verdict}, "
                f"median gain_log10 {self.gain_log10:+.3g}>")


@dataclass
class SpectrumResult(Rendered):
    """The result of :func:`bptt_cli.spectrum`: eigenvalues, singular values and non-normality of
    ``W_hh`` beside the random-matrix prediction (``report``: the arrays, trial axis first)."""

    report: SpectrumReport
    settings: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """The JSON object of ``bptt spectrum --format json`` with numpy values."""
        from bptt_cli.io.records import spectrum_record

        return spectrum_record(self.report, self.settings)

    @property
    def trials(self) -> list[Record]:
        return [Record(t) for t in self.record()["trials"]]

    @property
    def summary(self) -> Record:
        return Record(self.record()["summary"])

    def to_dict(self) -> dict[str, Any]:
        """What ``bptt spectrum --format json`` prints, as Python objects."""
        return jsonable(self.record())

    def to_frame(self) -> Any:
        """One row per trial and index: the columns of ``--format csv`` (pandas)."""
        from bptt_cli.io.records import spectrum_columns

        return _frame(spectrum_columns(self.report))

    def write(self, fmt: str, write: Callable[[str], object], **_: Any) -> None:
        """The ``json`` or ``csv`` text of ``--format``."""
        from bptt_cli.io.jsontext import dumps
        from bptt_cli.io.records import spectrum_csv

        write(dumps(self.record()) + "\n" if fmt == "json" else spectrum_csv(self.report))

    def render(self, console: Console, **_: Any) -> None:
        from bptt_cli.report.theory_tables import render_spectrum

        render_spectrum(self.report, console)

    def __repr__(self) -> str:
        sp = self.report.spectrum
        return f"<SpectrumResult hidden={sp.eigenvalues.shape[1]} trials={sp.eigenvalues.shape[0]}>"


@dataclass
class TruncateResult(Rendered):
    """The result of :func:`bptt_cli.truncate`: full, regular and randomized truncation side by side
    for one parameter's gradient (``rows``), every estimator for every parameter in ``to_dict()``."""

    analysis: Analysis
    param: str
    settings: dict[str, Any]
    weights: str | None = None
    drawn: list[str] | None = None

    def record(self) -> dict[str, Any]:
        """The JSON object of ``bptt truncate --format json`` with numpy values."""
        from bptt_cli.io.records import comparison_record

        return comparison_record(self.analysis, self.param, self.settings)

    @property
    def rows(self) -> list[Record]:
        """Full BPTT, then every estimator: cost, error, bias, variance, cosine (medians over trials)."""
        return [Record(r) for r in self.record()["rows"]]

    def to_dict(self) -> dict[str, Any]:
        """What ``bptt truncate --format json`` prints, as Python objects."""
        return jsonable(self.record())

    def to_frame(self) -> Any:
        """One row per estimator (pandas)."""
        rows = self.to_dict()["rows"]
        keys = list(dict.fromkeys(k for r in rows for k in r))
        return _frame({k: [r.get(k) for r in rows] for k in keys})

    def write(self, fmt: str, write: Callable[[str], object], **_: Any) -> None:
        """The ``json`` text of ``--format``."""
        from bptt_cli.io.jsontext import dumps

        write(dumps(self.record()) + "\n")

    def render(self, console: Console, **_: Any) -> None:
        from bptt_cli.report.estimator_tables import render_comparison

        render_comparison(self.analysis, self.param, console, self.weights, self.drawn)

    def __repr__(self) -> str:
        return f"<TruncateResult param={self.param} estimators={len(self.analysis.estimates)}>"


@dataclass
class AdviseResult(Rendered):
    """The result of :func:`bptt_cli.advise`: the diagnosis and every recommendation with its measured
    check (``advice``, the JSON's ``advice``), and the network with the remedy applied
    (:meth:`apply`)."""

    advice: Advice
    experiment: Experiment
    settings: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """The JSON object of ``bptt advise --format json``."""
        from bptt_cli import __version__

        config = {**self.experiment.config(), **self.settings}
        unused = ("lyapunov", "truncate", "truncate_mode", "keep_prob", "clip", "checkpoint", "eigenvalues",
                  "theory")
        for key in unused:
            config.pop(key, None)  # analyze's, not the advice's
        return {"version": __version__, "config": config, "diagnosis": self.advice.diagnosis,
                "advice": self.advice.pieces()}

    def to_dict(self) -> dict[str, Any]:
        """What ``bptt advise --format json`` prints, as Python objects."""
        return jsonable(self.record())

    @property
    def verdict(self) -> str:
        """The diagnosis: ``vanishing``, ``stable``, ``exploding`` or ``undefined``."""
        return str(self.advice.diagnosis["verdict"])

    def fails(self, fail_on: str | None) -> bool:
        """Whether the diagnosis matches ``fail_on`` (``vanishing``, ``exploding``, ``unstable``)."""
        if fail_on is None:
            return False
        if fail_on not in FAIL_ON:
            from bptt_cli.errors import BadInput

            raise BadInput(f"unknown fail_on {fail_on!r} (choose from {', '.join(FAIL_ON)})")
        return self.verdict in FAIL_ON[fail_on]

    def write(self, fmt: str, write: Callable[[str], object], **_: Any) -> None:
        from bptt_cli.io.jsontext import dumps

        write(dumps(self.record()) + "\n")

    def render(self, console: Console, **_: Any) -> None:
        from bptt_cli.report.advice_table import render_advice

        render_advice(self.to_dict(), console)

    def applied(self) -> dict[str, Any] | None:
        """The network with the recommended scale of ``W_hh`` or forget bias applied, as named arrays:
        the ``--weights`` file's own arrays (every key kept, its layout too) when there was one (or
        those of the arrays, state_dict or module handed over), else trial 0's drawn parameters;
        ``None`` if nothing is recommended (:meth:`apply` then raises ``BadInput``)."""
        import numpy as np

        from bptt_cli.run.advise import remedied

        advice, exp = self.advice, self.experiment
        if advice.network is None:
            return None
        source = exp.weights_source  # a path, or the arrays or module handed to the API
        spec = exp.spec
        if source is None or spec.radius is not None or spec.norm is not None:
            return advice.network  # drawn, or a file's W_hh rescaled to an exact radius or norm
        from bptt_cli.io.weights import read_source

        raw, _ = read_source(source)
        arrays = {"W_hh": raw} if isinstance(raw, np.ndarray) else dict(raw)
        return remedied(arrays, advice, spec.hidden)

    def apply(self, path: str | Path) -> None:
        """Write :meth:`applied` to ``path`` (``.npz``, or ``.pt`` with torch), atomically.
        :class:`~bptt_cli.errors.BadInput` if nothing is recommended."""
        from bptt_cli.errors import BadInput
        from bptt_cli.io.statedict import write_weights_file

        source = self.experiment.weights_source
        import os

        if isinstance(source, str | Path) and Path(path).exists() and Path(source).exists() \
                and os.path.samefile(source, path):
            raise BadInput(f"--apply {path} is the --weights file: write the remedied network elsewhere")
        arrays = self.applied()
        if arrays is None:
            raise BadInput("--apply: nothing to apply: no rescaling of W_hh or forget bias is advised here")
        write_weights_file(Path(path), arrays)

    def __repr__(self) -> str:
        return f"<AdviseResult {self.verdict}: {', '.join(k for k, v in self.advice.pieces().items() if v)}>"


@dataclass
class SweepResult(Rendered):
    """The result of :func:`bptt_cli.sweep`: one record per grid point (``records``, in grid order,
    each ``{"point", "config", "summary", "wall_time_s", "version"}`` as ``--format jsonl`` writes
    them), and the points that failed (``failed``: description -> reason)."""

    run: SweepRun
    defaults: dict[str, Any]
    rows: str | None = None
    cols: str | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.run.ordered()

    @property
    def failed(self) -> dict[str, str]:
        from bptt_cli.io.points import describe

        run = self.run
        return {describe(point, run.axes): why for point, why in run.failures()}

    def fails(self, fail_on: str | None) -> list[dict[str, Any]]:
        """The records whose verdict matches ``fail_on`` (what ``--fail-on`` lists; a streamed
        sweep's first ones, its ``point`` and ``summary``)."""
        if fail_on is None:
            return []
        if self.run.streamed:
            return list(self.run.matched)
        return [r for r in self.records if r["summary"]["verdict"] in FAIL_ON[fail_on]]

    def to_dict(self) -> dict[str, Any]:
        """What ``bptt sweep --format json`` writes, as Python objects."""
        from bptt_cli import __version__

        return {"version": __version__, "records": jsonable(self.records)}

    def to_frame(self) -> Any:
        """One row per point, the records flattened to dotted columns as ``--format csv`` (pandas)."""
        from bptt_cli.io.sweep_records import flatten

        flat = [flatten(r) for r in jsonable(self.records)]
        keys = list(dict.fromkeys(k for r in flat for k in r))
        return _frame({k: [r.get(k) for r in flat] for k in keys})

    def render(self, console: Console, **_: Any) -> None:
        from bptt_cli.report.heatmap import layout, render_sweep

        axes = self.run.axes
        fixed = {
            a.flag.lstrip("-"): a.values[0] for a in axes
            if not a.swept and a.values[0] is not None
            and (a.values[0] != self.defaults.get(a.name) or a.name in ("trials", "seed"))
        }
        render_sweep(self.run.shown(), axes, layout(axes, self.rows, self.cols), console, fixed)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return self.run.written + self.run.done_before if self.run.streamed else len(self.run.records)

    def __repr__(self) -> str:
        return f"<SweepResult {len(self)} of {self.run.total} points" + (
            f", {self.run.n_failed} failed>" if self.run.n_failed else ">"
        )


def figure(result: Any, rows: str | None = None, cols: str | None = None) -> Any:
    """The matplotlib figure ``--plot`` draws for a result (or for saved results: a path)."""
    from bptt_cli.report.plotting import figure_of, figure_of_file, require_matplotlib

    require_matplotlib()
    if isinstance(result, str | Path):
        return figure_of_file(Path(result), rows, cols)
    kind: Kind
    if isinstance(result, AnalyzeResult):
        kind, data = "analyze", result.to_dict()
    elif isinstance(result, SpectrumResult):
        kind, data = "spectrum", result.to_dict()
    elif isinstance(result, SweepResult):
        kind, data = "sweep", jsonable(result.records)
        rows, cols = rows or result.rows, cols or result.cols
    else:
        from bptt_cli.errors import BadInput

        raise BadInput(f"cannot draw a {type(result).__name__}: give a result of analyze, spectrum or sweep")
    return figure_of(kind, data, rows, cols)
