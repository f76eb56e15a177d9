"""Long-running work of the controller (model loading, frame encoding, propagation, automatic
mode) as *jobs*, and the runners that execute them.

A job is a function of a :class:`Job` handle. It either returns a value, or is a generator
whose items are delivered one by one (a propagated frame, a progress step) to ``on_item``;
``job.cancel()`` stops a generator at its next item (what was delivered stays delivered).

* :class:`SyncRunner` runs jobs inline (scripts, tests, benchmarks): ``start`` returns once
  the job has finished. A callback may cancel the running job (e.g. after N frames).
* The napari view installs a runner on Qt thread workers (``napari_sam2._qt_runner``): the
  job runs in a worker thread, ``on_item`` / ``on_done`` run in the UI thread.

No Qt and no napari here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Protocol

__all__ = ["Job", "Runner", "SyncRunner", "JobFn"]


@dataclass
class Job:
    """The handle of one job: its name, whether it was asked to stop, and how it ended.

    ``state`` is "running", then "done", "cancelled" or "failed" (``error`` set).
    """

    name: str
    state: str = "running"
    result: Any = None
    error: Optional[BaseException] = None
    _cancel_requested: bool = field(default=False, repr=False)
    _on_cancel: Optional[Callable[[], None]] = field(default=None, repr=False)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    @property
    def finished(self) -> bool:
        return self.state != "running"

    def cancel(self) -> None:
        """Ask the job to stop after its current item (a no-op once it has finished)."""
        if self.finished:
            return
        self._cancel_requested = True
        if self._on_cancel is not None:
            self._on_cancel()


JobFn = Callable[[Job], Any]
"""A job body: returns a value, or yields items (then its return value is ignored)."""


class Runner(Protocol):
    """Executes jobs; see the module docstring."""

    is_async: bool

    def start(self, name: str, fn: JobFn, on_item: Optional[Callable[[Any], None]] = None,
              on_done: Optional[Callable[[Job], None]] = None) -> Job:
        ...


class SyncRunner:
    """Runs each job to its end before :meth:`start` returns (errors are caught into the job)."""

    is_async = False

    def start(self, name: str, fn: JobFn, on_item: Optional[Callable[[Any], None]] = None,
              on_done: Optional[Callable[[Job], None]] = None) -> Job:
        job = Job(name)
        try:
            out = fn(job)
            if inspect.isgenerator(out):
                _drain(out, job, on_item)
            else:
                job.result = out
            job.state = "cancelled" if job.cancel_requested else "done"
        except Exception as exc:  # noqa: BLE001 - reported through the job, never raised
            job.error, job.state = exc, "failed"
        if on_done is not None:
            on_done(job)
        return job


def _drain(gen: Iterator[Any], job: Job, on_item: Optional[Callable[[Any], None]]) -> None:
    try:
        for item in gen:
            if on_item is not None:
                on_item(item)
            if job.cancel_requested:
                break
    finally:
        gen.close()  # type: ignore[attr-defined]
