"""Run work items on Ray: one stateful actor per worker, items streamed, retried on worker death.

How a run goes
--------------
1. :func:`connect` joins a cluster (``address="auto"``, ``"ray://head:10001"``, ``"host:6379"``)
   or, without an address, starts a local one bound to loopback only.
2. ``workers`` actors are started (``num_cpus_per_worker`` / ``num_gpus_per_worker`` each; Ray
   gives each GPU actor its own ``CUDA_VISIBLE_DEVICES``). Each builds the worker once (the
   model stays loaded in that process) and reports ``info()``.
3. The driver hands one item at a time to each idle actor (an item is a whole video, a shard of
   a dataset, or a batch of images: its state never leaves the actor that runs it) and yields
   each :class:`~sam2_exec.base.ItemResult` as soon as it arrives; the caller writes it.
4. A worker that dies (killed, out of memory, lost node) fails its item with a Ray actor error:
   the item goes back to the queue, preferably to another worker, and is retried up to
   ``max_item_retries`` times; the dead actor is restarted by Ray (``max_restarts``) and takes
   new items once it answers again. Each item's result is yielded exactly once.
5. An exception *inside* the worker (a corrupt image, an unreadable video) is not a death: the
   item's result carries the error and the run goes on.
6. Ctrl-C (or the caller leaving the loop early) kills the actors, which cancels the remote
   work; results already yielded stay with the caller. A local cluster started here is shut
   down by :meth:`RayExecutor.close`.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import sys
import time
import uuid
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from .base import ItemResult, WorkerShell, WorkerSpec, _keys

__all__ = ["RayExecutor", "connect", "require_ray"]

logger = logging.getLogger(__name__)
NAMESPACE = "sam2_exec"


def require_ray() -> Any:
    """Import Ray, or say how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("executor='ray' needs Ray: pip install 'sam2-plugins[ray]' "
                          f"(or pip install 'ray[data]>=2.40'); {exc}") from exc
    return ray


def _loopback_if_local(address: Optional[str]) -> bool:
    """For a local cluster (no address, no ``RAY_ADDRESS``) make Ray bind to loopback: Ray reads
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, at import, so this must run before ``import ray``
    (it is left alone when Ray is already imported or the variable is set). Returns "local"."""
    local = address is None and not os.environ.get("RAY_ADDRESS")
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    return local


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None, **init_kwargs: Any) -> bool:
    """Connect to Ray; returns True when this call started (and so owns) the Ray runtime.

    Without ``address`` (and without ``RAY_ADDRESS``) a local cluster is started on this machine
    only, its processes listening on loopback. Reuses an existing connection.
    """
    local = _loopback_if_local(address)
    ray = require_ray()
    if ray.is_initialized():
        return False
    kwargs: Dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True,
                              "namespace": NAMESPACE}
    kwargs.update(init_kwargs)
    if local and num_cpus is not None:
        kwargs["num_cpus"] = int(num_cpus)
    ray.init(address=address, **kwargs)
    return True


class _Actor:
    """The body of each Ray actor: a :class:`WorkerShell` plus a ready probe."""

    def __init__(self, spec: WorkerSpec, name: str, torch_threads: Optional[int]) -> None:
        self.shell = WorkerShell(spec, name, torch_threads)

    def info(self) -> Dict[str, Any]:
        return self.shell.info()

    def run(self, index: int, key: str, item: Any) -> ItemResult:
        return self.shell.run(index, key, item)


