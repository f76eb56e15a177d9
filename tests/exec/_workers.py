"""Workers for the executor tests (importable by name, as Ray ships them by reference)."""

from __future__ import annotations

import os
import time

BUILT = []


class SleepWorker:
    """Returns ``(item, pid)`` after ``delay`` s; the item ``"bad"`` raises."""

    def __init__(self, delay: float = 0.2) -> None:
        BUILT.append(os.getpid())
        self.delay = delay

    def info(self) -> dict:
        return {"kind": "sleep"}

    def units(self, item, value) -> float:
        return 2.0

    def __call__(self, item):
        if item == "bad":
            raise ValueError(f"bad item {item!r}")
        time.sleep(self.delay)
        return item, os.getpid()


class BrokenWorker:
    def __init__(self) -> None:
        raise RuntimeError("cannot load the model")
