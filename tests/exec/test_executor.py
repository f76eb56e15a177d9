"""The execution layer: in-process and on a local Ray cluster (retries, bad items, start-up errors)."""

from __future__ import annotations

import threading

import pytest

from sam2_exec import InProcessExecutor, WorkerSpec, make_executor, worker_stats
from tests.exec import _workers
from tests.ray_local import local_cluster, require_ray


def test_in_process_runs_in_order_builds_once_and_records_bad_items() -> None:
    _workers.BUILT.clear()
    ex = make_executor(None)
    assert isinstance(ex, InProcessExecutor)
    res = list(ex.map(WorkerSpec(_workers.SleepWorker, (0.0,)), ["a", "bad", "c"], keys=["x", "y", "z"]))
    assert [r.key for r in res] == ["x", "y", "z"] and [r.index for r in res] == [0, 1, 2]
    assert [r.value[0] for r in res if r.ok] == ["a", "c"]
    assert res[1].error == "ValueError: bad item 'bad'" and isinstance(res[1].exception, ValueError)
    assert len(_workers.BUILT) == 1  # one worker, built once, reused for every item
    stats = worker_stats(res)
    assert stats["local-0"]["items"] == 3 and stats["local-0"]["failed"] == 1 and stats["local-0"]["units"] == 4.0
    assert ex.describe()["worker_info"][0]["kind"] == "sleep"


def test_executor_choices_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown executor 'spark'"):
        make_executor("spark")
    with pytest.raises(ValueError, match="exactly one worker"):
        make_executor("inprocess", workers=2)
    with pytest.raises(ValueError, match=r"\['address'\] need executor='ray'"):
        make_executor("inprocess", address="auto")
    with pytest.raises(ValueError, match="one key per item"):
        list(InProcessExecutor().map(WorkerSpec(_workers.SleepWorker), [1, 2], keys=["a"]))


@pytest.fixture(scope="module")
def cluster():
    require_ray()
    with local_cluster(2) as addr:
        yield addr


def test_ray_worker_killed_mid_item_every_item_once(cluster) -> None:
    import ray

    from sam2_exec import RayExecutor

    items = [f"i{k}" for k in range(10)] + ["bad"]
    ex = RayExecutor(workers=2, name="killtest")
    out = []
    killed = []

    def kill() -> None:
        ray.kill(ray.get_actor("killtest-worker-0", namespace="sam2_exec"), no_restart=False)
        killed.append(True)

    timer = None
    for res in ex.map(WorkerSpec(_workers.SleepWorker, (0.6,)), items):
        out.append(res)
        if timer is None:  # both workers are busy again 0.3 s after a result: kill one mid-item
            timer = threading.Timer(0.3, kill)
            timer.start()
    timer.join()
    assert killed
    assert sorted(r.index for r in out) == list(range(len(items)))  # every item exactly once
    assert ex.retried, "the killed worker's item was not retried"
    retried = [r for r in out if r.attempts > 1]
    assert retried and all(r.ok for r in retried)
    bad = [r for r in out if not r.ok]
    assert len(bad) == 1 and bad[0].key == "10" and bad[0].error.startswith("ValueError: bad item")
    assert {r.value[1] for r in out if r.ok} and {r.worker for r in out} == {"ray-0", "ray-1"}
    info = ex.describe()
    assert info["workers"] == 2 and info["startup_seconds"] > 0


def test_ray_workers_that_cannot_start_raise_a_clear_error(cluster) -> None:
    from sam2_exec import RayExecutor

    ex = RayExecutor(workers=1, max_restarts=0)
    with pytest.raises(RuntimeError, match="could not start.*cannot load the model"):
        list(ex.map(WorkerSpec(_workers.BrokenWorker), [1]))


def test_ray_executor_checks_its_options(cluster) -> None:
    from sam2_exec import RayExecutor

    with pytest.raises(ValueError, match="workers >= 1"):
        RayExecutor(workers=0)
    with pytest.raises(ValueError, match="num_gpus_per_worker"):
        RayExecutor(num_gpus_per_worker=-1)
    with pytest.raises(ValueError, match="but the cluster has 0"):
        list(RayExecutor(num_gpus_per_worker=1).map(WorkerSpec(_workers.SleepWorker), [1]))
