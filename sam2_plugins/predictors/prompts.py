"""One validation layer for prompts, shared by the image predictor, the video predictor and the
streaming session (and through them by the plugins).

Rules (the same for images and videos):

* **labels** are integers in :data:`VALID_LABELS`: 1 foreground click, 0 background click, 2 / 3
  the top-left / bottom-right corner of a box, -1 padding. Anything else (``7``, ``0.7``,
  ``"pos"``, NaN) raises ``ValueError`` / ``TypeError``; nothing is truncated.
* **coordinates** (points and boxes) are finite numbers: NaN / inf raise ``ValueError``.
* **boxes** are ``(x0, y0, x1, y1)``. A box with ``x1 < x0`` or ``y1 < y0`` is *reordered*
  (the two corners swapped per axis) with a ``UserWarning`` naming both forms: the user drew the
  right rectangle from the other corner. A box of zero width or height is kept, with a warning
  (SAM then sees two coinciding corners, i.e. a point-like prompt).
* **points or boxes outside the frame** are kept (SAM handles them, and a box padded past the
  border is common) with a ``UserWarning``.
* **object ids** (video) are ``int`` or ``str`` (not bool, not float). One state may not hold
  both ``1`` and ``"1"``: they would be two different objects that print the same.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Tuple

import numpy as np
import torch

__all__ = ["VALID_LABELS", "as_coords", "as_labels", "check_boxes", "warn_outside", "check_obj_id",
           "as_mask_array"]

VALID_LABELS: Tuple[int, ...] = (-1, 0, 1, 2, 3)
"""Point labels SAM 2's prompt encoder knows (1 fg, 0 bg, 2/3 box corners, -1 padding)."""


