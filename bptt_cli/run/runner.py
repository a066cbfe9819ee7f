"""Running the grid points of a sweep: in-process, in local worker processes, or on Dask.

A point is sent as its settings (a small dict of ``analyze`` option values), never as arrays;
the worker draws the network itself, from seeds that depend on the settings alone
(``SeedSequence(seed).spawn(trials)``, as ``bptt analyze``), so a record is the same whichever
process computes it and whatever else is in the grid.

Local workers are started once per sweep with ``spawn`` and single-threaded BLAS
(``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` = 1 in their environment
before numpy loads there), so N workers use N cores without oversubscription. Results come
back as points finish, in completion order.

A point that cannot be computed for a reason of its own (its settings are bad input found only
while it runs, e.g. a nilpotent ``W_hh`` asked for a spectral radius; or it ran out of memory)
comes back as a :class:`Failure` beside the records, and the other points go on. Such a failure
is an ordinary return value of the task, so Dask never retries it (its ``retries`` are for
errors that another attempt might not meet). A local worker process that dies breaks the pool
and stops the sweep (:class:`PointFailed`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from typing import Any

from bptt_cli.errors import BadInput, one_line

Point = dict[str, Any]
Record = dict[str, Any]
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
DASK_EXTRA = "bptt-cli[dask]"
DASK_RETRIES = 2
DASK_CONNECT_TIMEOUT_S = 5.0
NO_WORKERS_WARNING_S = 5.0  # a scheduler without workers this long after the points went: say so
ORPHAN_POLL_S = 0.5
IN_FLIGHT = 4  # points handed out per worker at a time (taken from an iterator, a window at a time)


class PointFailed(BadInput):
    """The sweep cannot go on (a local worker process died): the ``point`` it was running, and why."""

    def __init__(self, point: Point, reason: str) -> None:
        super().__init__(reason)
        self.point = point


@dataclass(frozen=True)
class Failure:
    """A grid point that could not be computed: ``point`` and why (one line). Nothing is
    recorded for it; the other points go on."""

    point: Point
    reason: str


Outcome = Record | Failure


def attempt(work: Callable[[Point], Record], point: Point) -> Outcome:
    """``work(point)``, or the :class:`Failure` of a point that is bad input or too big to compute."""
    try:
        return work(point)
    except BadInput as e:
        return Failure(point, str(e))
    except MemoryError:
        return Failure(point, "out of memory (MemoryError): give it a smaller T, --hidden or --trials")


def run_point(point: Point) -> Record:
    """The record of one grid point: its settings, resolved config, summary and wall time.

    ``config`` and ``summary`` are those of ``bptt analyze --format json`` for the point's
    settings (:func:`records.analysis_record` of :meth:`Experiment.run`), without ``fail_on``;
    ``wall_time_s`` is the time spent here (drawing, BPTT, spectra, theory, summary), seconds.
    """
    start = time.perf_counter()
    from bptt_cli.io.jsontext import jsonable
    from bptt_cli.io.records import analysis_record
    from bptt_cli.run.experiment import resolve

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


def _worker_init(parent: int | None = None) -> None:
    """In each local worker: single-threaded BLAS (if numpy is not loaded yet), Ctrl-C left to
    the parent, and an exit within a second if the parent (``parent``, the sweep's pid) dies
    (``kill -9``) instead of idling, even if it died before this worker had started."""
    import signal
    import threading

    for var in BLAS_THREAD_VARS:
        os.environ[var] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid() if parent is None else parent
    if os.getppid() != parent:  # orphaned while it started
        os._exit(1)

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


def run_in_process(points: Iterable[Point], work: Callable[[Point], Record] = run_point) -> Iterator[Outcome]:
    """Every point in this process, in order (taken from ``points`` one at a time): its record or
    its :class:`Failure`."""
    for point in points:
        yield attempt(work, point)


def run_local(
    points: Iterable[Point], workers: int, work: Callable[[Point], Record] = run_point
) -> Iterator[Outcome]:
    """Every point in a pool of ``workers`` processes (started once), outcomes as they finish.

    Points are taken from ``points`` as workers free up (at most ``IN_FLIGHT`` per worker handed
    out at a time, in the order given), so an iterator of a million points never exists as one
    list. Stopping the iteration (an exception, Ctrl-C) cancels the points not started and
    terminates the workers. A worker process that dies is :class:`PointFailed` (the pool is broken).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    source = iter(points)
    first = list(itertools.islice(source, 1))
    if not first:
        return
    if isinstance(points, Sized):
        workers = min(workers, len(points))
    workers = max(1, workers)
    source = itertools.chain(first, source)
    with single_threaded_blas_env():
        pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
            initargs=(os.getpid(),),
        )
        try:
            of: dict[Future[Outcome], Point] = {}

            def hand_out(k: int) -> None:
                for p in itertools.islice(source, k):
                    of[pool.submit(attempt, work, p)] = p

            hand_out(IN_FLIGHT * workers)
            pending = set(of)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        outcome = future.result()
                    except BrokenProcessPool as e:
                        raise PointFailed(of[future], f"a worker process died ({e})") from None
                    del of[future]
                    yield outcome
                hand_out(IN_FLIGHT * workers - len(pending))
                pending = set(of)
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


