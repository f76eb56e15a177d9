"""Mask IoU per instance and over a set (numpy; torch tensors are accepted and converted).

Both-empty convention: the IoU of an empty prediction against an empty ground truth is **1.0**
(nothing to find, nothing found), as in DAVIS's J. ``empty_value`` changes it (e.g. to NaN to
leave such pairs out of a mean, or 0.0).
"""

from __future__ import annotations

from typing import Any, Iterable, List, Sequence

import numpy as np

__all__ = ["mask_iou", "batch_iou", "mean_iou", "to_numpy_mask"]


def to_numpy_mask(mask: Any) -> np.ndarray:
    """A bool numpy view of a mask given as numpy array, torch tensor, list or PIL image."""
    if hasattr(mask, "detach") and hasattr(mask, "cpu"):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask).astype(bool, copy=False)


def mask_iou(pred: Any, gt: Any, empty_value: float = 1.0) -> float:
    """IoU of two same-shape masks (non-zero = foreground).

    Returns:
        ``|P ∩ G| / |P ∪ G|``, or ``empty_value`` when both are empty.

    Raises:
        ValueError: the shapes differ.
    """
    p, g = to_numpy_mask(pred), to_numpy_mask(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
    union = int(np.count_nonzero(p | g))
    if union == 0:
        return float(empty_value)
    return int(np.count_nonzero(p & g)) / union


def batch_iou(preds: Any, gts: Any, empty_value: float = 1.0) -> np.ndarray:
    """IoU of ``N`` prediction/GT pairs given as ``(N, H, W)`` stacks; returns float64 ``(N,)``."""
    p, g = to_numpy_mask(preds), to_numpy_mask(gts)
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"expected two (N, H, W) stacks of equal shape, got {p.shape} and {g.shape}")
    inter = np.count_nonzero(p & g, axis=(1, 2)).astype(np.float64)
    union = np.count_nonzero(p | g, axis=(1, 2)).astype(np.float64)
    out = np.full(len(p), float(empty_value))
    nz = union > 0
    out[nz] = inter[nz] / union[nz]
    return out


def mean_iou(pairs: Iterable[Sequence[Any]], empty_value: float = 1.0) -> float:
    """mIoU over a set: the mean of per-instance IoUs of ``(pred, gt)`` pairs (every instance
    weighs the same, whatever its size); NaN values (``empty_value=nan``) are left out."""
    vals: List[float] = [mask_iou(p, g, empty_value) for p, g in pairs]
    if not vals:
        raise ValueError("mean_iou needs at least one (pred, gt) pair")
    arr = np.asarray(vals, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")
