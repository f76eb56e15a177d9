"""The frame-source protocol shared by every reader in :mod:`sam2_plugins.io`.

A :class:`FrameSource` hands out *raw* frames one at a time: ``get(idx)`` returns a numpy array
of shape ``(H, W)`` or ``(H, W, C)`` in the frame's own dtype (uint8 for JPEG/mp4, uint16 for
many TIFFs, palette indices for 'P' PNGs, ...). Nothing is resized or normalised here; that is
the predictors' job. Sources are lazy: opening one reads at most the first frame's header.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

__all__ = ["FrameSource", "FrameSizeError"]


class FrameSizeError(ValueError):
    """A frame's (H, W) differs from the size of the first frame of its source."""


class FrameSource:
    """Random-access (or, for streams, forward-only) access to the frames of a video.

    Attributes:
        num_frames: number of frames, or ``None`` for a stream whose length is not known yet
            (it is set once the stream is exhausted).
        height, width: frame size in pixels (of frame 0; every frame is checked against it).
        frame_names: per-frame names where the source has them (file stems of an image folder),
            else ``None``.
        fps: frames per second for video files, else ``None``.
    """

    num_frames: Optional[int] = None
    height: int = 0
    width: int = 0
    frame_names: Optional[List[str]] = None
    fps: Optional[float] = None

    # ---- to implement -------------------------------------------------------------------
    def _read(self, idx: int) -> Any:
        """Return frame ``idx`` (0-based, already range-checked where the length is known).

        The one method every concrete source (array, folder, mp4, TIFF, ...) defines.
        """
        raise NotImplementedError(f"{type(self).__name__} must define _read(idx)")

    # ---- public API ---------------------------------------------------------------------
    def get(self, idx: int) -> np.ndarray:
        """Frame ``idx`` as a numpy array ``(H, W)`` or ``(H, W, C)`` in its own dtype.

        Negative indices count from the end where the length is known.

        Raises:
            IndexError: ``idx`` is out of range.
            FrameSizeError: the frame's size differs from frame 0's (a ``ValueError``).
        """
        idx = self._normalise_index(idx)
        frame = _as_frame(self._read(idx), idx, self.describe())
        self._check_size(frame, idx)
        return frame

    def __getitem__(self, idx: int) -> np.ndarray:
        return self.get(idx)

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError(
                f"{type(self).__name__} is a stream of unknown length; iterate over it instead "
                "of calling len()"
            )
        return self.num_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.num_frames is None:
            # sources of unknown length (streams) define their own __iter__
            raise NotImplementedError(f"{type(self).__name__} has no length and defines no __iter__")
        for i in range(self.num_frames):
            yield self.get(i)

    @property
    def shape(self) -> Tuple[Optional[int], int, int]:
        """``(num_frames, height, width)``; ``num_frames`` may be ``None`` for streams."""
        return (self.num_frames, self.height, self.width)

    def describe(self) -> str:
        """A short human-readable name of the source, used in error messages."""
        return type(self).__name__

    def close(self) -> None:
        """Release file handles (a no-op for in-memory sources)."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        n = "?" if self.num_frames is None else self.num_frames
        return f"{type(self).__name__}({self.describe()!r}, frames={n}, size={self.height}x{self.width})"

    # ---- helpers ------------------------------------------------------------------------
    def _normalise_index(self, idx: int) -> int:
        if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(idx).__name__}")
        idx = int(idx)
        n = self.num_frames
        if n is None:
            if idx < 0:
                raise IndexError("negative frame indices need a source of known length")
            return idx
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"frame index {idx} out of range for {n} frames ({self.describe()})")
        return idx

    def _check_size(self, frame: np.ndarray, idx: int) -> None:
        if frame.shape[:2] != (self.height, self.width):
            raise FrameSizeError(
                f"frame {idx} of {self.describe()} has size {frame.shape[0]}x{frame.shape[1]} "
                f"(HxW) but frame 0 has {self.height}x{self.width}; all frames of a video must "
                "have the same size"
            )


def _as_frame(obj: Any, idx: int, where: str) -> np.ndarray:
    """Turn one frame (numpy array, torch tensor, PIL image, array-like) into a numpy array."""
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor, without importing torch
        obj = obj.detach().cpu().numpy()
    elif hasattr(obj, "compute") and not isinstance(obj, np.ndarray):  # dask array chunk
        obj = obj.compute()
    arr = np.asarray(obj)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or arr.dtype == object:
        raise ValueError(
            f"frame {idx} of {where} should be an (H, W) or (H, W, C) array, got shape "
            f"{arr.shape} dtype {arr.dtype}"
        )
    if arr.ndim == 3 and arr.shape[2] > 4:
        raise ValueError(
            f"frame {idx} of {where} has {arr.shape[2]} channels in its last axis; expected "
            "(H, W) or (H, W, C) with C <= 4 (pass time_axis / use a volume source for stacks)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"frame {idx} of {where} is empty (shape {arr.shape})")
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        # NaN pixels would reach the model and make every mask "no object" (-1024) without a word
        raise ValueError(f"frame {idx} of {where} holds NaN or infinite values")
    return arr