def _numeric_array(x: Any, what: str) -> np.ndarray:
    """Array-like -> numeric numpy array, or TypeError naming what was received."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        arr = x.numpy()
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:  # ragged lists and the like
            raise TypeError(f"{what} must be array-like numbers, got {type(x).__name__} ({exc})") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{what} must hold numbers, got dtype {arr.dtype}"
                        + (f" (values such as {arr.reshape(-1)[:3].tolist()})" if arr.size else ""))
    if np.iscomplexobj(arr):
        raise TypeError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    return arr


def as_coords(x: Any, what: str) -> torch.Tensor:
    """Points or boxes -> float32 CPU tensor of the same shape; NaN / inf raise ValueError."""
    arr = _numeric_array(x, what)
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} holds NaN or infinite values: every coordinate must be a finite number")
    return t


def as_labels(x: Any, what: str = "labels") -> torch.Tensor:
    """Point labels -> int32 CPU tensor; every value must be an integer in :data:`VALID_LABELS`."""
    arr = _numeric_array(x, what)
    f = arr.astype(np.float64)
    bad = ~np.isfinite(f) | (f != np.round(f)) | ~np.isin(np.round(np.nan_to_num(f)), VALID_LABELS)
    if bad.any():
        shown = sorted({float(v) if not float(v).is_integer() else int(v) for v in f[bad].tolist()}, key=str)
        raise ValueError(f"{what} must be integers in {VALID_LABELS} (1 foreground click, 0 background "
                         f"click, 2/3 box corners, -1 padding), got {shown}")
    return torch.from_numpy(f.astype(np.int32))


def check_boxes(boxes: torch.Tensor, what: str = "box") -> torch.Tensor:
    """``(..., 4)`` XYXY boxes -> the same with ``x0 <= x1`` and ``y0 <= y1``.

    Flipped corners are reordered with a ``UserWarning``; zero-width / zero-height boxes warn.
    """
    b = boxes.reshape(-1, 4)
    x0 = torch.minimum(b[:, 0], b[:, 2])
    x1 = torch.maximum(b[:, 0], b[:, 2])
    y0 = torch.minimum(b[:, 1], b[:, 3])
    y1 = torch.maximum(b[:, 1], b[:, 3])
    fixed = torch.stack([x0, y0, x1, y1], dim=1)
    flipped = (fixed != b).any(dim=1)
    if flipped.any():
        i = int(flipped.nonzero()[0, 0])
        warnings.warn(f"{what} {_fmt(b[i])} has x1 < x0 or y1 < y0; its corners were reordered to "
                      f"{_fmt(fixed[i])} (boxes are (x0, y0, x1, y1) with x0 <= x1, y0 <= y1)",
                      UserWarning, stacklevel=4)
    empty = (fixed[:, 2] == fixed[:, 0]) | (fixed[:, 3] == fixed[:, 1])
    if empty.any():
        i = int(empty.nonzero()[0, 0])
        warnings.warn(f"{what} {_fmt(fixed[i])} has zero width or height: SAM sees two coinciding "
                      "corners, a point-like prompt; the mask may not be what a box would give",
                      UserWarning, stacklevel=4)
    return fixed.reshape(boxes.shape)


def _fmt(b: torch.Tensor) -> str:
    return "(" + ", ".join(f"{v:g}" for v in b.tolist()) + ")"


def warn_outside(coords: torch.Tensor, width: float, height: float, normalized: bool, what: str,
                 stacklevel: int = 4) -> None:
    """Warn when XY ``coords (..., 2)`` fall outside the frame.

    Args:
        width, height: the frame's size in pixels (used for the message; the limits are these
            when ``normalized`` is False).
        normalized: coordinates are in ``[0, 1]`` instead of pixels.
    """
    if coords.numel() == 0:
        return
    lim = torch.tensor([1.0, 1.0]) if normalized else torch.tensor([float(width), float(height)])
    c = coords.reshape(-1, 2)
    if (c < 0).any() or (c > lim).any():
        unit = "[0, 1] (normalize_coords=False)" if normalized else f"frame of {width}x{height} (W x H) pixels"
        warnings.warn(f"{what} lie partly outside the {unit}; SAM will still use them", UserWarning,
                      stacklevel=stacklevel)


def check_obj_id(obj_id: Any, existing: Iterable[Any]) -> None:
    """Refuse object ids that are not int / str, and an id that clashes with an existing one of
    the other type (``1`` vs ``"1"``): one state holds one type per number.

    Raises:
        TypeError: bool, float or any other type.
        ValueError: ``obj_id`` prints the same as an existing id of another type.
    """
    if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer, str)):
        got = "None" if obj_id is None else f"{type(obj_id).__name__} {obj_id!r}"
        raise TypeError(f"obj_id must be an int or str, got {got}")
    kind = str if isinstance(obj_id, str) else int
    for other in existing:
        other_kind = str if isinstance(other, str) else int
        if other_kind is not kind and str(other).strip() == str(obj_id).strip():
            raise ValueError(f"obj_id {obj_id!r} ({kind.__name__}) clashes with the existing obj_id {other!r} "
                             f"({other_kind.__name__}): use one type for object ids in a state, "
                             f"e.g. {other!r}")


def as_mask_array(mask: Any, what: str = "mask") -> torch.Tensor:
    """A 2D mask prompt (bool, 0/1 ints or floats) -> (H, W) bool CPU tensor.

    Floats must be finite; values other than 0 / 1 are read as ``!= 0`` (upstream's ``bool()``)
    and warned about, since a probability map thresholded at 0 is rarely what was meant.
    """
    arr = _numeric_array(mask, what)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2D (H, W), got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{what} is empty (zero size), got shape {tuple(arr.shape)}")
    if arr.dtype != bool:
        f = arr.astype(np.float64)
        if not np.isfinite(f).all():
            raise ValueError(f"{what} holds NaN or infinite values")
        if not np.isin(f, (0.0, 1.0)).all():
            warnings.warn(f"{what} holds values other than 0 and 1 (min {f.min():g}, max {f.max():g}); "
                          "every non-zero pixel counts as the object", UserWarning, stacklevel=4)
        arr = f != 0
    if not arr.any():
        warnings.warn(f"{what} is empty (no pixel set): the object is taken as absent on this frame",
                      UserWarning, stacklevel=4)
    return torch.from_numpy(np.ascontiguousarray(arr))
