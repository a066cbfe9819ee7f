"""``bptt sweep``: ``bptt analyze`` over a grid of settings.

Every option of ``analyze`` (but its output options) is an axis (:mod:`bptt_cli.run.grid`). Each
grid point is computed by :func:`bptt_cli.run.runner.run_point` (``experiment.resolve``, then
``analysis.analyze``, as ``bptt analyze``), and its record is written as soon as it is done
(:mod:`bptt_cli.io.sweep_records`). :func:`run_sweep` returns every record; the CLI and the API
show them (heat tables, :mod:`bptt_cli.report.heatmap`) or hand them over.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bptt_cli.errors import BadInput
from bptt_cli.io.points import Axis
from bptt_cli.run.stream import EAGER_POINTS as EAGER_POINTS  # re-exported: sweeps' names, kept here
from bptt_cli.run.stream import SweepInterrupted as SweepInterrupted
from bptt_cli.run.stream import copy_record as copy_record
from bptt_cli.run.stream import shape as shape

SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".txt": "table"}


def cpus() -> int:
    """The CPUs this process may run on (the default number of local workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def sweep_format(output: Path | None, fmt: str | None) -> str:
    """The records' format: ``--format``, else from the ``--output`` suffix, else ``table``."""
    from bptt_cli.io.output import output_format

    return output_format(output, fmt, SUFFIX_FORMATS)


@dataclass
class SweepRun:
    """A finished (or stopped) sweep: ``records`` by grid index (the first point of each identity),
    ``failed`` points (index: why), the grid's ``product`` of points and its :class:`Points`.

    A streamed sweep (``streamed``: a grid of more than
    :data:`~bptt_cli.run.stream.EAGER_POINTS` points, :mod:`bptt_cli.run.stream`) keeps no records
    and no product: ``written`` counts the records written, ``done_before`` those already in the
    file (``--resume``); the first :data:`~bptt_cli.run.stream.KEPT` failed points are in
    ``failed`` and ``failed_points`` (``failed_count`` counts them all), and likewise the records
    matching ``--fail-on`` (``matched``, ``matched_count``)."""

    axes: Sequence[Axis]
    product: list[dict[str, Any]]
    grid: Any
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    streamed: bool = False
    size: int = 0
    written: int = 0
    done_before: int = 0
    failed_points: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed_count: int = 0
    matched: list[dict[str, Any]] = field(default_factory=list)
    matched_count: int = 0

    @property
    def total(self) -> int:
        """How many distinct points the grid has (a streamed grid: how many points)."""
        return self.size if self.streamed else len(self.grid.unique)

    def failures(self) -> list[tuple[dict[str, Any], str]]:
        """The points that failed while running (a streamed grid: the first ones) and why, in grid order."""
        if self.streamed:
            return [(self.failed_points[i], self.failed[i]) for i in sorted(self.failed)]
        return [(self.product[i], self.failed[i]) for i in sorted(self.failed)]

    @property
    def n_failed(self) -> int:
        return self.failed_count if self.streamed else len(self.failed)

    def shown(self) -> list[dict[str, Any]]:
        """A record for every point of the product that has one (a point equal to an earlier one
        shows its record under its own spelling), in grid order: what the tables show."""
        return [
            {**self.records[self.grid.index[key]], "point": p}
            for p, key in zip(self.product, self.grid.identity, strict=True)
            if self.grid.index[key] in self.records
        ]

    def ordered(self) -> list[dict[str, Any]]:
        """Every record once, in grid order, with its point as spelled in this sweep."""
        return [{**self.records[i], "point": self.product[i]} for i in sorted(self.records)]


def grid_size(axes: Sequence[Axis]) -> int:
    """How many points the product of ``axes`` has."""
    import math

    return math.prod(len(a.values) for a in axes)


def streams(axes: Sequence[Axis]) -> bool:
    """Whether the grid is streamed (more than :data:`~bptt_cli.run.stream.EAGER_POINTS` points)."""
    from bptt_cli.run import stream

    return grid_size(axes) > stream.EAGER_POINTS


def run_sweep(
    axes: Sequence[Axis],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    out_format: str = "table",
    output: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    fail_on: str | None = None,
) -> SweepRun:
    """Check every point, run the missing ones, stream their records to ``output``, return them all.

    A grid of more than :data:`~bptt_cli.run.stream.EAGER_POINTS` points is streamed instead
    (:mod:`bptt_cli.run.stream`: checked by axis values first and point by point as it runs, its
    records written and not kept, those matching ``fail_on`` kept to be listed).

    ``axes``: one per ``analyze`` option, in its order; ``out_format``: of the records in ``output``
    (``table``: nothing is written here). Points whose numbers another point of the grid gives
    (they differ only in options the cell ignores) are computed once. A point that fails while it
    runs (bad input found only then) is in :attr:`SweepRun.failed`, with nothing written for it:
    ``--resume`` then runs only the points missing from ``output``. ``progress``: a progress bar on
    a terminal's stderr. Ctrl-C closes ``output`` with the whole records done and raises
    :class:`SweepInterrupted`.
    """
    from bptt_cli.io.jsontext import jsonable
    from bptt_cli.io.points import describe
    from bptt_cli.io.sweep_records import open_sink, read_records
    from bptt_cli.report.heatmap import progress as progress_bar
    from bptt_cli.run.experiment import resolve
    from bptt_cli.run.grid import Points, points
    from bptt_cli.run.runner import Failure, PointFailed, running

    if resume and (output is None or out_format == "table"):
        raise BadInput("--resume needs --output FILE with records (.jsonl, .json or .csv)")
    if streams(axes):
        from bptt_cli.run.stream import stream_sweep

        run = SweepRun(axes, [], None, streamed=True, size=grid_size(axes))
        n = workers if workers is not None else cpus()
        return stream_sweep(run, workers=n, scheduler=scheduler, out_format=out_format, output=output,
                            resume=resume, progress=progress, fail_on=fail_on)
    product = points(axes)
    experiments = []
    for p in product:  # every point is checked before anything is run or written
        try:
            experiments.append(resolve(**p))
        except BadInput as e:
            raise BadInput(f"{describe(p, axes)}: {e}") from None
    configs = [jsonable(exp.config()) for exp in experiments]
    grid = Points(product, configs, [exp.ignored_options() for exp in experiments], axes)

    existing = None
    done: dict[int, dict[str, Any]] = {}  # grid index -> its record, kept from the file
    if resume and output is not None:
        existing = read_records(output, out_format)
        foreign = []
        for r in existing.records:
            i = grid.locate(r)
            if i is None:
                foreign.append(r)
            else:
                done.setdefault(i, r)
        if foreign:
            raise BadInput(
                f"cannot resume from {output}: {len(foreign)} of its records are not points of this sweep "
                f"({grid.difference(foreign[0])}); use another --output"
            )

    # what is left: one point computed per set of points with the same numbers, the others copied
    known = {grid.work[i]: r for i, r in done.items()}
    copies_now: list[int] = []
    to_run: list[int] = []
    followers: dict[int, list[int]] = {}
    runs_of: dict[Any, int] = {}
    for i in grid.unique:
        if i in done:
            continue
        work = grid.work[i]
        if work in known:
            copies_now.append(i)
        elif work in runs_of:
            followers[runs_of[work]].append(i)
        else:
            runs_of[work] = i
            followers[i] = []
            to_run.append(i)
    n_workers = workers if workers is not None else cpus()
    if n_workers > 1 or scheduler:
        cost = [
            exp.spec.trials * (exp.spec.T * exp.spec.hidden**2 + 10 * exp.spec.hidden**3)
            for exp in experiments
        ]
        to_run.sort(key=lambda i: -cost[i])  # longest first, so that the last ones to finish are short

    records_out = out_format != "table"  # to output, or streamed to stdout
    run = SweepRun(axes, product, grid, dict(done))
    records, failed = run.records, run.failed
    shapes = {shape(experiments[i]) for i in grid.unique}

    def order(record: dict[str, Any]) -> int:
        i = grid.locate(record)
        return -1 if i is None else i

    def kind_of(record: dict[str, Any]) -> Hashable:
        return shape(experiments[grid.of(record["point"])])

    try:
        with running([product[i] for i in to_run], n_workers, scheduler) as results:
            # the output is created (or cut to its whole records) before anything is computed
            sink = open_sink(out_format, output, existing, order, shapes, kind_of) if records_out else None
            try:
                with progress_bar(len(grid.unique), len(done), enabled=progress) as advance:

                    def emit(i: int, record: dict[str, Any]) -> None:
                        records[i] = record
                        if sink is not None:
                            sink.add(record)
                        advance()

                    for i in copies_now:
                        emit(i, copy_record(known[grid.work[i]], product[i], configs[i]))
                    for outcome in results:
                        if isinstance(outcome, Failure):
                            i = grid.of(outcome.point)
                            for j in (i, *followers[i]):
                                failed[j] = outcome.reason
                                advance()
                            continue
                        i = grid.of(outcome["point"])
                        emit(i, outcome)
                        for j in followers[i]:
                            emit(j, copy_record(outcome, product[j], configs[j]))
            finally:
                if sink is not None:
                    sink.close()
    except PointFailed as e:
        raise BadInput(f"{describe(e.point, axes)}: {e}") from None
    except KeyboardInterrupt:
        raise SweepInterrupted(len(records), len(grid.unique)) from None
    return run
