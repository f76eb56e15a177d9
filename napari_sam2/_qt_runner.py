"""The controller's jobs in Qt thread workers (superqt, as napari's ``thread_worker``): the job
body runs in a worker thread; its items, its end and its errors reach the controller's
callbacks in the UI thread. An error never becomes a traceback dialog: it ends the job as
"failed" with the exception, which the controller turns into one notification."""

from __future__ import annotations

import inspect
from collections import deque
from typing import Any, Callable, Optional

from ._jobs import Job, JobFn

__all__ = ["QtRunner"]


class QtRunner:
    """Runs jobs in superqt workers (see the module docstring)."""

    is_async = True

    def __init__(self) -> None:
        self.worker: Any = None

    def start(self, name: str, fn: JobFn, on_item: Optional[Callable[[Any], None]] = None,
              on_done: Optional[Callable[[Job], None]] = None) -> Job:
        from superqt.utils import create_worker

        job = Job(name)

        def gen_fn():  # create_worker needs a generator *function* for a GeneratorWorker
            # errors are caught here: superqt takes a RuntimeError from a generator for a
            # deleted worker and then never emits "finished"
            try:
                out = fn(job)
                if inspect.isgenerator(out):
                    try:
                        for item in out:
                            yield item
                            if job.cancel_requested:
                                break
                    finally:
                        out.close()
                    return None
                job.result = out
            except Exception as exc:  # noqa: BLE001 - reported through the job
                job.error, job.state = exc, "failed"
            return None

        # _ignore_errors: superqt would re-raise in the UI thread (and napari would show a
        # traceback); the error is kept on the job instead
        worker = create_worker(gen_fn, _start_thread=False, _ignore_errors=True)

        def errored(exc: BaseException) -> None:
            job.error, job.state = exc, "failed"

        def finished() -> None:
            if job.state == "running":
                job.state = "cancelled" if job.cancel_requested else "done"
            self.worker = None
            if on_done is not None:
                on_done(job)

        # Callbacks run one at a time and in order: napari's progress bars call
        # processEvents, which would otherwise deliver the next item (or the end) inside the
        # handling of the current one
        queue: deque = deque()
        busy = [False]

        def deliver(kind: str, payload: Any = None) -> None:
            queue.append((kind, payload))
            if busy[0]:
                return
            busy[0] = True
            try:
                while queue:
                    k, p = queue.popleft()
                    if k == "item" and on_item is not None:
                        on_item(p)
                    elif k == "done":
                        finished()
            finally:
                busy[0] = False

        worker.yielded.connect(lambda item: deliver("item", item))
        worker.errored.connect(errored)
        worker.finished.connect(lambda: deliver("done"))
        job._on_cancel = worker.quit
        self.worker = worker
        worker.start()
        return job
