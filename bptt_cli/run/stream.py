"""Sweeps of any size: the grid enumerated while it runs, the records streamed, memory flat.

A grid of more than :data:`EAGER_POINTS` points (``bptt sweep --radius 0.1:2:100 --T 10:1000:100
--hidden 8:64:100`` has a million) is never held as a list: :class:`LazyGrid` hands out its
points one block at a time, the runner takes them as workers free up
(:func:`bptt_cli.run.runner.running`), and each record goes to the output as it comes and is
not kept. What this changes against a smaller grid (:func:`bptt_cli.run.sweep.run_sweep`), and
why each guarantee still holds:

- **Checked first.** Before anything is written: every distinct value of every axis (each in
  the grid's first point, the others at their first values), and every point of the first
  block. The other checks of a point (the combinations: conflicting options, a file's shapes
  against a size, the memory budget) are made when it is handed out, and a point that fails
  them fails as a point that fails while it runs: no record, listed when the sweep ends
  (the first :data:`KEPT`, then a count), exit status 2.
- **Points computed once.** Points of equal resolved settings, or that differ only in options
  their cell ignores, can differ only in the "inner" axes: options that are not numbers given
  as they are (``cell``, ``loss``, ``ensemble``, the files, the estimator and memory options,
  ``forget_bias``, ...). Numbers such as ``T``, ``hidden`` or ``radius`` (:data:`OUTER`) resolve to
  themselves, so two points that differ in one are different experiments. A block is one
  combination of the outer axes with every combination of the inner ones, and it is grouped
  exactly as a whole grid is (:class:`bptt_cli.run.grid.Points`): one computed point per group,
  the others copied (``wall_time_s`` 0) or, if their settings are equal, one point.
- **Resume by resolved settings.** The file is read one record at a time; each is located by its
  point's values (or, spelled otherwise, by its resolved settings within its block), and a set
  of done grid indices (one bit per grid point up to 2^31 points) is all that is kept. Records
  of another sweep are an error, as for any grid. Points done are skipped without being resolved.
- **Same records.** Every point is computed by :func:`bptt_cli.run.runner.run_point`, so the
  records are those of any other run. Points go out in grid order by blocks (not longest first:
  that needs the whole grid), and records are written in completion order; ``--format json``
  (one document, rewritten whole) and the heat tables (every record kept) are for grids of at
  most :data:`EAGER_POINTS` points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

from bptt_cli.errors import BadInput
from bptt_cli.io.points import Axis, cell_text, describe

EAGER_POINTS = 10_000  # grids up to this size are checked whole first and kept (run.sweep)
KEPT = 1000  # failed points and --fail-on matches kept to be listed; the others are counted
BITSET_MAX = 2**31  # resume's done set is a bitset up to this many grid points, else a set
# options whose distinct values are always distinct experiments: numbers that resolve to themselves
OUTER = ("T", "hidden", "inputs_dim", "outputs_dim", "gain", "radius", "norm", "bias", "trials", "seed",
         "tolerance", "lyapunov", "clip")

Point = dict[str, Any]


class LazyGrid:
    """The product of ``axes`` (the last varying fastest), never materialised: a point's index,
    the point at an index, and the blocks (one combination of the outer axes each)."""

    def __init__(self, axes: Sequence[Axis]) -> None:
        self.axes = list(axes)
        self.names = [a.name for a in axes]
        self.sizes = [len(a.values) for a in axes]
        self.total = math.prod(self.sizes)
        self.strides = [math.prod(self.sizes[i + 1 :]) for i in range(len(self.sizes))]
        self.outer = [i for i, a in enumerate(axes) if not a.swept or a.name in OUTER]
        self.inner = [i for i, a in enumerate(axes) if a.swept and a.name not in OUTER]
        self.swept = [i for i, a in enumerate(axes) if a.swept]
        self.position = {i: {cell_text(v): j for j, v in enumerate(axes[i].values)} for i in self.swept}
        self.inner_offsets = [
            sum(c * self.strides[i] for i, c in zip(self.inner, combo, strict=True))
            for combo in itertools.product(*(range(self.sizes[i]) for i in self.inner))
        ]
        self.base = {a.name: a.values[0] for a in axes}
        fixed = [i for i in range(len(axes)) if not axes[i].swept]
        self._fixed_names = [self.names[i] for i in fixed]
        self._fixed_texts = [cell_text(self.axes[i].values[0]) for i in fixed]

    def point_at(self, index: int) -> Point:
        """The point of grid index ``index`` (its settings by option name, in ``analyze``'s order)."""
        p = dict(self.base)
        for i in self.swept:
            p[self.names[i]] = self.axes[i].values[(index // self.strides[i]) % self.sizes[i]]
        return p

    def index_of(self, point: Mapping[str, Any]) -> int | None:
        """The grid index of a point spelled as this grid's (``None`` if it is not one)."""
        if len(point) != len(self.names):
            return None
        try:
            index = 0
            for i in self.swept:
                index += self.position[i][cell_text(point[self.names[i]])] * self.strides[i]
            if [cell_text(point[n]) for n in self._fixed_names] != self._fixed_texts:
                return None
        except KeyError:
            return None
        return index

    def block(self, outer: Sequence[int]) -> list[int]:
        """The grid indices of one combination ``outer`` of the outer axes (coordinates, in order)."""
        base = sum(c * self.strides[i] for i, c in zip(self.outer, outer, strict=True))
        return [base + offset for offset in self.inner_offsets]

    def blocks(self) -> Iterator[list[int]]:
        """Every block, in grid order of the outer axes."""
        swept_outer = [i for i in self.outer if self.sizes[i] > 1]
        for combo in itertools.product(*(range(self.sizes[i]) for i in swept_outer)):
            base = sum(c * self.strides[i] for i, c in zip(swept_outer, combo, strict=True))
            yield [base + offset for offset in self.inner_offsets]


class DoneSet:
    """Grid indices with a record: a bitset of the grid (at most ``BITSET_MAX`` points), else a set."""

    def __init__(self, total: int) -> None:
        self.bits = bytearray((total + 7) // 8) if total <= BITSET_MAX else None
        self.others: set[int] = set()
        self.count = 0

    def add(self, i: int) -> None:
        if i in self:
            return
        self.count += 1
        if self.bits is None:
            self.others.add(i)
        else:
            self.bits[i >> 3] |= 1 << (i & 7)

    def __contains__(self, i: int) -> bool:
        if self.bits is None:
            return i in self.others
        return bool(self.bits[i >> 3] & (1 << (i & 7)))


def _resolve(point: Point) -> Any:
    from bptt_cli.run.experiment import resolve

    return resolve(**point)


def check_values(grid: LazyGrid) -> list[tuple[int, Point, Any]]:
    """Every distinct value of every axis (each in the first point, the others at their first
    values) and every point of the first block, resolved: :class:`BadInput` naming the point
    for the first that fails. Returns the first block, resolved."""
    resolved = []
    seen: set[int] = set()
    for i in grid.block([0] * len(grid.outer)):
        p = grid.point_at(i)
        resolved.append((i, p, _checked(p, grid.axes)))
        seen.add(i)
    for a in grid.swept:
        for j in range(grid.sizes[a]):
            i = j * grid.strides[a]
            if i not in seen:
                seen.add(i)
                _checked(grid.point_at(i), grid.axes)
    return resolved


def _checked(point: Point, axes: Sequence[Axis]) -> Any:
    try:
        return _resolve(point)
    except BadInput as e:
        raise BadInput(f"{describe(point, axes)}: {e}") from None


class Locator:
    """The grid index of a record read back (``--resume``), or ``None`` for a record of another sweep."""

    def __init__(self, grid: LazyGrid, base: Any) -> None:
        self.grid = grid
        self.base = base  # the first point's experiment: the resolved value of an unswept default
        self._block: tuple[tuple[int, ...], Any, list[int]] | None = None

    def _normal(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        from bptt_cli.run.grid import Points

        point = record.get("point")
        if not isinstance(point, Mapping):
            return None
        try:
            return Points._normal({**dict.fromkeys(self.grid.names), **point}, record["config"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def locate(self, record: Mapping[str, Any]) -> int | None:
        grid = self.grid
        point = record.get("point")
        if isinstance(point, Mapping):
            index = grid.index_of(point)
            if index is not None:
                return index
        normal = self._normal(record)
        if normal is None or set(normal) - set(grid.names):
            return None
        outer = []
        for i in grid.outer:
            if grid.sizes[i] == 1:
                outer.append(0)
                continue
            c = grid.position[i].get(cell_text(normal.get(grid.names[i])))
            if c is None:
                return None
            outer.append(c)
        points, indices = self._points(tuple(outer))
        if points is None:
            return None
        k = points.locate(record)
        return None if k is None else indices[k]

    def _points(self, outer: tuple[int, ...]) -> tuple[Any, list[int]]:
        """The :class:`~bptt_cli.run.grid.Points` of a block (cached: records of one block come together)."""
        if self._block is None or self._block[0] != outer:
            from bptt_cli.io.jsontext import jsonable
            from bptt_cli.run.grid import Points

            good = []
            for i in self.grid.block(outer):
                p = self.grid.point_at(i)
                try:
                    good.append((i, p, _resolve(p)))
                except BadInput:
                    continue
            points = None if not good else Points(
                [p for _, p, _ in good], [jsonable(e.config()) for _, _, e in good],
                [e.ignored_options() for _, _, e in good], self.grid.axes,
            )
            self._block = (outer, points, [i for i, _, _ in good])
        return self._block[1], self._block[2]

    def difference(self, record: Mapping[str, Any]) -> str:
        """Why a record is no point of this grid, naming the first setting that differs."""
        point = record.get("point") or {}
        names = {a.name: a.flag for a in self.grid.axes}
        unknown = sorted(set(point) - set(names))
        if unknown:
            return f"its point has settings bptt analyze does not have: {', '.join(unknown)}"
        normal = self._normal(record)
        if normal is None:
            return "its config cannot be read"
        ours_base = self.base.resolved_options()
        for a in self.grid.axes:
            ours = list(a.values)
            if len(ours) == 1 and ours[0] is None and a.name in ours_base:
                ours = [ours_base[a.name]]
            value = normal.get(a.name)
            if cell_text(value) not in {cell_text(v) for v in ours}:
                theirs = "unset" if value is None else cell_text(value)
                shown = ours[:5]
                listed = " or ".join("unset" if v is None else cell_text(v) for v in shown)
                more = f" (or {len(ours) - 5} more)" if len(ours) > 5 else ""
                return f"the file has {a.flag} {theirs} where this sweep has {listed}{more}"
        return f"the file's {describe(normal, self.grid.axes)} is no combination of this sweep's axes"


def shape(exp: Any) -> Hashable:
    """What a record's columns depend on (the kind of cell, Elman or gated, the estimators, and
    whether the theory is computed): records of one shape flatten to the same CSV columns."""
    return type(exp.spec).__name__, tuple(e.kind for e in exp.estimators), bool(exp.theory)


def copy_record(
    record: Mapping[str, Any], point: Mapping[str, Any], config: Mapping[str, Any]
) -> dict[str, Any]:
    """The record of ``point``, whose numbers are ``record``'s (they differ only in options the
    cell ignores): its own ``point`` and ``config``, ``record``'s ``summary``, no wall time of
    its own (``wall_time_s`` 0)."""
    return {
        "point": dict(point),
        "config": dict(config),
        "summary": record["summary"],
        "wall_time_s": 0.0,
        "version": record["version"],
    }


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: ``done`` of ``total`` points have records (in ``output``, if any)."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"{done} of {total} points")
        self.done, self.total = done, total


def record_shape(record: Mapping[str, Any]) -> Hashable:
    """:func:`bptt_cli.run.sweep.shape` of a record's experiment, from its point's options."""
    from bptt_cli.core.network import GATED
    from bptt_cli.estimators.estimator import estimators_from_options

    p = record["point"]
    truncate = p.get("truncate")
    estimators = estimators_from_options(
        None if truncate is None else str(truncate), p.get("truncate_mode"), p.get("keep_prob"),
        p.get("draws"), p.get("clip"),
    )
    kinds = tuple(e.kind for e in estimators)
    return ("GatedSpec" if p.get("cell") in GATED else "Spec"), kinds, p.get("theory", True) is not False


def stream_sweep(
    run: Any,
    *,
    workers: int,
    scheduler: str | None,
    out_format: str,
    output: Any,
    resume: bool,
    progress: bool,
    fail_on: str | None,
) -> Any:
    """Run a grid of any size into ``run`` (a :class:`bptt_cli.run.sweep.SweepRun` with
    ``streamed`` set), writing each record as it comes; see the module doc."""
    from bptt_cli.analysis.result import FAIL_ON
    from bptt_cli.io.jsontext import jsonable
    from bptt_cli.io.sweep_records import open_sink, scan_records
    from bptt_cli.report.heatmap import progress as progress_bar
    from bptt_cli.run.grid import Points
    from bptt_cli.run.runner import Failure, PointFailed, running

    grid = LazyGrid(run.axes)
    if out_format not in ("jsonl", "csv"):
        raise BadInput(
            f"a grid of {grid.total} points is streamed: give --output FILE.jsonl or FILE.csv (or --format "
            f"jsonl or csv for stdout); heat tables and --format json keep every record, for grids of at "
            f"most {EAGER_POINTS} points"
        )
    first = check_values(grid)
    kinds = {shape(exp) for _, _, exp in first}
    done = DoneSet(grid.total)
    existing = None
    if resume:
        existing, records = scan_records(output, out_format)
        locator = Locator(grid, first[0][2])
        foreign, example = 0, None
        for r in records:
            i = locator.locate(r)
            if i is None:
                foreign += 1
                example = example or r
            else:
                done.add(i)
        if example is not None:
            raise BadInput(
                f"cannot resume from {output}: {foreign} of its records are not points of this sweep "
                f"({locator.difference(example)}); use another --output"
            )
    run.done_before = done.count
    verdicts = FAIL_ON.get(fail_on, ()) if fail_on else ()
    followers: dict[int, list[tuple[int, Point, Any]]] = {}  # computed point -> the points copied from it

    with progress_bar(grid.total, 0, enabled=progress) as advance:
        sink: Any = None

        def emit(i: int, record: dict[str, Any]) -> None:
            sink.add(record)
            run.written += 1
            summary = record["summary"]
            if summary["verdict"] in verdicts:
                run.matched_count += 1
                if len(run.matched) < KEPT:
                    run.matched.append({"point": record["point"], "summary": summary})
            advance()

        def fail(i: int, point: Point, reason: str) -> None:
            run.failed_count += 1
            if len(run.failed) < KEPT:
                run.failed[i] = reason
                run.failed_points[i] = point
            advance()

        def to_run() -> Iterator[Point]:
            for block in grid.blocks():
                if resume and all(i in done for i in block):
                    advance(len(block))
                    continue
                if len(block) == 1:
                    followers[block[0]] = []
                    yield grid.point_at(block[0])
                    continue
                yield from _group(block)

        def _group(block: list[int]) -> Iterator[Point]:
            """One point per group of a block's points with the same numbers (:class:`Points`)."""
            good = []
            for i in block:
                p = grid.point_at(i)
                try:
                    good.append((i, p, _resolve(p)))
                except BadInput as e:
                    fail(i, p, str(e))
            if not good:
                return
            configs = [jsonable(exp.config()) for _, _, exp in good]
            ignored = [e.ignored_options() for _, _, e in good]
            points = Points([p for _, p, _ in good], configs, ignored, grid.axes)
            members: dict[int, list[int]] = {}
            for k, key in enumerate(points.identity):
                members.setdefault(points.index[key], []).append(k)
            sources: dict[Any, int] = {}
            out = []
            for k in points.unique:
                same = members[k]
                if any(good[m][0] in done for m in same):  # in the file already
                    advance(len(same))
                    continue
                advance(len(same) - 1)  # spelled otherwise: the same point
                work = points.work[k]
                if work in sources:
                    followers[sources[work]].append((good[k][0], good[k][1], configs[k]))
                else:
                    sources[work] = good[k][0]
                    followers[good[k][0]] = []
                    out.append(good[k][1])
            yield from out  # every follower is registered before its source goes out

        try:
            with running(to_run(), workers, scheduler) as results:
                sink = open_sink(out_format, output, existing, lambda record: 0, kinds, record_shape)
                try:
                    for outcome in results:
                        point = outcome.point if isinstance(outcome, Failure) else outcome["point"]
                        index = grid.index_of(point)
                        assert index is not None
                        i = index
                        if isinstance(outcome, Failure):
                            fail(i, point, outcome.reason)
                            for j, q, _ in followers.pop(i, []):
                                fail(j, q, outcome.reason)
                            continue
                        emit(i, outcome)
                        for j, q, config in followers.pop(i, []):
                            emit(j, copy_record(outcome, q, config))
                finally:
                    sink.close()
        except PointFailed as e:
            raise BadInput(f"{describe(e.point, grid.axes)}: {e}") from None
        except KeyboardInterrupt:
            raise SweepInterrupted(run.written + done.count, grid.total) from None
    return run
