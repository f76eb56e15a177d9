"""Python iterables and generators as forward-only frame streams (camera feeds, pipelines)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from .base import FrameSource, _as_frame

__all__ = ["StreamSource"]


class StreamSource(FrameSource):
    """Frames pulled one by one from an iterable; the length is unknown until it ends.

    Only the last ``keep`` frames stay in memory, so an endless stream runs in bounded memory.
    ``get(idx)`` reads forward as far as needed; asking for a frame older than the kept window
    is a ``RuntimeError``. ``num_frames`` is ``None`` until the stream is exhausted.

    Args:
        frames: any iterable of ``(H, W)`` / ``(H, W, C)`` arrays, tensors or PIL images.
        keep: number of most recent frames kept for random access.

    Raises:
        ValueError: the iterable yields no frame at all.
    """

    def __init__(self, frames: Iterable[Any], keep: int = 16, name: str = "stream") -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self._it: Optional[Iterator[Any]] = iter(frames)
        self._keep = keep
        self._name = name
        self._buf: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._next = 0  # index the next pulled frame will get
        self.num_frames = None
        if not self._pull():
            raise ValueError(f"{name} yielded no frames: an empty video cannot be opened")
        first = self._buf[0]
        self.height, self.width = first.shape[:2]
        self.dtype = first.dtype

    def describe(self) -> str:
        return self._name

    def _pull(self) -> bool:
        """Read one more frame into the buffer; False (and the length known) at the end."""
        if self._it is None:
            return False
        try:
            raw = next(self._it)
        except StopIteration:
            self._it = None
            self.num_frames = self._next
            return False
        frame = _as_frame(raw, self._next, self._name)
        if self._next > 0:
            self._check_size(frame, self._next)
        self._buf[self._next] = frame
        self._next += 1
        while len(self._buf) > self._keep:
            self._buf.popitem(last=False)
        return True

    def _read(self, idx: int) -> np.ndarray:
        while idx >= self._next:
            if not self._pull():
                raise IndexError(f"{self._name} ended after {self._next} frames; frame {idx} does not exist")
        if idx not in self._buf:
            raise RuntimeError(
                f"frame {idx} of {self._name} is no longer available: a stream keeps only its "
                f"last {self._keep} frames (pass keep=... to open_frames to keep more)"
            )
        return self._buf[idx]

    def __iter__(self) -> Iterator[np.ndarray]:
        i = 0
        while True:
            try:
                yield self.get(i)
            except IndexError:
                return
            i += 1
