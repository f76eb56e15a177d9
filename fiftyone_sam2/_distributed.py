"""Labeling a view on several workers (``executor="ray", workers=N``).

The view is split into shards; each shard is run by a worker through the same resumable run
as in one process (:mod:`fiftyone_sam2._resume`): the worker calls ``auto_label`` /
``segment`` / ``track`` on its shard, writing each sample's result and status itself. All
workers share the driver's database: the driver passes its MongoDB URI (``database_uri``, or
the address of the database FiftyOne started) and database name to the workers, as FiftyOne
documents for several processes. For a cluster of several machines, ``fo.config.database_uri``
must name a MongoDB every machine reaches (see ``docs/ray.md``).

Shards: shard ``k`` of ``n`` is the ``k``-th of ``n`` interleaved slices of the units sorted by
their first sample id, the same split as :func:`fiftyone_sam2.shard` (which the operators'
``shard_index`` / ``shard_count`` and FiftyOne's distributed tasks use). A unit is a sample,
or for image sequences (``track`` on images) a whole sequence, which never straddles shards.

Faults: a worker that dies mid-shard leaves its finished samples ``done`` (each is saved with
its status in one write); the shard is retried on another worker, which resumes it and labels
only what is missing, so every sample ends labeled exactly once. A sample that fails (corrupt
image) is marked ``failed: ...`` as in one process. Ctrl-C stops the workers; what was saved
stays and a rerun resumes.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

__all__ = ["wants_workers", "run_sharded", "database_env", "ShardWorker", "shard_units"]

#: The labeling functions a shard can run (names in :mod:`fiftyone_sam2.api`).
SHARDABLE = ("auto_label", "segment", "track")
_COUNT_KEYS = ("processed", "failed", "skipped")


def wants_workers(executor: Any, workers: Optional[int]) -> bool:
    """Whether a call asks for the sharded run (a Ray executor or an executor object).

    Raises:
        ValueError: ``workers`` > 1 without an executor that can run them.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"expected workers to be an integer >= 1, received {workers!r}")
    if executor is None or (isinstance(executor, str) and executor.lower() in ("inprocess", "in-process", "local")):
        if workers not in (None, 1):
            raise ValueError(f"workers={workers} needs executor='ray' (the in-process run has one worker)")
        return False
    return True


def database_env() -> Dict[str, str]:
    """Environment that points a worker's FiftyOne at this process's database."""
    import fiftyone as fo
    import fiftyone.core.odm as foo

    uri = fo.config.database_uri
    if not uri:
        host, port = foo.get_db_client().address  # the database FiftyOne started for this process
        uri = f"mongodb://{host}:{port}"
    env = {k: v for k, v in os.environ.items() if k.startswith("FIFTYONE_")}
    env.update(FIFTYONE_DATABASE_URI=uri, FIFTYONE_DATABASE_NAME=str(fo.config.database_name))
    return env


def shard_units(units: Sequence[Sequence[str]], index: int, count: int) -> List[str]:
    """The sample ids of shard ``index`` of ``count`` (units sorted by their first id,
    interleaved; with one sample per unit this is :func:`fiftyone_sam2.shard`'s split)."""
    ordered = sorted(units, key=lambda u: min(u))
    return [i for u in ordered[index::count] for i in u]


class ShardWorker:
    """A worker process's side: FiftyOne on the driver's database, one shard per call.

    Args:
        env: the driver's :func:`database_env`, set before FiftyOne is imported here.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        os.environ.update({str(k): str(v) for k, v in env.items()})
        import fiftyone as fo

        self.database = fo.config.database_uri

    def info(self) -> Dict[str, Any]:
        return {"database_uri": self.database}

    def units(self, item: Any, value: Mapping[str, Any]) -> float:
        return float(value.get("processed", 0) + value.get("failed", 0))

    def __call__(self, item: Mapping[str, Any]) -> Dict[str, Any]:
        from fiftyone.server.view import get_view

        from . import api

        view = get_view(item["dataset"], stages=item["stages"] or None).select(item["ids"], ordered=True)
        return getattr(api, item["fn"])(view, **item["kwargs"])


def _dataset_name(view: Any) -> str:
    import fiftyone as fo

    return view.name if isinstance(view, fo.Dataset) else view.dataset_name


def _stages(view: Any) -> List[Any]:
    """The view's stages as FiftyOne serialises them for the App (empty for a dataset)."""
    import fiftyone as fo

    return list(view._serialize()) if isinstance(view, fo.DatasetView) else []


