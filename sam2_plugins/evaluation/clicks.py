"""Deterministic click simulation as RITM and SAM / SAM 2 evaluate interactive segmentation.

The next click goes to the error pixel farthest from the boundary of its error region:

1. false negatives ``FN = gt & ~pred`` and false positives ``FP = ~gt & pred`` (minus an
   optional ignore mask);
2. both are padded by one empty pixel (so the image border counts as a region boundary) and
   Euclidean-distance transformed; pixels already clicked get distance 0;
3. the click is **positive iff max(dist_FN) > max(dist_FP)** (a tie is negative), at the first
   pixel in raster order (row by row) where that maximum is reached.

With an empty prediction the first click is the GT's "centre": its pixel deepest inside the
object. RITM's ``clicker.py`` and SAM 2's ``sample_one_point_from_error_center`` both do this
(with OpenCV's exact float32 transform; scipy's float64 one picks the same pixels).
Coordinates: :class:`Click` stores ``(y, x)`` in pixels; :meth:`Clicker.points` returns
``(x, y)`` as SAM predictors expect.

NoC@t (number of clicks to reach IoU >= t), as RITM: the index of the first click whose IoU
reaches t, or ``max_clicks`` if none does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from .iou import mask_iou, to_numpy_mask

__all__ = ["Click", "Clicker", "next_click", "noc", "simulate_interaction"]


@dataclass(frozen=True)
class Click:
    """One simulated click: pixel row ``y``, column ``x``, and its polarity."""

    y: int
    x: int
    positive: bool

    @property
    def xy(self) -> Tuple[int, int]:
        return (self.x, self.y)

    @property
    def label(self) -> int:
        """SAM point label: 1 positive, 0 negative."""
        return 1 if self.positive else 0


def _edt(mask: np.ndarray, padding: bool) -> np.ndarray:
    from scipy.ndimage import distance_transform_edt  # lazy: scipy is optional for the core

    if padding:
        mask = np.pad(mask, 1, mode="constant")
    dt = distance_transform_edt(mask)
    return dt[1:-1, 1:-1] if padding else dt


def next_click(
    gt: Any,
    pred: Optional[Any] = None,
    not_clicked: Optional[np.ndarray] = None,
    ignore: Optional[Any] = None,
    padding: bool = True,
) -> Click:
    """The RITM / SAM next click for ``pred`` against ``gt`` (both ``(H, W)``, non-zero = object).

    Args:
        gt: ground-truth mask.
        pred: current prediction (``None``: empty, which gives the first click).
        not_clicked: ``(H, W)`` bool, False at pixels clicked before (they get distance 0).
        ignore: ``(H, W)`` pixels excluded from the error regions.
        padding: treat the image border as an error-region boundary (RITM and SAM default).
    """
    g = to_numpy_mask(gt)
    if g.ndim != 2:
        raise ValueError(f"gt must be an (H, W) mask, got shape {g.shape}")
    p = np.zeros_like(g) if pred is None else to_numpy_mask(pred)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} differs from gt shape {g.shape}")
    fn = g & ~p
    fp = ~g & p
    if ignore is not None:
        keep = ~to_numpy_mask(ignore)
        fn &= keep
        fp &= keep
    dt_fn = _edt(fn, padding)
    dt_fp = _edt(fp, padding)
    if not_clicked is not None:
        dt_fn = dt_fn * not_clicked
        dt_fp = dt_fp * not_clicked
    fn_max, fp_max = dt_fn.max(), dt_fp.max()
    positive = bool(fn_max > fp_max)
    dt = dt_fn if positive else dt_fp
    flat = int(np.argmax(dt))  # first maximum in raster order
    y, x = divmod(flat, g.shape[1])
    return Click(int(y), int(x), positive)


class Clicker:
    """Keeps the clicks of one interaction with one object (and which pixels were clicked)."""

    def __init__(self, gt: Any, ignore: Optional[Any] = None, padding: bool = True) -> None:
        self.gt = to_numpy_mask(gt)
        if self.gt.ndim != 2:
            raise ValueError(f"gt must be an (H, W) mask, got shape {self.gt.shape}")
        self.ignore = None if ignore is None else to_numpy_mask(ignore)
        self.padding = padding
        self.clicks: List[Click] = []
        self._not_clicked = np.ones(self.gt.shape, dtype=bool)

    def make_next_click(self, pred: Optional[Any] = None) -> Click:
        """Compute, record and return the next click for the current prediction."""
        click = next_click(self.gt, pred, self._not_clicked, self.ignore, self.padding)
        self.add(click)
        return click

    def add(self, click: Click) -> None:
        self.clicks.append(click)
        self._not_clicked[click.y, click.x] = False

    def points(self) -> np.ndarray:
        """``(N, 2)`` float32 click coordinates as ``(x, y)`` pixels."""
        return np.array([c.xy for c in self.clicks], dtype=np.float32).reshape(-1, 2)

    def labels(self) -> np.ndarray:
        """``(N,)`` int32 labels, 1 positive / 0 negative."""
        return np.array([c.label for c in self.clicks], dtype=np.int32)

    def __len__(self) -> int:
        return len(self.clicks)


def noc(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks until IoU >= ``threshold`` (``ious[i]`` = IoU after click i+1), capped
    at ``max_clicks`` when never reached within the first ``max_clicks`` clicks."""
    arr = np.asarray(ious, dtype=np.float64)[:max_clicks]
    hit = arr >= threshold
    return int(np.argmax(hit)) + 1 if hit.any() else int(max_clicks)


PredictFn = Callable[[np.ndarray, np.ndarray, Optional[Any]], Tuple[np.ndarray, Optional[Any]]]


def simulate_interaction(
    predict: PredictFn,
    gt: Any,
    max_clicks: int = 20,
    stop_iou: Optional[float] = None,
    ignore: Optional[Any] = None,
) -> Tuple[List[float], List[Click]]:
    """Run an interactive session: click, predict, click on the largest error, ...

    Args:
        predict: ``predict(points_xy (N, 2) float32, labels (N,) int32, state)`` returning
            ``(mask (H, W), state)``; ``state`` is passed back on the next call (e.g. the
            previous low-resolution logits) and is ``None`` on the first.
        gt: the object's ``(H, W)`` mask.
        max_clicks: number of clicks.
        stop_iou: stop early once the IoU reaches it (the remaining IoUs repeat the last one,
            as further clicks would not be needed).
        ignore: pixels excluded from the error regions.

    Returns:
        ``(ious, clicks)``: IoU after each click (length ``max_clicks``) and the clicks made.
    """
    clicker = Clicker(gt, ignore=ignore)
    pred: Optional[np.ndarray] = None
    state: Any = None
    ious: List[float] = []
    for _ in range(max_clicks):
        clicker.make_next_click(pred)
        mask, state = predict(clicker.points(), clicker.labels(), state)
        pred = to_numpy_mask(mask)
        ious.append(mask_iou(pred, clicker.gt))
        if stop_iou is not None and ious[-1] >= stop_iou:
            ious.extend([ious[-1]] * (max_clicks - len(ious)))
            break
    return ious, list(clicker.clicks)
