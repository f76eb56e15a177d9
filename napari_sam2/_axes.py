"""Axis handling: which axes of an image layer are Y/X, the stack axes (Z, T) and the channels.

Pure numpy (no napari, no Qt), so it is unit-tested without a viewer.

Conventions
-----------
* The last two non-channel axes of the data are always Y (rows) then X (columns).
* ``mode`` names the stack axes that come right before Y, X: ``"2D"`` (none), ``"Z"``,
  ``"T"`` or ``"TZ"`` (T first, then Z, as napari orders a 3D+t stack). Any further leading
  axes (say a position axis of a 5D file) are held at the viewer's current position.
* A *frame key* is the tuple of integer indices of every non-spatial, non-channel axis, in
  data order. ``labels[key]`` is then the (H, W) plane of a Labels array whose shape is the
  image shape without the channel axis.
* SAM 2 sees 8-bit RGB: every plane is windowed by contrast limits (what the user sees),
  and up to three chosen channels are mapped to R, G, B (one channel is replicated to grey).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "MODES",
    "AxisSpec",
    "default_mode",
    "to_rgb8",
    "MAX_PIXELS",
    "level0",
]

MODES: Tuple[str, ...] = ("2D", "Z", "T", "TZ")
"""The axis modes, by the stack axes they name before Y, X."""

MAX_PIXELS = 4096 * 4096
"""Largest plane (H*W) we segment: beyond it the full-size float masks alone need >1 GB.
Larger images get a clear message asking to crop or use a lower pyramid level."""

Limits = Union[Tuple[float, float], Sequence[Tuple[float, float]], None]


@dataclass(frozen=True)
class AxisSpec:
    """How to read frames out of an image array.

    Attributes:
        mode: one of :data:`MODES`.
        channel_axis: index (into the data's axes; negative allowed) of a channel axis,
            or None. Ignored for RGB(A) layers, whose channels are the last axis.
        channels: the channels to composite (at most 3, mapped to R, G, B); empty means
            the first ``min(3, C)``.
        rgb: True for napari RGB(A) layers (last axis has 3 or 4 colour samples).
    """

    mode: str = "2D"
    channel_axis: Optional[int] = None
    channels: Tuple[int, ...] = ()
    rgb: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if len(self.channels) > 3:
            raise ValueError(f"at most 3 channels can be composited, got {self.channels}")

    # -- shapes -------------------------------------------------------------------------
    def _chan_axis(self, ndim: int) -> Optional[int]:
        """The channel axis as a non-negative index, or None."""
        if self.rgb:
            return ndim - 1
        if self.channel_axis is None:
            return None
        ax = self.channel_axis
        if not -ndim <= ax < ndim:
            raise ValueError(
                f"channel axis {ax} does not exist in data with {ndim} axes"
            )
        return ax % ndim

    def labels_shape(self, shape: Sequence[int]) -> Tuple[int, ...]:
        """Shape of the matching Labels array: ``shape`` without its channel axis.

        Raises:
            ValueError: when the data has too few axes for :attr:`mode` (e.g. 1D data, or
                mode "TZ" on a 3D stack) or a channel axis that does not exist.
        """
        shape = tuple(int(s) for s in shape)
        ndim = len(shape)
        if ndim < 2:
            raise ValueError(f"an image needs at least 2 axes (Y, X); got shape {shape}")
        ca = self._chan_axis(ndim)
        out = tuple(s for i, s in enumerate(shape) if i != ca)
        need = 2 + len(self.stack_names)
        if len(out) < need:
            axes = ", ".join(self.stack_names + ("Y", "X"))
            raise ValueError(
                f"mode {self.mode!r} needs {need} non-channel axes ({axes}); the layer has "
                f"{len(out)} (shape {shape}"
                + (f", channel axis {ca}" if ca is not None else "")
                + ")"
            )
        if self.rgb and shape[-1] not in (3, 4):
            raise ValueError(f"an RGB layer needs 3 or 4 samples last, got shape {shape}")
        return out

    @property
    def stack_names(self) -> Tuple[str, ...]:
        """Names of the stack axes, in data order: (), ("Z",), ("T",) or ("T", "Z")."""
        return () if self.mode == "2D" else tuple(self.mode)

    def stack_axes(self, shape: Sequence[int]) -> dict:
        """Map each stack-axis name to its position in the *frame key* (not the data)."""
        n_key = len(self.labels_shape(shape)) - 2
        names = self.stack_names
        first = n_key - len(names)
        return {name: first + i for i, name in enumerate(names)}

    def key_length(self, shape: Sequence[int]) -> int:
        """Number of indices in a frame key for data of this shape."""
        return len(self.labels_shape(shape)) - 2

    def frame_key(self, shape: Sequence[int], point: Sequence[float]) -> Tuple[int, ...]:
        """Frame key from a position over the labels axes (e.g. the viewer's current step
        or a Points-layer coordinate), rounded and clipped to the data."""
        lshape = self.labels_shape(shape)
        n = len(lshape) - 2
        pt = list(point)[-len(lshape):] if len(point) >= len(lshape) else [0] * (
            len(lshape) - len(point)
        ) + list(point)
        return tuple(int(min(max(round(float(p)), 0), s - 1)) for p, s in zip(pt[:n], lshape[:n]))

    # -- pixels -------------------------------------------------------------------------
    def plane(self, data: Any, key: Tuple[int, ...],
              window: Optional[Tuple[int, int, int, int]] = None) -> np.ndarray:
        """The raw plane at ``key``: (H, W) or (H, W, C) with C the chosen channels.

        ``window`` = (y0, y1, x0, x1) reads only that part of the plane (a tile).
        Works on numpy, dask and zarr arrays alike: only the plane (or window) is read.
        """
        shape = tuple(data.shape)
        ndim = len(shape)
        ca = self._chan_axis(ndim)
        if len(key) != self.key_length(shape):
            raise ValueError(f"frame key {key} has {len(key)} indices, expected "
                             f"{self.key_length(shape)} for shape {shape}")
        non_chan = [ax for ax in range(ndim) if ax != ca]
        index: list = [slice(None)] * ndim
        for ax, i in zip(non_chan[: len(key)], key):
            index[ax] = int(i)
        if window is not None:
            y0, y1, x0, x1 = (int(v) for v in window)
            index[non_chan[-2]], index[non_chan[-1]] = slice(y0, y1), slice(x0, x1)
        arr = np.asarray(data[tuple(index)])
        if ca is None:
            return arr
        # What is left is (Y, X) plus the channel axis, still in data order.
        y_ax, x_ax = non_chan[-2], non_chan[-1]
        c_pos = 0 if ca < y_ax else (1 if ca < x_ax else 2)
        arr = np.moveaxis(arr, c_pos, -1)
        n_c = arr.shape[-1]
        chans = self.channels or tuple(range(min(3, n_c if not self.rgb else 3)))
        for c in chans:
            if not 0 <= c < n_c:
                raise ValueError(f"channel {c} does not exist (the layer has {n_c})")
        return arr[..., list(chans)]


def level0(layer: Any) -> Any:
    """The full-resolution array of a napari image layer: level 0 of a multiscale pyramid
    (napari's data coordinates are level-0 pixels, so clicks and outputs line up)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def default_mode(shape: Sequence[int], rgb: bool = False, axis_labels: Optional[Sequence[str]] = None) -> str:
    """A reasonable guess of the axes: 2D for YX; for one stack axis, T when the layer's axis
    label says time ("t", "time", "frame") or the data are RGB (a video), else Z; TZ for 4D
    (napari's TZYX order)."""
    n = len(shape) - (1 if rgb else 0)
    if n <= 2:
        return "2D"
    if n >= 4:
        return "TZ"
    label = str(list(axis_labels)[0]).strip().lower() if axis_labels is not None and len(axis_labels) else ""
    if label in ("t", "time", "frame", "frames"):
        return "T"
    if label in ("z", "depth", "plane", "slice"):
        return "Z"
    return "T" if rgb else "Z"


def _limits_for(c: int, limits: Limits, plane: np.ndarray) -> Tuple[float, float]:
    if limits is None:
        if plane.dtype == np.uint8:
            return 0.0, 255.0
        lo, hi = float(np.min(plane)), float(np.max(plane))
        return lo, hi if hi > lo else lo + 1.0
    if len(limits) == 2 and np.isscalar(limits[0]):
        return float(limits[0]), float(limits[1])  # type: ignore[arg-type]
    lim = list(limits)[min(c, len(limits) - 1)]  # type: ignore[arg-type]
    return float(lim[0]), float(lim[1])


def to_rgb8(plane: np.ndarray, contrast_limits: Limits = None) -> np.ndarray:
    """Window a plane to 8-bit RGB, as the user sees it.

    Args:
        plane: (H, W) or (H, W, C) with C <= 4 (RGBA drops alpha), any real dtype.
        contrast_limits: (lo, hi) for all channels, one (lo, hi) per channel, or None
            (uint8 as is; otherwise the plane's min..max).

    Returns:
        (H, W, 3) uint8: grey replicated for one channel; channels 0, 1, 2 as R, G, B
        (a missing third channel stays 0).
    """
    if plane.ndim == 2:
        plane = plane[..., None]
    if plane.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) plane, got shape {plane.shape}")
    if plane.shape[-1] == 4:
        plane = plane[..., :3]
    h, w, c = plane.shape
    out = np.zeros((h, w, 3), dtype=np.uint8)
    for i in range(min(c, 3)):
        ch = plane[..., i]
        lo, hi = _limits_for(i, contrast_limits, ch)
        if ch.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
            out[..., i] = ch
            continue
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        v = (ch.astype(np.float32) - lo) * scale
        out[..., i] = np.clip(v + 0.5, 0, 255).astype(np.uint8)
    if c == 1:
        out[..., 1] = out[..., 0]
        out[..., 2] = out[..., 0]
    return out
