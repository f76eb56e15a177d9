"""Work items, results and the in-process executor.

An *executor* runs one worker function over a list of work items and yields one
:class:`ItemResult` per item as items finish. The worker is described by a :class:`WorkerSpec`
(a class or factory plus its arguments) and is built once per worker process: that is where a
model is loaded and kept, so every item a worker runs reuses it.

- :class:`InProcessExecutor` (the default) builds one worker in this process and runs the items
  in order. No Ray needed.
- :class:`sam2_exec.ray_backend.RayExecutor` builds one Ray actor per worker and streams the
  items to them (see that module).

Both give the same results for the same items: only the timing fields differ. A worker that
raises on an item gives an :class:`ItemResult` with ``error`` set (the run goes on); the item's
value is never half-written because the executor never writes anything: the caller (the
driver) writes each value as it arrives.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

__all__ = ["WorkerSpec", "ItemResult", "InProcessExecutor", "WorkerShell", "worker_stats", "make_executor",
           "EXECUTORS"]

#: Names accepted by :func:`make_executor` (``"local"`` is an alias of ``"inprocess"``).
EXECUTORS = ("inprocess", "ray")


@dataclass(frozen=True)
class WorkerSpec:
    """How to build a worker: ``factory(*args, **kwargs)`` must return a callable
    ``worker(item) -> value``. ``factory`` must be importable by name on every node (a class or
    function defined at module level) because Ray ships it by reference.

    Optional worker methods the executors use when present:

    - ``info() -> dict``: shown in the run's execution report (device, model, ...).
    - ``units(item, value) -> float``: how much work an item was (frames, images) for the
      per-worker throughput; default 1 per item.
    """

    factory: Callable[..., Any]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        return self.factory(*self.args, **dict(self.kwargs))


@dataclass
class ItemResult:
    """The outcome of one work item.

    Attributes:
        index: position of the item in the list given to ``map``.
        key: the item's name (given by the caller, default ``str(index)``).
        value: what the worker returned (None when ``error`` is set).
        error: ``"<ExceptionType>: <message>"`` when the worker raised on the item, or when every
            worker it was tried on died (``attempts`` says how often); None on success.
        exception: the exception object itself where it could be carried back (else None).
        worker: which worker ran it (``"local-0"``, ``"ray-1"``, ...).
        seconds: wall time of the item inside the worker.
        units: amount of work in the item (see :class:`WorkerSpec`).
        attempts: 1 + the number of times the item was retried after a worker died.
    """

    index: int
    key: str
    value: Any = None
    error: Optional[str] = None
    exception: Optional[BaseException] = None
    worker: str = ""
    seconds: float = 0.0
    units: float = 1.0
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


class WorkerShell:
    """Holds one built worker and runs items on it, catching the item's errors.

    Used as is in-process, and as the body of each Ray actor (``RayExecutor`` wraps it)."""

    def __init__(self, spec: WorkerSpec, name: str, torch_threads: Optional[int] = None) -> None:
        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        self.name = name
        t0 = time.perf_counter()
        self.worker = spec.build()
        self.build_seconds = time.perf_counter() - t0

    def info(self) -> Dict[str, Any]:
        """Who this worker is: name, host, pid, build time, plus the worker's own ``info()``."""
        out: Dict[str, Any] = {"worker": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                               "build_seconds": self.build_seconds}
        extra = getattr(self.worker, "info", None)
        if callable(extra):
            out.update(extra())
        return out

    def run(self, index: int, key: str, item: Any) -> ItemResult:
        t0 = time.perf_counter()
        try:
            value = self.worker(item)
        except Exception as exc:  # a bad item: recorded, the run goes on
            return ItemResult(index, key, error=f"{type(exc).__name__}: {exc}", exception=_portable(exc),
                              worker=self.name, seconds=time.perf_counter() - t0)
        units_fn = getattr(self.worker, "units", None)
        units = float(units_fn(item, value)) if callable(units_fn) else 1.0
        return ItemResult(index, key, value=value, worker=self.name, seconds=time.perf_counter() - t0, units=units)


