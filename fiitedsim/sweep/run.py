"""Running a sweep: the points not stored yet computed on local processes or a Dask cluster, each stored as its
task finishes, then the summaries. Workers only compute (`run_points`, `run_train_points`); the client writes.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import is_write_error, refuse_inputs, write_error
from ..errors import InputError
from ..memory import check_report_address_space
from ..parquet import frame_bytes
from ..replay import replay_each
from ..traces.source import TraceSource
from .file import SweepFile
from .points import Point, PointSpec, TrainPointSpec, pass_key, plan_points, plan_tasks, with_generated
from .results import (
    POINTS_DIR,
    POINTS_FILE,
    REPORT_FILE,
    _stored,
    check_sweep_out,
    store_point,
    write_points_table,
    write_sweep_report,
)


def run_point(spec: PointSpec) -> tuple[dict, bytes]:
    """Compute one point (on a worker): its summary.json object and its time series as Parquet bytes."""
    return run_points([spec])[0]


def run_points(specs: list[PointSpec]) -> list[tuple[dict, bytes]]:
    """Compute points that share a trace pass (`pass_key`) in one pass: decoded once, replayed by each.

    Each result equals `run_point` of that spec alone (`replay_each`); a point is a single-policy,
    single-budget replay, so it is the same whether it ran alone or batched.
    """
    first = specs[0]
    if any(pass_key(s) != pass_key(first) for s in specs):
        raise ValueError("run_points: the points do not share a trace pass")
    source = TraceSource(first.trace, tables_file=first.tables_file, warn=lambda message: None)  # client warned
    source.set_tables(list(first.tables))
    results = replay_each(source, [s.run() for s in specs])
    return [(result.summary, frame_bytes(result.series[spec.policy])) for spec, result in zip(specs, results)]


#: The last data set this (worker) process loaded, with its `data_key`: consecutive training points on the same
#: data (the usual order of a grid) load it once. One at a time, so a worker holds at most one data set.
_LAST_DATA: tuple | None = None


def _dataset(spec: TrainPointSpec):
    global _LAST_DATA
    key = spec.data_key()
    if _LAST_DATA is None or _LAST_DATA[0] != key:
        _LAST_DATA = None  # free the previous data set before loading the next
        _LAST_DATA = (key, spec.load())
    return _LAST_DATA[1]


def run_train_point(spec: TrainPointSpec) -> tuple[dict, bytes]:
    """Compute one training point (on a worker): its train_summary.json object and its curve as Parquet bytes.

    The summary is exactly what `fiitedsim train --policy P --budget B` with the point's settings writes (one
    run, keyed P@B), so it carries the data's teacher AUC and the configuration the report shows.
    """
    from ..train.runner import run_all

    outputs = run_all(_dataset(spec), spec.data, [spec.policy], spec.budget_label, spec.train, spec.config,
                      drift=spec.drift)
    return outputs.summary, frame_bytes(outputs.curve)


def run_train_points(specs: list[TrainPointSpec]) -> list[tuple[dict, bytes]]:
    """`run_train_point` of each spec: the task function of a data sweep (whose tasks hold one point each)."""
    return [run_train_point(spec) for spec in specs]


# ---------------------------------------------------------------------------
# Scheduling


@contextlib.contextmanager
def quiet_distributed():
    """Dask logs every worker start, loss and shutdown race at INFO/WARNING: keep the terminal to our lines."""
    names = ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


#: `--scheduler`: tcp://HOST:PORT, HOST:PORT or HOST (port 8786); HOST a name, an IPv4 or a bracketed IPv6 address.
_SCHEDULER_ADDRESS = re.compile(r"(?:tcp://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::([0-9]{1,5}))?/?")
#: Dask's default scheduler port.
DEFAULT_SCHEDULER_PORT = 8786
#: The handshake a Dask scheduler sends on connecting is a few hundred bytes; anything claiming more is not one.
_MAX_HANDSHAKE = 1 << 20


def scheduler_address(text: str) -> tuple[str, int, str]:
    """(host, port, tcp://host:port) of a `--scheduler` value, or an InputError saying what an address looks like."""
    raw = text.strip()
    scheme, sep, _ = raw.partition("://")
    if sep and scheme != "tcp":
        raise InputError(f"--scheduler {text!r}: only tcp:// scheduler addresses are supported (e.g. "
                         f"tcp://10.0.0.5:{DEFAULT_SCHEDULER_PORT}); {scheme}:// needs settings fiitedsim cannot pass")
    match = _SCHEDULER_ADDRESS.fullmatch(raw)
    port = int(match.group(2)) if match and match.group(2) else DEFAULT_SCHEDULER_PORT
    if not match or not 0 < port < 65536:
        raise InputError(f"--scheduler {text!r} is not a scheduler address; give tcp://HOST:PORT, e.g. "
                         f"tcp://10.0.0.5:{DEFAULT_SCHEDULER_PORT}")
    host = match.group(1)
    return host.strip("[]"), port, f"tcp://{host}:{port}"


def probe_scheduler(host: str, port: int, address: str, timeout: float) -> None:
    """Check, within `timeout` seconds, that a Dask scheduler listens at host:port, before Dask is asked to connect.

    A scheduler sends its handshake as soon as a connection is accepted: an 8-byte little-endian length, then
    that many bytes of msgpack naming its pickle protocol. Dask's own client waits for that handshake without a
    time limit, and reads a foreign server's first bytes as a length to allocate (a web server's "HTTP/1.1"
    asked for 3 EiB), so a port that is open but is no scheduler would hang or crash it. A refused connection
    is retried until the time is up, as Dask does (a scheduler may still be starting).
    """
    import socket
    import struct
    import time

    deadline = time.monotonic() + timeout
    unreachable = (f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({{}}); check the address, or "
                   "leave out --scheduler to run on local processes")
    not_dask = (f"{address} answered, but not as a Dask scheduler ({{}}); give the scheduler's own port (the "
                f"dashboard or a web server is not it; the default is {DEFAULT_SCHEDULER_PORT})")
    delay = 0.05
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=max(0.01, deadline - time.monotonic()))
            break
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            if isinstance(exc, socket.gaierror) or time.monotonic() + delay >= deadline:
                raise InputError(unreachable.format(reason)) from None
            time.sleep(delay)
            delay = min(2 * delay, 1.0)

    def receive(n: int) -> bytes:
        data = b""
        while len(data) < n:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                more = sock.recv(n - len(data))
            except TimeoutError:
                raise InputError(not_dask.format(f"it accepted the connection but sent no Dask handshake within "
                                                 f"{timeout:g} s")) from None
            except OSError as exc:
                raise InputError(unreachable.format(exc.strerror or exc)) from None
            if not more:
                raise InputError(not_dask.format("it closed the connection without a Dask handshake"))
            data += more
        return data

    with sock:
        head = receive(8)
        (size,) = struct.unpack("<Q", head)
        if not 0 < size <= _MAX_HANDSHAKE:
            shown = head.decode("ascii", "replace")
            raise InputError(not_dask.format(f"its first bytes are {shown!r}" if shown.isprintable()
                                             else "its first bytes are no Dask message"))
        if b"pickle-protocol" not in receive(size):
            raise InputError(not_dask.format("its first message is no Dask handshake"))


