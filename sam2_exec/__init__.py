"""sam2_exec: the execution layer of sam2-plugins (in this process, or on a Ray cluster).

One place that runs a list of work items (a video, a batch of images, a shard of a FiftyOne
view) on one or more workers, each holding a built model::

    from sam2_exec import WorkerSpec, make_executor

    with make_executor("ray", workers=4, num_gpus_per_worker=1) as ex:   # or "inprocess"
        for res in ex.map(WorkerSpec(MyWorker, (model_name,)), items, keys=names):
            write(res.key, res.value) if res.ok else log(res.key, res.error)

Layering: this package imports the core (``sam2_plugins``) and, lazily, Ray; it never imports
an adapter. The adapters (``benchmarks``, ``fiftyone_sam2``) import it and give it their own
worker classes. ``sam2-plugins label`` (folders of images, no FiftyOne) lives here too
(:mod:`sam2_exec.label`). Ray is optional: ``pip install "sam2-plugins[ray]"``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "WorkerSpec": "base", "ItemResult": "base", "InProcessExecutor": "base", "make_executor": "base",
    "worker_stats": "base", "EXECUTORS": "base",
    "RayExecutor": "ray_backend", "connect": "ray_backend",
    "add_executor_args": "options", "executor_from_args": "options",
    "AutoLabeler": "images", "read_image": "images",
    "label_folder": "label",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'sam2_exec' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
