"""One local Ray instance (2 CPUs, as CI has) for the whole test session, or a skip."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray not installed (pip install 'exitreplay[ray]')")
    owned = not ray.is_initialized()
    if owned:
        # Workers import task functions by module name: the test modules' too (the project's own
        # come from the installed package, or PYTHONPATH, which the workers inherit).
        path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join([TESTS, *(os.path.abspath(p) for p in path)])
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    if owned and ray.is_initialized():
        ray.shutdown()
