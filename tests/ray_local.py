"""A local Ray cluster for tests: this machine only, loopback, started and stopped by the test.

``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray bind its processes to 127.0.0.1; Ray reads it
at import, so it is set here before the first ``import ray``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def require_ray():
    """Ray, or a skip that says how to get it (it is in the ``all`` extra, so ``make test`` has it)."""
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'sam2-plugins[ray]')")
    return ray


@contextlib.contextmanager
def local_cluster(num_cpus: int = 2) -> Iterator[str]:
    """Start ``ray.init(num_cpus=...)`` on loopback; yields the address other drivers (the CLIs
    under test, as subprocesses) connect to with ``--ray-address``."""
    ray = require_ray()
    if ray.is_initialized():
        ray.shutdown()
    ctx = ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, namespace="sam2_exec")
    try:
        addr = ctx.address_info["gcs_address"]
        assert addr.startswith("127.0.0.1:"), f"the test cluster must be loopback only, got {addr}"
        yield addr
    finally:
        ray.shutdown()


def subprocess_env(**extra: str) -> dict:
    """Environment for a CLI subprocess: this checkout first on the path, one torch thread (the
    Ray workers run one each, so results compare bit for bit), loopback Ray."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([repo] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(OMP_NUM_THREADS="1", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


PY = sys.executable