def _probe(address: str) -> None:
    """:class:`BadInput` at once for an address Dask cannot parse, or a TCP scheduler that does
    not answer within ``DASK_CONNECT_TIMEOUT_S`` (a Client that fails to connect leaves a
    half-built object whose clean-up blocks for 20 s and prints a traceback)."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    where = f"cannot reach the Dask scheduler at {address}"
    try:
        scheme, location = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as e:
        raise BadInput(f"{where}: {e} (give e.g. tcp://HOST:8786)") from None
    try:
        socket.create_connection((host, port), timeout=DASK_CONNECT_TIMEOUT_S).close()
    except TimeoutError:
        raise BadInput(f"{where}: no answer within {DASK_CONNECT_TIMEOUT_S:g} s") from None
    except OSError as e:
        raise BadInput(f"{where}: {e.strerror or e}") from None


def connect(address: str) -> Any:
    """A Dask client of the scheduler at ``address``, or :class:`BadInput` (extra missing,
    address malformed, scheduler unreachable or not answering as one within
    ``DASK_CONNECT_TIMEOUT_S``)."""
    distributed = _import_dask()
    _probe(address)

    class Client(distributed.Client):  # type: ignore[misc, name-defined]
        def start(self, **kwargs: Any) -> None:
            try:  # a server that accepts and stays silent: Dask's handshake alone would wait forever
                super().start(callback_timeout=DASK_CONNECT_TIMEOUT_S, **kwargs)
            except BaseException:
                # nothing to close: without this the half-built client's __del__ waits 20 s
                # for a scheduler that never answered, then prints a traceback
                self.status = "closed"
                self._loop_runner.stop()
                raise

    try:
        return Client(address, timeout=DASK_CONNECT_TIMEOUT_S, set_as_default=False)
    except TimeoutError:
        raise BadInput(
            f"cannot reach the Dask scheduler at {address}: no answer within {DASK_CONNECT_TIMEOUT_S:g} s"
        ) from None
    except (ValueError, MemoryError) as e:  # the bytes of a server that is not Dask's
        raise BadInput(f"cannot reach the Dask scheduler at {address}: not a Dask scheduler ({e})") from None
    except OSError as e:
        raise BadInput(f"cannot reach the Dask scheduler at {address}: {e.strerror or e}") from None


def _warn(message: str) -> None:
    print(f"bptt: warning: {one_line(message)}", file=sys.stderr, flush=True)


def _wait_for_a_worker(client: Any, address: str, warn: Callable[[str], None]) -> None:
    """Return once the scheduler has a worker; if it has none for ``NO_WORKERS_WARNING_S``, say
    so once (``warn``) and keep waiting: workers may join a cluster at any time."""
    try:
        client.wait_for_workers(1, timeout=NO_WORKERS_WARNING_S)
    except TimeoutError:
        warn(
            f"the Dask scheduler at {address} has had no workers for {NO_WORKERS_WARNING_S:g} s; "
            f"waiting for one (start one with: dask worker {address})"
        )


def run_dask(
    points: Iterable[Point],
    address: str,
    work: Callable[[Point], Record] = run_point,
    client: Any = None,
    warn: Callable[[str], None] = _warn,
    window: int = 4096,
) -> Iterator[Outcome]:
    """Every point on the Dask scheduler at ``address`` (or through ``client``), outcomes as they finish.

    Each point is one task (``pure=False``: never merged with an identical call); at most
    ``window`` tasks are on the scheduler at a time, more taken from ``points`` as they finish.
    A point that is bad input returns its :class:`Failure` (never retried); a task that raises
    otherwise is retried ``DASK_RETRIES`` times; a point whose worker dies is rescheduled by Dask,
    and one whose workers die too often is a :class:`Failure`. With no worker on the scheduler
    ``warn`` says so once, and the points wait for one.
    """
    distributed = _import_dask()
    source = iter(points)
    first = list(itertools.islice(source, 1))
    if not first:
        return
    source = itertools.chain(first, source)
    own = client is None
    client = connect(address) if own else client
    try:
        of: dict[Any, Point] = {}
        live: dict[Any, Any] = {}

        def hand_out(k: int) -> list[Any]:
            futures = []
            for p in itertools.islice(source, k):
                f = client.submit(attempt, work, p, pure=False, retries=DASK_RETRIES)
                of[f.key], live[f.key] = p, f
                futures.append(f)
            return futures

        try:
            queue = distributed.as_completed(hand_out(window), loop=client.loop)
            _wait_for_a_worker(client, address, warn)
            for future in queue:
                try:
                    outcome = future.result()
                except distributed.KilledWorker as e:
                    outcome = Failure(of[future.key], f"its Dask workers died too often ({e})")
                del live[future.key], of[future.key]
                yield outcome
                for f in hand_out(1):
                    queue.add(f)
        finally:
            client.cancel(list(live.values()))
    finally:
        if own:
            client.close()


@contextlib.contextmanager
def running(
    points: Iterable[Point],
    workers: int,
    scheduler: str | None = None,
    work: Callable[[Point], Record] = run_point,
) -> Iterator[Iterator[Outcome]]:
    """The outcomes of ``points`` (records, or :class:`Failure`) as they finish: on Dask when
    ``scheduler`` is set, else in this process for one worker (or a list of one point), else in a
    local pool of ``workers`` processes. ``points`` may be an iterator: they are taken from it as
    they are handed out.

    What can fail before any point runs (the Dask extra, the connection) fails on entering,
    before the caller touches its output.
    """
    few = isinstance(points, Sized) and len(points) <= 1
    client = connect(scheduler) if scheduler and not (isinstance(points, Sized) and not points) else None
    try:
        if scheduler:
            results = run_dask(points, scheduler, work, client)
        elif workers <= 1 or few:  # no pool to start for a single point
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
