"""The engines: every task's result comes back once, a worker that dies is reported as that
task's loss, and asking for Ray without it installed is a one-line usage error."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from ray_helpers import ray_cluster  # noqa: F401 - the session fixture

from exitreplay.engines import Died, LocalEngine, RayEngine, make_engine
from exitreplay.errors import UsageError


def square_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def die_on(x: int, bad: int) -> int:
    if x == bad:
        os._exit(9)  # the worker process vanishes, as an out-of-memory kill would make it
    return x


def _collect(engine, fn, tasks) -> dict[int, object]:
    out: dict[int, object] = {}
    for i, res in engine.map_unordered(fn, tasks):
        assert i not in out
        out[i] = res
    return out


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_engine_runs_every_task(jobs):
    got = _collect(LocalEngine(jobs), square_pid, [(i,) for i in range(7)])
    assert {i: v for i, (v, _) in got.items()} == {i: i * i for i in range(7)}
    pids = {pid for _, pid in got.values()}
    # One job runs here; two run in other processes.
    assert (pids == {os.getpid()}) if jobs == 1 else (os.getpid() not in pids)


@pytest.mark.usefixtures("ray_cluster")
def test_ray_engine_runs_every_task():
    with RayEngine() as eng:
        assert eng.workers == 2
        got = _collect(eng, square_pid, [(i,) for i in range(7)])
    assert {i: v for i, (v, _) in got.items()} == {i: i * i for i in range(7)}
    assert os.getpid() not in {pid for _, pid in got.values()}
    assert sys.modules["ray"].is_initialized()  # the session's instance is left running


def test_a_dead_local_worker_is_that_tasks_loss():
    got = _collect(LocalEngine(2), die_on, [(i, 3) for i in range(4)])
    assert isinstance(got[3], Died)
    assert len(got) == 4


@pytest.mark.usefixtures("ray_cluster")
def test_a_dead_ray_worker_is_that_tasks_loss():
    with RayEngine() as eng:
        got = _collect(eng, die_on, [(i, 2) for i in range(4)])
    assert isinstance(got[2], Died) and "died" in got[2].why
    assert {i: got[i] for i in (0, 1, 3)} == {0: 0, 1: 1, 3: 3}


def test_engine_usage_errors():
    with pytest.raises(UsageError, match="unknown --engine 'spark'"):
        make_engine("spark")
    with pytest.raises(UsageError, match="--address goes with --engine ray"):
        make_engine("local", address="10.0.0.1:6379")
    with pytest.raises(UsageError, match="--jobs"):
        make_engine("local", jobs=0)


HIDE_RAY = "import sys; sys.modules['ray'] = None; from exitreplay.cli import main; sys.argv[0] = 'exitreplay'; main()"


@pytest.mark.parametrize("command", ["compare", "analyze"])
def test_engine_ray_without_ray_is_one_line_exit_2(command, tmp_path):
    trace = "sample_traces/svm-idle.v7.dat"
    p = subprocess.run([sys.executable, "-c", HIDE_RAY, command, trace, "--engine", "ray"],
                       capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                       env={**os.environ, "EXITREPLAY_CACHE": str(tmp_path)})
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "exitreplay: error: --engine ray needs Ray, which is not installed: pip install 'exitreplay[ray]'"]
    assert p.stdout == ""
