"""TIFF stacks (multi-page TIFF, OME/ImageJ hyperstacks) read with ``tifffile``.

Where every page is one frame (the common case: a (T, H, W) or (T, H, W, C) stack written page
by page) pages are decoded one at a time. Other layouts fall back to a memory map of the first
series when the data is uncompressed and contiguous, else to reading the series once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Union

import numpy as np

from .base import FrameSource

__all__ = ["TiffSource"]


def _import_tifffile() -> Any:
    try:
        import tifffile
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading TIFF stacks needs tifffile: pip install 'sam2-plugins[video]' (or pip install tifffile)"
        ) from e
    return tifffile


class TiffSource(FrameSource):
    """Frames of a TIFF stack along ``time_axis`` of its first series.

    Args:
        path: the TIFF file.
        time_axis: axis of the series that indexes frames (0 by default; use 1 or 2 to read
            a (Z, Y, X) volume along another axis). A single 2D page is a 1-frame video.

    Raises:
        ValueError: a missing or corrupted file, or an unsupported layout.
    """

    def __init__(self, path: Union[str, Path], time_axis: int = 0) -> None:
        tifffile = _import_tifffile()
        self._path = Path(path)
        if not self._path.is_file():
            raise ValueError(f"TIFF file {self._path} does not exist")
        try:
            self._tif = tifffile.TiffFile(str(self._path))
            series = self._tif.series[0]
            shape = tuple(int(s) for s in series.shape)
        except Exception as e:  # tifffile raises several types for damaged files
            raise ValueError(f"could not read TIFF {self._path}: corrupted or unsupported ({e})") from e
        self._array: Any = None
        pages = series.pages
        # squeeze a singleton sample axis that tifffile keeps for some writers
        if len(shape) == 2:
            shape = (1,) + shape
            self._mode = "single"
        elif time_axis in (0, -len(shape)) and len(pages) == shape[0] and len(shape) in (3, 4):
            self._mode = "pages"
        else:
            self._mode = "array"
        ndim = len(shape)
        if ndim not in (3, 4):
            raise ValueError(
                f"TIFF {self._path}: series shape {shape} is not a (T, H, W) or (T, H, W, C) "
                "stack; convert it to an array and use open_frames(array, time_axis=...)"
            )
        if not -ndim <= time_axis < ndim or (ndim == 4 and time_axis % ndim == 3):
            raise ValueError(f"TIFF {self._path}: time_axis {time_axis} invalid for shape {shape}")
        self._axis = time_axis % ndim
        self._pages = pages
        frame_shape = shape[: self._axis] + shape[self._axis + 1 :]
        self.num_frames = shape[self._axis]
        self.height, self.width = frame_shape[0], frame_shape[1]
        self.dtype = np.dtype(series.dtype)
        if self.num_frames == 0:
            raise ValueError(f"TIFF {self._path} holds no frames")

    def describe(self) -> str:
        return str(self._path)

    def _load_array(self) -> Any:
        if self._array is None:
            series = self._tif.series[0]
            try:
                self._array = series.asarray(out="memmap") if series.dataoffset is not None else None
            except Exception:
                self._array = None
            if self._array is None:
                self._array = series.asarray()
            if self._array.ndim == 2:
                self._array = self._array[None]
        return self._array

    def _read(self, idx: int) -> np.ndarray:
        try:
            if self._mode == "pages":
                return self._pages[idx].asarray()
            if self._mode == "single":
                return self._pages[0].asarray()
            arr = self._load_array()
            index: List[Union[slice, int]] = [slice(None)] * arr.ndim
            index[self._axis] = idx
            return np.asarray(arr[tuple(index)])
        except (ValueError, IndexError):
            raise
        except Exception as e:
            raise ValueError(f"could not decode frame {idx} of TIFF {self._path}: {e}") from e

    def close(self) -> None:
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()
            self._tif = None