def max_local_workers() -> int:
    """The most local worker processes `--workers` may ask for: 4 per CPU core (2**64 tried to start that many)."""
    return 4 * (os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None, connect_timeout: float):
    """A Client of `scheduler`, or of a LocalCluster of `workers` single-threaded processes on 127.0.0.1."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        host, port, scheduler = scheduler_address(scheduler)
        probe_scheduler(host, port, scheduler, connect_timeout)
        try:
            client = Client(scheduler, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} within {connect_timeout:g} s "
                             f"({' '.join(str(exc).split())}); check the address, or leave out --scheduler "
                             "to run on local processes") from None
        with client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    # no dashboard is installed (bokeh is not a dependency); the scheduler's small HTTP server (health checks)
    # takes any free loopback port instead of 8787, which another cluster may hold
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


@dataclass
class SweepOutcome:
    points: list[Point]
    computed: int   # points computed by this run
    reused: int     # points found stored


def sweep_inputs(sweep: SweepFile) -> list[tuple[str, Path]]:
    """The files a sweep reads (its file, the traces' parts, the data files, the tables file), for
    `refuse_inputs`; a missing one is left to the planning, which says what is wrong with it."""
    from ..traces.source import trace_parts
    from ..train.runner import data_files

    found: list[tuple[str, Path]] = [("the sweep file", sweep.path), ("the tables file", sweep.tables_file)]
    for name, paths in (("the trace", lambda: [p for t in sweep.trace_paths for p in trace_parts(t)]),
                        ("the data", lambda: [p for d in sweep.data_specs for p in data_files(d)])):
        try:
            found += [(name, p) for p in paths()]
        except InputError:
            pass
    return found


def run_sweep(sweep: SweepFile, out: str | Path, *, scheduler: str | None = None, workers: int | None = None,
              connect_timeout: float = 10.0, force: bool = False, points_per_task: int = 4,
              warn: Callable[[str], None] = lambda m: None,
              progress: Callable[[int, int], None] | None = None) -> SweepOutcome:
    """Compute the points not stored yet (all with `force`), store each as its task finishes, then the summaries.

    Points sharing a trace pass are batched into tasks of at most `points_per_task` (`plan_tasks`);
    training points are one per task (`points_per_task` does not apply to them).
    `progress(done, total)` is called once before the first task and after each one.
    """
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if workers is not None and workers > max_local_workers():
        raise InputError(f"--workers must be at most {max_local_workers()} (4 per CPU core: more processes only "
                         f"compete for the cores), got {workers}")
    if scheduler is not None and workers is not None:
        raise InputError("--workers sizes the local cluster; with --scheduler the cluster has its own workers")
    if points_per_task < 1:
        raise InputError(f"--points-per-task must be at least 1, got {points_per_task}")
    check_report_address_space()  # the sweep ends with its report
    if not connect_timeout > 0:
        raise InputError(f"--connect-timeout must be positive, got {connect_timeout:g}")
    if scheduler is not None:
        scheduler_address(scheduler)  # the syntax, before any planning
    out = check_sweep_out(out)
    refuse_inputs([("the sweep's", out / POINTS_FILE), ("the sweep's", out / REPORT_FILE)], sweep_inputs(sweep))
    sweep = with_generated(sweep, out)
    points = plan_points(sweep, warn)
    pending = points if force else [p for p in points if _stored(out, p.key) is None]
    total = len(points)
    done = total - len(pending)
    if progress:
        progress(done, total)
    failures: list[tuple[Point, BaseException]] = []
    if sweep.data and scheduler is None and workers is None:
        workers = 1  # a training run already uses every core (train/threads.py); more workers would compete
    if pending:
        with quiet_distributed(), dask_client(scheduler, workers, connect_timeout) as client:
            from distributed import as_completed

            try:
                (out / POINTS_DIR).mkdir(parents=True, exist_ok=True)  # only once a cluster answered
            except OSError as exc:
                if is_write_error(exc):
                    raise write_error(out / POINTS_DIR, exc) from None
                raise

            if sweep.data:  # one training point per task, points on the same data set next to each other
                order: dict[tuple, int] = {}
                for p in pending:
                    order.setdefault(p.spec.data_key(), len(order))
                tasks, work = [[p] for p in sorted(pending, key=lambda p: order[p.spec.data_key()])], run_train_points
            else:
                n_workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
                tasks, work = plan_tasks(pending, n_workers, points_per_task), run_points
            by_key = {"fiitedsim-points-" + hashlib.sha256("".join(p.key for p in task).encode()).hexdigest(): task
                      for task in tasks}
            futures = [client.submit(work, [p.spec for p in task], key=k, pure=False)
                       for k, task in by_key.items()]
            for future in as_completed(futures, loop=client.loop):
                task = by_key[future.key]
                if future.status == "finished":
                    for point, (summary, series) in zip(task, future.result()):
                        store_point(out, point, summary, series)
                        done += 1
                    if progress:
                        progress(done, total)
                elif future.status == "error":
                    failures += [(point, future.exception()) for point in task]
                else:  # cancelled: the scheduler went away or dropped the task
                    failures += [(point, InputError(f"its task was {future.status} by the cluster")) for point in task]
                future.release()
    if failures:
        point, exc = failures[0]
        if not isinstance(exc, InputError) and type(exc).__name__ != "KilledWorker":
            raise exc
        raise InputError(f"{len(failures)} of {total} points failed, e.g. {_describe(point)}: "
                         f"{' '.join(str(exc).split())}; the {done} finished points are stored in {out}: "
                         "fix the input and run the sweep again to compute only the rest")
    write_points_table(out, points)
    write_sweep_report(out, points)
    return SweepOutcome(points, len(pending), total - len(pending))


def _describe(point: Point) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.axes.items())
