"""Conversions between FiftyOne labels and the arrays SAM 2 consumes or produces.

Coordinate conventions
----------------------
* FiftyOne boxes are *relative* ``[x, y, w, h]`` in ``[0, 1]``, origin at the image's
  top-left corner; ``Detection.mask`` is a 2-D array covering only the box.
* FiftyOne keypoints are relative ``[x, y]`` pairs; a missing point is ``[nan, nan]``.
* SAM 2 takes absolute pixel coordinates: boxes ``XYXY`` float32, points ``XY`` float32,
  in the pixel space of the original image (width ``W``, height ``H``).
* Full-image masks here are ``bool`` arrays of shape ``(H, W)``.

Box pixel bounds are rounded (not truncated) when decoding, so a box written by
:func:`mask_to_detection` decodes back to exactly the pixels it was made from.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

_NUDGE = 1e-4  # pixels; see mask_to_box_and_crop


def box_pixel_bounds(bbox: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Relative ``[x, y, w, h]`` -> integer pixel bounds ``(x0, y0, x1, y1)``, end-exclusive,
    clipped to the image."""
    x, y, w, h = (float(v) for v in bbox)
    x0 = int(round(x * width))
    y0 = int(round(y * height))
    x1 = int(round((x + w) * width))
    y1 = int(round((y + h) * height))
    x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
    y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
    return x0, y0, max(x0, x1), max(y0, y1)


