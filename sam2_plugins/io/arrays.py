"""Frame sources over arrays: numpy, lazy array-likes (dask, zarr, h5py, memmap), lists of frames.

A lazy array-like is anything with ``.shape`` and ``__getitem__``; it is indexed one frame at a
time, so a dask or zarr array is never loaded whole.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Union

import numpy as np

from .base import FrameSource, _as_frame

__all__ = ["ArraySource", "SequenceSource"]


class ArraySource(FrameSource):
    """Frames along one axis of an array.

    Args:
        array: ``(T, H, W)`` or ``(T, H, W, C)`` (C <= 4, channels last) numpy array or lazy
            array-like. With ``time_axis != 0`` a 3D volume ``(Z, Y, X)`` (or a 4D one with
            trailing channels) is read with that axis as time, e.g. ``time_axis=2`` gives
            ``X`` frames of size ``Z x Y``.
        time_axis: the axis that indexes frames (negative values count from the end).
        name: used in error messages.

    Raises:
        ValueError: for an array with fewer than 3 dimensions, more than 4, zero frames or a
            zero-sized frame.
    """

    def __init__(self, array: Any, time_axis: int = 0, name: str = "array") -> None:
        shape = tuple(int(s) for s in array.shape)
        ndim = len(shape)
        if ndim not in (3, 4):
            raise ValueError(
                f"{name}: expected a (T, H, W) or (T, H, W, C) array, got shape {shape}"
            )
        if not -ndim <= time_axis < ndim:
            raise ValueError(f"{name}: time_axis {time_axis} out of range for shape {shape}")
        time_axis %= ndim
        if ndim == 4 and time_axis == 3:
            raise ValueError(f"{name}: the last axis of a 4D array holds channels, not time")
        self._array = array
        self._axis = time_axis
        self._name = name
        frame_shape = shape[:time_axis] + shape[time_axis + 1 :]
        self.num_frames = shape[time_axis]
        if self.num_frames == 0:
            raise ValueError(f"{name}: the array holds no frames (shape {shape})")
        self.height, self.width = frame_shape[0], frame_shape[1]
        if self.height == 0 or self.width == 0:
            raise ValueError(f"{name}: frames of size {self.height}x{self.width} are empty")
        self.dtype = getattr(array, "dtype", None)
        if type(array) is np.ndarray and array.dtype.kind in "fc":  # in memory: check every frame now
            for i in range(self.num_frames):
                _as_frame(self._read(i), i, name)

    def describe(self) -> str:
        return self._name

    def _read(self, idx: int) -> Any:
        index: List[Union[slice, int]] = [slice(None)] * len(self._array.shape)
        index[self._axis] = idx
        # one frame at a time: for dask/zarr/h5py this reads only that frame's chunks
        return self._array[tuple(index)]


class SequenceSource(FrameSource):
    """Frames from a Python list/tuple of per-frame arrays, tensors or PIL images."""

    def __init__(self, frames: Sequence[Any], name: str = "list of frames") -> None:
        if len(frames) == 0:
            raise ValueError(f"{name} is empty: a video needs at least one frame")
        self._frames = frames
        self._name = name
        self.num_frames = len(frames)
        first = _as_frame(frames[0], 0, name)
        self.height, self.width = first.shape[:2]
        self.dtype = first.dtype
        for i in range(1, len(frames)):  # frames in memory: sizes and values are checked up front
            self._check_size(_as_frame(frames[i], i, name), i)

    def describe(self) -> str:
        return self._name

    def _read(self, idx: int) -> Any:
        return self._frames[idx]


def is_array_like(obj: Any) -> bool:
    """True for numpy arrays and lazy array-likes (``shape`` + ``__getitem__``, 3D or 4D)."""
    if isinstance(obj, np.ndarray):
        return True
    shape = getattr(obj, "shape", None)
    if shape is None or not hasattr(obj, "__getitem__"):
        return False
    try:
        return len(tuple(shape)) >= 1
    except TypeError:
        return False