class RayExecutor:
    """Run items on ``workers`` Ray actors (see the module docstring).

    Args:
        workers: actors to start (default: the cluster's GPUs / ``num_gpus_per_worker`` when
            GPUs are asked for, else its CPUs / ``num_cpus_per_worker``).
        address: Ray address (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); None starts a
            local loopback cluster (or uses ``RAY_ADDRESS``).
        num_gpus_per_worker: GPUs per actor (0: CPU workers; fractions share a GPU).
        num_cpus_per_worker: CPUs per actor (also the torch thread count of CPU workers).
        max_item_retries: how often an item is retried after the worker running it died.
        max_restarts: how often Ray restarts a dead actor.
        env: environment variables for the workers (e.g. ``FIFTYONE_DATABASE_URI``).
        name: prefix of the actors' names (``<name>-worker-<i>`` in namespace ``sam2_exec``),
            unique per run by default.
        local_num_cpus: CPUs of a local cluster started here (default: all).
    """

    kind = "ray"

    def __init__(self, workers: Optional[int] = None, address: Optional[str] = None,
                 num_gpus_per_worker: float = 0.0, num_cpus_per_worker: float = 1.0,
                 max_item_retries: int = 3, max_restarts: int = 3, env: Optional[Mapping[str, str]] = None,
                 name: Optional[str] = None, local_num_cpus: Optional[int] = None) -> None:
        if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
            raise ValueError(f"expected workers >= 1, received {workers!r}")
        if num_gpus_per_worker < 0 or num_cpus_per_worker <= 0:
            raise ValueError(f"expected num_gpus_per_worker >= 0 and num_cpus_per_worker > 0, received "
                             f"{num_gpus_per_worker} and {num_cpus_per_worker}")
        _loopback_if_local(address)
        require_ray()
        self.requested_workers = workers
        self.address = address
        self.num_gpus = float(num_gpus_per_worker)
        self.num_cpus = float(num_cpus_per_worker)
        self.max_item_retries = int(max_item_retries)
        self.max_restarts = int(max_restarts)
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.name = name or f"run-{uuid.uuid4().hex[:8]}"
        self.local_num_cpus = local_num_cpus
        self.workers = 0
        self.worker_info: List[Dict[str, Any]] = []
        self.startup_seconds = 0.0  # connecting (or starting a local cluster) + starting the workers
        self.connect_seconds = 0.0
        self.retried: List[str] = []
        self._owns_runtime = False
        self._actors: List[Any] = []

    # ------------------------------------------------------------------ lifecycle
    def actor_names(self) -> List[str]:
        return [f"{self.name}-worker-{i}" for i in range(self.workers)]

    def describe(self) -> Dict[str, Any]:
        return {"executor": self.kind, "workers": self.workers, "address": self.address,
                "num_gpus_per_worker": self.num_gpus, "num_cpus_per_worker": self.num_cpus,
                "worker_info": self.worker_info, "startup_seconds": self.startup_seconds,
                "connect_seconds": self.connect_seconds,
                "retried_items": list(self.retried)}

    def _count(self, ray: Any) -> int:
        if self.requested_workers is not None:
            return int(self.requested_workers)
        res = ray.cluster_resources()
        if self.num_gpus > 0:
            n = int(res.get("GPU", 0) // self.num_gpus)
            if n < 1:
                raise ValueError(f"num_gpus_per_worker={self.num_gpus} but the cluster has {res.get('GPU', 0)} GPU(s)")
            return n
        return max(1, int(res.get("CPU", 1) // self.num_cpus))

    def _start(self, spec: WorkerSpec) -> None:
        t0 = time.perf_counter()
        self._owns_runtime = connect(self.address, self.local_num_cpus) or self._owns_runtime
        import ray

        self.connect_seconds = time.perf_counter() - t0
        self.workers = self._count(ray)
        threads = None if self.num_gpus > 0 else max(1, int(self.num_cpus))
        remote = ray.remote(_Actor)
        opts: Dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                "max_restarts": self.max_restarts, "max_task_retries": 0,
                                "namespace": NAMESPACE, "runtime_env": {"env_vars": _worker_env(spec, self.env)}}
        self._actors = [remote.options(name=n, **opts).remote(spec, f"ray-{i}", threads)
                        for i, n in enumerate(self.actor_names())]
        try:
            self.worker_info = ray.get([a.info.remote() for a in self._actors])
        except Exception as exc:
            self._kill()
            raise RuntimeError(f"the Ray workers could not start: {_cause(exc, root=True)}") from exc
        self.startup_seconds = time.perf_counter() - t0

    def _kill(self) -> None:
        if not self._actors:
            return
        import ray

        for a in self._actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception as exc:  # already gone
                logger.debug("killing actor: %s", exc)
        self._actors = []

    def close(self) -> None:
        """Stop the actors and, if this executor started the local Ray runtime, shut it down."""
        self._kill()
        if self._owns_runtime:
            import ray

            ray.shutdown()
            self._owns_runtime = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ the run
    def map(self, spec: WorkerSpec, items: Sequence[Any], keys: Optional[Sequence[str]] = None
            ) -> Iterator[ItemResult]:
        """Yield one :class:`ItemResult` per item, in completion order (``index`` gives the
        item's position). The actors live for this call only."""
        items = list(items)
        names = _keys(len(items), keys)
        self._start(spec)
        try:
            yield from self._schedule(items, names)
        finally:  # normal end, Ctrl-C, or the caller stopped iterating: cancel the remote work
            self._kill()

    def _schedule(self, items: List[Any], names: List[str]) -> Iterator[ItemResult]:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        pending: Deque[int] = collections.deque(range(len(items)))
        attempts = [0] * len(items)
        avoid: Dict[int, int] = {}  # item -> the worker that died running it
        refs: Dict[int, Any] = {}  # item -> object ref of its payload (put once, reused on retry)
        busy: Dict[int, Tuple[Any, int]] = {}  # worker -> (ref, item)
        probes: Dict[int, Any] = {}  # worker -> ref of a ready probe after its death
        probe_wait: Dict[int, float] = {}
        dead: Set[int] = set()
        actors = self._actors

        def idle() -> List[int]:
            return [w for w in range(len(actors))
                    if w not in busy and w not in probes and w not in probe_wait and w not in dead]

        while pending or busy:
            for w in idle():
                if not pending:
                    break
                live_others = [o for o in range(len(actors)) if o != w and o not in dead]
                pick = next((i for i in pending if avoid.get(i) != w or not live_others), None)
                if pick is None:
                    continue
                pending.remove(pick)
                if pick not in refs:
                    refs[pick] = ray.put(items[pick])
                attempts[pick] += 1
                busy[w] = (actors[w].run.remote(pick, names[pick], refs[pick]), pick)
            now = time.monotonic()
            for w in [w for w, t in probe_wait.items() if t <= now]:
                del probe_wait[w]
                probes[w] = actors[w].info.remote()
            waiting = [r for r, _ in busy.values()] + list(probes.values())
            if not waiting:
                if not [w for w in range(len(actors)) if w not in dead]:
                    raise RuntimeError(f"every Ray worker died; {len(pending)} item(s) not run: "
                                       f"{[names[i] for i in list(pending)[:10]]}")
                time.sleep(0.2)
                continue
            done, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in done:
                w_probe = next((w for w, r in probes.items() if r == ref), None)
                if w_probe is not None:
                    del probes[w_probe]
                    try:
                        self.worker_info[w_probe] = ray.get(ref)
                    except ActorDiedError:
                        dead.add(w_probe)
                    except (ActorUnavailableError, RayActorError):
                        probe_wait[w_probe] = time.monotonic() + 0.5
                    continue
                w = next(w for w, (r, _) in busy.items() if r == ref)
                _, i = busy.pop(w)
                try:
                    res = ray.get(ref)
                except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
                    self.retried.append(names[i])
                    logger.warning("worker ray-%d died running %s (attempt %d): %s", w, names[i], attempts[i],
                                   _cause(exc))
                    probe_wait[w] = time.monotonic() + 0.5
                    if attempts[i] > self.max_item_retries:
                        yield ItemResult(i, names[i], error=f"WorkerDied: {attempts[i]} worker(s) died running it; "
                                         f"last: {_cause(exc)}", worker=f"ray-{w}", attempts=attempts[i])
                    else:
                        avoid[i] = w
                        pending.appendleft(i)
                    continue
                except ray.exceptions.RayTaskError as exc:  # the shell itself failed (not the item)
                    res = ItemResult(i, names[i], error=f"WorkerError: {_cause(exc)}", worker=f"ray-{w}")
                res.attempts = attempts[i]
                refs.pop(i, None)
                yield res


def _source_roots(spec: WorkerSpec) -> List[str]:
    """Folders holding this package, the core and the worker's own package, so workers import
    the same code as the driver even from a source checkout that is not installed."""
    roots = []
    for name in ("sam2_exec", "sam2_plugins", getattr(spec.factory, "__module__", "").split(".")[0]):
        mod = sys.modules.get(name)
        path = getattr(mod, "__file__", None)
        if path:
            root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
            if root not in roots:
                roots.append(root)
    return roots


def _worker_env(spec: WorkerSpec, env: Mapping[str, str]) -> Dict[str, str]:
    out = dict(env)
    inherited = out.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    paths = _source_roots(spec) + [p for p in inherited.split(os.pathsep) if p]
    out["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return out


def _cause(exc: BaseException, root: bool = False) -> str:
    """One line about ``exc``; ``root``: the innermost ``SomeError: message`` line Ray quotes
    (e.g. why a worker's constructor failed)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if root:
        inner = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", ln)]
        if inner:
            return inner[-1]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