def box_to_xyxy(bbox: Sequence[float], width: int, height: int) -> np.ndarray:
    """Relative ``[x, y, w, h]`` -> absolute ``XYXY`` float32 array of shape ``(4,)``.

    Continuous coordinates (not rounded): a box covering pixels 10..19 gives x0=10, x1=20,
    which is how SAM 2's box prompts are usually built from pixel masks.
    """
    if bbox is None or len(bbox) != 4:
        raise ValueError(f"expected a bounding box [x, y, w, h], received {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    return np.array([x * width, y * height, (x + w) * width, (y + h) * height], dtype=np.float32)


def keypoint_to_points(points: Iterable[Sequence[float]], width: int, height: int) -> np.ndarray:
    """Relative keypoints -> absolute ``XY`` float32 array ``(N, 2)``; NaN points are dropped."""
    out = []
    for p in points or []:
        if p is None or len(p) < 2:
            continue
        px, py = float(p[0]), float(p[1])
        if math.isnan(px) or math.isnan(py):
            continue
        out.append((px * width, py * height))
    return np.asarray(out, dtype=np.float32).reshape(-1, 2)


def detection_to_mask(det: Any, width: int, height: int) -> np.ndarray:
    """A FiftyOne ``Detection`` -> full-image ``bool`` mask ``(height, width)``.

    Uses the instance mask (``mask`` or ``mask_path``) when present, resized with
    nearest-neighbour to the box's pixel size if they differ; a detection without a mask
    is rendered as its filled box.
    """
    full = np.zeros((height, width), dtype=bool)
    if det is None or det.bounding_box is None:
        return full
    x0, y0, x1, y1 = box_pixel_bounds(det.bounding_box, width, height)
    if x1 <= x0 or y1 <= y0:
        return full
    inst = det.get_mask() if hasattr(det, "get_mask") else det.mask
    if inst is None:
        full[y0:y1, x0:x1] = True
        return full
    inst = np.asarray(inst)
    if inst.ndim == 3:
        inst = inst[..., 0]
    inst = inst.astype(bool)
    bh, bw = y1 - y0, x1 - x0
    if inst.shape != (bh, bw):
        inst = resize_nearest(inst, bh, bw)
    full[y0:y1, x0:x1] = inst
    return full


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array (pixel centres mapped, as PIL does)."""
    if mask.shape[0] == 0 or mask.shape[1] == 0:
        return np.zeros((height, width), dtype=mask.dtype)
    ys = np.minimum((np.arange(height) + 0.5) * mask.shape[0] / height, mask.shape[0] - 1).astype(int)
    xs = np.minimum((np.arange(width) + 0.5) * mask.shape[1] / width, mask.shape[1] - 1).astype(int)
    return mask[ys][:, xs]


def mask_tight_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel bounds ``(x0, y0, x1, y1)`` (end-exclusive) of the True pixels, or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mask_to_box_and_crop(
    mask: np.ndarray, fallback_bbox: Sequence[float] | None = None
) -> tuple[list[float], np.ndarray]:
    """Full-image ``bool`` mask ``(H, W)`` -> (relative tight box, box-cropped mask).

    An empty mask keeps ``fallback_bbox`` (e.g. the prompt box) with an all-False crop of that
    box's pixel size, so the object stays visible as "not found" instead of vanishing; without
    a fallback an empty mask gives a zero-size box and a ``(0, 0)`` crop.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    tight = mask_tight_box(mask)
    if tight is None:
        if fallback_bbox is not None:
            x0, y0, x1, y1 = box_pixel_bounds(fallback_bbox, width, height)
            return [float(v) for v in fallback_bbox], np.zeros((y1 - y0, x1 - x0), dtype=bool)
        return [0.0, 0.0, 0.0, 0.0], np.zeros((0, 0), dtype=bool)
    x0, y0, x1, y1 = tight
    # FiftyOne's renderer truncates (int(W * x)); shifting both edges by a 1e-4 px nudge makes
    # truncation and rounding agree, so Detection.to_segmentation() gives back these pixels.
    e = _NUDGE
    bbox = [(x0 + e) / width, (y0 + e) / height, (x1 - x0) / width, (y1 - y0) / height]
    return bbox, mask[y0:y1, x0:x1].copy()


def mask_to_detection(
    mask: np.ndarray,
    template: Any = None,
    label: str | None = None,
    **attributes: Any,
) -> Any:
    """Full-image ``bool`` mask -> ``fo.Detection`` with a box-cropped ``mask``.

    With ``template`` (a prompt ``Detection``), the result is a copy of it that keeps its
    id, label, index, confidence and custom attributes; only ``bounding_box`` and ``mask`` are
    replaced (an empty mask keeps the template's box). ``attributes`` are set on the result.
    """
    import fiftyone as fo

    fallback = None
    if template is not None and isinstance(template, fo.Detection):
        fallback = template.bounding_box
    bbox, crop = mask_to_box_and_crop(mask, fallback)
    if template is not None and isinstance(template, fo.Detection):
        det = template.copy()
        # copy() gives a new id; the issue asks that prompted objects keep theirs.
        det.id = template.id
        det.mask_path = None
        det.bounding_box = bbox
        det.mask = crop
    else:
        det = fo.Detection(label=label, bounding_box=bbox, mask=crop)
        if template is not None:
            for key in ("label", "index", "confidence"):
                if getattr(template, key, None) is not None:
                    det[key] = getattr(template, key)
            det.id = template.id
    for key, value in attributes.items():
        det[key] = value
    return det


def instance_id_map(masks: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Instance masks -> one label image ``(H, W)``: pixel value = 1 + index in ``masks``, 0 =
    background. Larger masks are painted first so small ones on top stay visible.

    dtype is uint8 when there are < 256 instances, else uint16.
    """
    dtype = np.uint8 if len(masks) < 256 else np.uint16
    out = np.zeros((height, width), dtype=dtype)
    order = sorted(range(len(masks)), key=lambda i: -int(np.count_nonzero(masks[i])))
    for i in order:
        out[np.asarray(masks[i], dtype=bool)] = i + 1
    return out


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Any 2-D / 3-D image array -> ``(H, W, 3)`` uint8 (grey repeated; 16-bit and float scaled
    by their min/max; alpha dropped)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), received {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] >= 4:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.clip((a - lo) * scale, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)