def run_sharded(fn: str, view: Any, kwargs: Mapping[str, Any], executor: Any, workers: Optional[int],
                progress: Optional[Callable[[float, str], None]] = None,
                units: Optional[Sequence[Sequence[str]]] = None, shards: Optional[int] = None) -> Dict[str, Any]:
    """Run ``api.<fn>(shard, **kwargs)`` for every shard of ``view`` on the executor's workers.

    Args:
        fn: one of :data:`SHARDABLE`.
        view: the collection (its stages are rebuilt in each worker).
        kwargs: the function's arguments, without ``progress`` / ``executor`` / ``workers``.
        executor, workers: see :func:`sam2_exec.make_executor` (``"ray"`` or an executor).
        progress: ``fn(fraction, text)`` as shards finish.
        units: groups of sample ids that must stay together (default: one per sample).
        shards: number of shards (default: 4 per worker, at most one per unit).

    Returns:
        The summed run summary (``processed`` / ``failed`` / ``skipped``, first ``errors``) plus
        ``executor``, ``workers``, ``shards``, ``per_worker`` and ``failed_shards``.

    Raises:
        ValueError / TypeError: the shards' own input checks failed (nothing was written).
    """
    from sam2_exec import WorkerSpec, make_executor, worker_stats

    if fn not in SHARDABLE:
        raise ValueError(f"expected one of {SHARDABLE}, received {fn!r}")
    units = [list(u) for u in (units if units is not None else [[i] for i in view.values("id")]) if u]
    if not units:
        raise ValueError("the collection is empty")
    env = database_env()
    ex = make_executor(executor, workers, env=env) if isinstance(executor, str) else make_executor(executor)
    n = int(shards or min(len(units), 4 * int(workers or getattr(ex, "requested_workers", None) or 4)))
    n = max(1, min(n, len(units)))
    name = _dataset_name(view)
    base = {"fn": fn, "dataset": name, "stages": _stages(view), "kwargs": dict(kwargs)}
    items = [{**base, "ids": shard_units(units, k, n)} for k in range(n)]
    keys = [f"shard {k + 1}/{n}" for k in range(n)]
    total = sum(len(it["ids"]) for it in items)
    out: Dict[str, Any] = {k: 0 for k in _COUNT_KEYS}
    out.update(errors=[], resumed=False, failed_shards={})
    results, done = [], 0
    t0 = time.perf_counter()
    try:
        for res in ex.map(WorkerSpec(ShardWorker, (env,)), items, keys=keys):
            results.append(res)
            done += len(items[res.index]["ids"])
            if res.ok:
                for k in _COUNT_KEYS:
                    out[k] += int(res.value.get(k, 0))
                out["errors"] += list(res.value.get("errors", []))
                out["resumed"] = out["resumed"] or bool(res.value.get("resumed"))
                for k in ("label_field", "status_field", "kind"):
                    out.setdefault(k, res.value.get(k))
            elif isinstance(res.exception, (ValueError, TypeError)):
                raise res.exception  # the run's own input checks: the same in every shard
            else:  # its workers kept dying: its unfinished samples stay pending for a rerun
                out["failed_shards"][res.key] = res.error
            if progress is not None:
                progress(done / max(1, total), f"{len(results)}/{n} shards, {out['processed']} labeled, "
                                               f"{out['failed']} failed")
    finally:
        ex.close()
        import fiftyone as fo

        fo.load_dataset(name).reload()  # show this process the fields the workers declared
    out["errors"] = out["errors"][:20]
    wall = time.perf_counter() - t0
    out.update(executor=getattr(ex, "kind", type(ex).__name__), workers=getattr(ex, "workers", None), shards=n,
               seconds=wall, per_worker=worker_stats(results, wall), pid=os.getpid())
    return out
