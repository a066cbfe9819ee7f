"""Running the grid points of a sweep: in-process, in local worker processes, or on Dask.

A point is sent as its settings (a small dict of ``analyze`` option values), never as arrays;
the worker draws the network itself, from seeds that depend on the settings alone
(``SeedSequence(seed).spawn(trials)``, as ``bptt analyze``), so a record is the same whichever
process computes it and whatever else is in the grid.

Local workers are started once per sweep with ``spawn`` and single-threaded BLAS
(``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` = 1 in their environment
before numpy loads there), so N workers use N cores without oversubscription. Results come
back as points finish, in completion order.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import BadInput

Point = dict[str, Any]
Record = dict[str, Any]
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
DASK_EXTRA = "bptt-cli[dask]"
DASK_RETRIES = 2
DASK_CONNECT_TIMEOUT_S = 10.0
ORPHAN_POLL_S = 0.5


class PointFailed(BadInput):
    """A grid point that could not be computed: ``point`` and why (one line)."""

    def __init__(self, point: Point, reason: str) -> None:
        super().__init__(reason)
        self.point = point


def run_point(point: Point) -> Record:
    """The record of one grid point: its settings, resolved config, summary and wall time.

    ``config`` and ``summary`` are those of ``bptt analyze --format json`` for the point's
    settings (:func:`records.analysis_record` of :meth:`Experiment.run`), without ``fail_on``;
    ``wall_time_s`` is the time spent here (drawing, BPTT, spectra, theory, summary), seconds.
    """
    start = time.perf_counter()
    from .experiment import resolve
    from .records import analysis_record, jsonable

    exp = resolve(**point)
    an = exp.run()
    report = analysis_record(an, exp.report_config(an))  # the very object `bptt analyze --format json` prints
    return {
        "point": dict(point),
        "config": jsonable(report["config"]),
        "summary": jsonable(report["summary"]),
        "wall_time_s": time.perf_counter() - start,
        "version": report["version"],
    }


def _worker_init() -> None:
    """In each local worker: single-threaded BLAS (if numpy is not loaded yet), Ctrl-C left to
    the parent, and an exit within a second if the parent dies (``kill -9``) instead of idling."""
    import signal
    import threading

    for var in BLAS_THREAD_VARS:
        os.environ[var] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="bptt-orphan-watch", daemon=True).start()


@contextlib.contextmanager
def single_threaded_blas_env() -> Iterator[None]:
    """Set the BLAS thread variables to 1 in ``os.environ`` (inherited by processes started
    meanwhile), then restore them."""
    saved = {var: os.environ.get(var) for var in BLAS_THREAD_VARS}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARS, "1"))
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def run_in_process(points: Sequence[Point], work: Callable[[Point], Record] = run_point) -> Iterator[Record]:
    """Every point in this process, in order."""
    for point in points:
        try:
            record = work(point)
        except BadInput as e:
            raise PointFailed(point, str(e)) from None
        yield record


def run_local(
    points: Sequence[Point], workers: int, work: Callable[[Point], Record] = run_point
) -> Iterator[Record]:
    """Every point in a pool of ``workers`` processes (started once), records as they finish.

    Stopping the iteration (an exception, Ctrl-C) cancels the points not started and
    terminates the workers.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    if not points:
        return
    workers = max(1, min(workers, len(points)))
    with single_threaded_blas_env():
        pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
        )
        try:
            of: dict[Future[Record], Point] = {pool.submit(work, p): p for p in points}
            pending = set(of)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        record = future.result()
                    except BadInput as e:
                        raise PointFailed(of[future], str(e)) from None
                    except BrokenProcessPool as e:
                        raise PointFailed(of[future], f"a worker process died ({e})") from None
                    yield record
        finally:
            _stop(pool)


def _stop(pool: Any) -> None:
    """Cancel what has not started and end the workers now (not after their current point)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    for process in processes:
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)


def _import_dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise BadInput(
            f"--scheduler needs Dask distributed, an optional extra: pip install '{DASK_EXTRA}'"
        ) from None
    return distributed


def connect(address: str) -> Any:
    """A Dask client of the scheduler at ``address``, or :class:`BadInput` (extra missing,
    scheduler unreachable)."""
    distributed = _import_dask()
    try:
        return distributed.Client(address, timeout=DASK_CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise BadInput(f"cannot reach the Dask scheduler at {address}: {e}") from None


def run_dask(
    points: Sequence[Point], address: str, work: Callable[[Point], Record] = run_point, client: Any = None
) -> Iterator[Record]:
    """Every point on the Dask scheduler at ``address`` (or through ``client``), records as they finish.

    Each point is one task (``pure=False``: never merged with an identical call), retried
    ``DASK_RETRIES`` times if it raises; a point whose worker dies is rescheduled by Dask.
    """
    distributed = _import_dask()
    if not points:
        return
    own = client is None
    client = connect(address) if own else client
    try:
        futures = [client.submit(work, p, pure=False, retries=DASK_RETRIES) for p in points]
        of = {f.key: p for f, p in zip(futures, points, strict=True)}
        try:
            for future in distributed.as_completed(futures, loop=client.loop):
                try:
                    record = future.result()
                except BadInput as e:
                    raise PointFailed(of[future.key], str(e)) from None
                except distributed.KilledWorker as e:
                    raise PointFailed(of[future.key], f"its Dask workers died too often ({e})") from None
                yield record
        finally:
            client.cancel(futures)
    finally:
        if own:
            client.close()


@contextlib.contextmanager
def running(
    points: Sequence[Point],
    workers: int,
    scheduler: str | None = None,
    work: Callable[[Point], Record] = run_point,
) -> Iterator[Iterator[Record]]:
    """The records of ``points`` as they finish: on Dask when ``scheduler`` is set, else in
    this process for one worker (or one point), else in a local pool of ``workers`` processes.

    What can fail before any point runs (the Dask extra, the connection) fails on entering,
    before the caller touches its output.
    """
    client = connect(scheduler) if scheduler and points else None
    try:
        if scheduler:
            results = run_dask(points, scheduler, work, client)
        elif workers <= 1 or len(points) <= 1:  # no pool to start for a single point
            results = run_in_process(points, work)
        else:
            results = run_local(points, workers, work)
        try:
            yield results
        finally:
            results.close()  # type: ignore[attr-defined]
    finally:
        if client is not None:
            client.close()
