"""Where independent tasks run: a local process pool (the default) or a Ray cluster.

An engine maps a module-level function over argument tuples and yields `(index, result)` as
tasks finish, in any order. A task whose worker died (killed, out of memory) yields a `Died`
instead of a result, so one lost trace does not stop a batch. Tasks should take and return plain
data (paths, numbers, bytes of Arrow IPC): that is what crosses between processes or machines.

Ray is an optional extra (`pip install 'exitreplay[ray]'`). `--engine ray` starts a local Ray
instance, or joins an existing cluster with `--address` (whose workers must see the trace files
at the same paths and have exitreplay installed).
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .errors import UsageError

ENGINES = ("local", "ray")
RAY_MISSING = "--engine ray needs Ray, which is not installed: pip install 'exitreplay[ray]'"


@dataclasses.dataclass
class Died:
    """A task whose worker process ended before it returned."""

    why: str


class Engine:
    """Run `fn(*args)` for every args tuple; subclasses say where."""

    name = "engine"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    @property
    def workers(self) -> int:
        raise NotImplementedError

    def map_unordered(self, fn: Callable, tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def share(self, value: Any) -> Any:
        """`value` as an argument many tasks take (Ray stores it once; processes get copies)."""
        return value


class LocalEngine(Engine):
    """Processes on this machine (`jobs`, default the CPU count); one task, or one job, runs in
    this process."""

    name = "local"

    def __init__(self, jobs: int | None = None):
        if jobs is not None and jobs < 1:
            raise UsageError("--jobs must be at least 1")
        self.jobs = jobs

    @property
    def workers(self) -> int:
        return self.jobs or os.cpu_count() or 1

    def map_unordered(self, fn: Callable, tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        workers = max(1, min(self.workers, len(tasks)))
        if workers == 1:
            for i, args in enumerate(tasks):
                yield i, fn(*args)
            return
        # spawn, not fork: forking a process whose Polars/Arrow thread pools are running can leave a
        # child waiting forever on a lock held by a thread that was not copied.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futs = {pool.submit(fn, *args): i for i, args in enumerate(tasks)}
            try:
                for f in as_completed(futs):
                    try:
                        res = f.result()
                    except BrokenProcessPool:
                        res = Died("the worker running it died (out of memory?)")
                    yield futs[f], res
            finally:  # interrupted: do not start what is still queued
                for f in futs:
                    f.cancel()


def require_ray():
    """The ray module, or a one-line usage error saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise UsageError(RAY_MISSING) from None


class RayEngine(Engine):
    """Ray tasks: on the cluster at `address`, else on a local instance of `jobs` CPUs (default
    all). A Ray already initialised in this process (a test session's) is used as it is."""

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None):
        if jobs is not None and jobs < 1:
            raise UsageError("--jobs must be at least 1")
        ray = self.ray = require_ray()
        self.owned = not ray.is_initialized()
        if self.owned:
            kw: dict[str, Any] = {"address": address} if address else {"num_cpus": jobs}
            try:
                ray.init(**kw, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                         configure_logging=True)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise UsageError(f"--engine ray: cannot start or reach {where}: {exc}") from None
        self._remote: dict[Callable, Any] = {}

    @property
    def workers(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def share(self, value: Any) -> Any:
        return self.ray.put(value)  # a reference: Ray hands each task the stored value

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
            self.owned = False

    def map_unordered(self, fn: Callable, tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        remote = self._remote.get(fn)
        if remote is None:
            # A task that dies is reported, not retried: a trace that kills its worker would again.
            remote = self._remote[fn] = ray.remote(max_retries=0)(fn)
        refs = {remote.remote(*args): i for i, args in enumerate(tasks)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                if pending:  # and whatever else has finished meanwhile, in the same pass
                    more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                    done += more
                for ref in done:
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayTaskError:
                        raise  # a bug in the task itself: as the local engine would
                    except ray.exceptions.RayError as exc:
                        res = Died(f"the Ray worker running it died ({type(exc).__name__})")
                    yield refs[ref], res
        finally:
            for ref in pending:
                ray.cancel(ref)


def check_engine(name: str, address: str | None = None) -> None:
    """Usage errors of `--engine NAME [--address A]`, before any work starts."""
    if name not in ENGINES:
        raise UsageError(f"unknown --engine {name!r} (choose from {', '.join(ENGINES)})")
    if name == "local" and address:
        raise UsageError("--address goes with --engine ray")
    if name == "ray":
        require_ray()


def make_engine(name: str = "local", jobs: int | None = None, address: str | None = None) -> Engine:
    """The engine `--engine NAME` asks for (`--address` goes with ray only)."""
    check_engine(name, address)
    return LocalEngine(jobs) if name == "local" else RayEngine(address, jobs)