def _portable(exc: BaseException) -> Optional[BaseException]:
    """The exception if it survives pickling (to cross a process boundary), else None."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return None
    exc.__traceback__ = None  # tracebacks do not pickle; the message says what happened
    return exc


def _keys(n: int, keys: Optional[Sequence[str]]) -> List[str]:
    if keys is None:
        return [str(i) for i in range(n)]
    keys = [str(k) for k in keys]
    if len(keys) != n:
        raise ValueError(f"expected one key per item ({n}), received {len(keys)}")
    if len(set(keys)) != n:
        raise ValueError("item keys must be unique")
    return keys


class InProcessExecutor:
    """Run every item in this process on one worker built once (the default executor)."""

    kind = "inprocess"

    def __init__(self, workers: Optional[int] = None) -> None:
        if workers not in (None, 1):
            raise ValueError(f"the in-process executor runs exactly one worker, received workers={workers}; "
                             "use executor='ray' for more")
        self.workers = 1
        self.worker_info: List[Dict[str, Any]] = []
        self.startup_seconds = 0.0

    def describe(self) -> Dict[str, Any]:
        return {"executor": self.kind, "workers": 1, "worker_info": self.worker_info,
                "startup_seconds": self.startup_seconds}

    def map(self, spec: WorkerSpec, items: Sequence[Any], keys: Optional[Sequence[str]] = None
            ) -> Iterator[ItemResult]:
        """Yield one :class:`ItemResult` per item, in order. Ctrl-C stops after the current item's
        result has been yielded (nothing is written here: the caller keeps what it received)."""
        items = list(items)
        names = _keys(len(items), keys)
        t0 = time.perf_counter()
        shell = WorkerShell(spec, "local-0")
        self.startup_seconds = time.perf_counter() - t0
        self.worker_info = [shell.info()]
        for i, (k, item) in enumerate(zip(names, items)):
            yield shell.run(i, k, item)

    def close(self) -> None:
        pass

    def __enter__(self) -> "InProcessExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def worker_stats(results: Iterable[ItemResult], wall_seconds: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
    """Per worker: items run, failed, units, busy seconds and throughput (units / busy s).

    ``wall_seconds`` (the run's wall time) adds ``utilisation`` = busy / wall."""
    out: Dict[str, Dict[str, Any]] = {}
    for r in results:
        w = out.setdefault(r.worker or "?", {"items": 0, "failed": 0, "units": 0.0, "busy_seconds": 0.0})
        w["items"] += 1
        w["failed"] += int(not r.ok)
        w["units"] += r.units if r.ok else 0.0
        w["busy_seconds"] += r.seconds
    for w in out.values():
        w["units_per_second"] = w["units"] / w["busy_seconds"] if w["busy_seconds"] > 0 else None
        if wall_seconds:
            w["utilisation"] = w["busy_seconds"] / wall_seconds
    return dict(sorted(out.items()))


def make_executor(executor: Any = None, workers: Optional[int] = None, **ray_options: Any) -> Any:
    """An executor from a name or an executor object.

    Args:
        executor: None / ``"inprocess"`` / ``"local"`` (this process), ``"ray"``, or an object
            with a ``map`` method (returned as is).
        workers: number of workers (Ray: default one per CPU of the cluster, or per GPU with
            ``num_gpus_per_worker``).
        **ray_options: for Ray: ``address``, ``num_gpus_per_worker``, ``num_cpus_per_worker``,
            ``env``, ... (see :class:`~sam2_exec.ray_backend.RayExecutor`).

    Raises:
        ValueError: an unknown name, or Ray options for the in-process executor.
        ImportError: ``"ray"`` without Ray installed (the message says which extra to install).
    """
    if executor is not None and not isinstance(executor, str):
        if not callable(getattr(executor, "map", None)):
            raise TypeError(f"expected an executor name {EXECUTORS} or an executor object, "
                            f"received {type(executor).__name__}")
        return executor
    name = (executor or "inprocess").lower().replace("-", "").replace("_", "")
    if name in ("inprocess", "local"):
        extra = {k: v for k, v in ray_options.items() if v not in (None, 0, 0.0)}
        if extra:
            raise ValueError(f"option(s) {sorted(extra)} need executor='ray'")
        return InProcessExecutor(workers)
    if name == "ray":
        from .ray_backend import RayExecutor

        return RayExecutor(workers=workers, **ray_options)
    raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")

