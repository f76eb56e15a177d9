"""DAVIS region similarity J and boundary F-measure, numerically identical to davis2017-evaluation.

Conventions (all reproduced bit for bit; see ``shared/reference/eval.md`` and the golden README):

- **J** = |P ∩ G| / |P ∪ G| per object and frame; both empty gives 1.
- **Boundary map**: a pixel is on the boundary if it differs from its right, lower or lower-right
  neighbour; the last row compares only to the right, the last column only downwards, and the
  bottom-right pixel never is a boundary. Outside the image does not count, so the image border
  is never a boundary (an all-ones mask has no boundary).
- **F**: tolerance ``r = ceil(0.008 * hypot(H, W))`` pixels (8 at 854x480); a boundary pixel is
  matched if the other mask has a boundary pixel within the disk ``dx² + dy² <= r²``. Precision
  and recall are the matched fractions of predicted and GT boundary pixels (no predicted
  boundary: P = 1, R = 0; no GT boundary: P = 0, R = 1; neither: both 1); F = 2PR / (P + R),
  0 when P + R = 0.
- **Statistics** per object over its scored frames: Mean, Recall (fraction > 0.5) and Decay
  (mean of the first minus the last of four overlapping bins; the bin edges are cast to uint8
  as the reference does, so with 256 or more scored frames the reference's Decay is garbage or
  NaN; pass ``uint8_bins=False`` for the intended bins).

Speed, without changing a single bit of the result: each object-frame is cropped to the union
bounding box of both masks (plus the one pixel the boundary rule needs), identical masks
short-cut to J = F = 1, and the disk dilation is done exactly as a union of horizontal runs
grown by bit shifts on rows packed eight pixels per byte (no OpenCV, no scipy import cost).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple

import numpy as np

__all__ = [
    "boundary_map",
    "f_radius",
    "disk_dilate",
    "jaccard",
    "f_measure",
    "score_frame",
    "db_statistics",
]


def f_radius(height: int, width: int, bound_th: float = 0.008) -> int:
    """Boundary tolerance in pixels: ``bound_th`` itself if >= 1, else
    ``ceil(bound_th * sqrt(H² + W²))`` evaluated in float64 like the reference."""
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """DAVIS boundary pixels of a 2D mask (``bool``, same shape); see the module docstring."""
    m = np.asarray(mask).astype(bool, copy=False)
    if m.ndim != 2:
        raise ValueError(f"boundary_map expects a 2D mask, got shape {m.shape}")
    b = np.zeros(m.shape, dtype=bool)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]  # right neighbour (none in the last column)
    b[:-1, :] |= m[:-1, :] != m[1:, :]  # lower neighbour (none in the last row)
    b[:-1, :-1] |= m[:-1, :-1] != m[1:, 1:]  # lower-right (neither)
    return b


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(a: np.ndarray) -> int:
    """Number of set bits of a uint8 array."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return int(np.bitwise_count(a).sum(dtype=np.int64))
    return int(_POPCOUNT[a].sum(dtype=np.int64))


def _pack(b: np.ndarray, r: int) -> np.ndarray:
    """Pack a bool map 8 pixels per byte along rows, with ``r`` empty columns on each side so
    that horizontal growth by up to ``r`` never falls off the array."""
    h, w = b.shape
    padded = np.zeros((h, w + 2 * r), dtype=bool)
    padded[:, r : r + w] = b
    return np.packbits(padded, axis=1)


def _packed_dilate(p: np.ndarray, r: int) -> np.ndarray:
    """Disk dilation on bit-packed rows (big-endian: bit 7 of byte 0 is the leftmost pixel).

    The disk is the union over ``dy`` of horizontal runs of half-width
    ``floor(sqrt(r² - dy²))``; runs grow one pixel per step by one-bit shifts across byte
    borders, then are OR-ed in with their vertical offsets. Rows are not padded: an offset
    beyond the first or last row contributes nothing, as outside the image in cv2.dilate.
    """
    h = p.shape[0]
    need = {math.isqrt(r * r - dy * dy) for dy in range(r + 1)}
    runs = {0: p}
    cur = p
    for k in range(1, r + 1):
        nxt = cur.copy()
        nxt |= cur >> 1  # each pixel takes its left neighbour ...
        nxt[:, 1:] |= cur[:, :-1] << 7  # ... across byte borders
        nxt |= cur << 1  # and its right neighbour
        nxt[:, :-1] |= cur[:, 1:] >> 7
        cur = nxt
        if k in need:
            runs[k] = cur
    out = runs[r].copy()  # dy = 0
    for dy in range(1, min(r, h - 1) + 1):
        run = runs[math.isqrt(r * r - dy * dy)]
        out[dy:] |= run[: h - dy]  # from the row dy above
        out[: h - dy] |= run[dy:]  # from the row dy below
    return out


def disk_dilate(b: np.ndarray, radius: int) -> np.ndarray:
    """Exact binary dilation of ``b`` by the disk ``dx² + dy² <= radius²`` (cv2.dilate with
    skimage's ``disk(radius)``, pixels outside the image contributing nothing); bool, same
    shape. Works on bit-packed rows (eight pixels per byte operation)."""
    b = np.asarray(b, dtype=bool)
    r = int(radius)
    if r <= 0:
        return b.copy()
    w = b.shape[1]
    out = np.unpackbits(_packed_dilate(_pack(b, r), r), axis=1)
    return out[:, r : r + w].astype(bool)


def _bbox_crop(union: np.ndarray) -> Optional[Tuple[slice, slice]]:
    rows = np.flatnonzero(union.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(union.any(axis=0))
    h, w = union.shape
    # one extra pixel above/left (a boundary sits half a pixel towards the origin) and one
    # empty pixel below/right so the crop's last row/column behave like the image's interior
    return (
        slice(max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h)),
        slice(max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w)),
    )


def _f_from_boundaries(pb: np.ndarray, gb: np.ndarray, radius: int) -> float:
    n_fg = int(np.count_nonzero(pb))
    n_gt = int(np.count_nonzero(gb))
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        r = max(int(radius), 0)
        pp, pg = _pack(pb, r), _pack(gb, r)
        if r > 0:
            fg_match = _popcount(pp & _packed_dilate(pg, r))
            gt_match = _popcount(pg & _packed_dilate(pp, r))
        else:
            fg_match = gt_match = _popcount(pp & pg)
        precision = fg_match / float(n_fg)
        recall = gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def score_frame(
    pred: np.ndarray, gt: np.ndarray, radius: int, void: Optional[np.ndarray] = None
) -> Tuple[float, float]:
    """J and F of one object in one frame.

    Args:
        pred, gt: ``(H, W)`` boolean masks of the object.
        radius: boundary tolerance in pixels (:func:`f_radius` of the frame size).
        void: optional ``(H, W)`` bool map of pixels to ignore (unsupervised-style void: removed
            from both masks before J and the boundaries). ``None`` in the semi-supervised task.

    Returns:
        ``(J, F)`` as Python floats.
    """
    p = np.asarray(pred, dtype=bool)
    g = np.asarray(gt, dtype=bool)
    if p.shape != g.shape or p.ndim != 2:
        raise ValueError(f"pred and gt must be 2D masks of equal shape, got {p.shape} and {g.shape}")
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        p = p & keep
        g = g & keep
    crop = _bbox_crop(p | g)
    if crop is None:
        return 1.0, 1.0  # both empty
    pc, gc = p[crop], g[crop]
    inter = int(np.count_nonzero(pc & gc))
    union = int(np.count_nonzero(pc | gc))
    j = inter / union
    if inter == union:
        return j, 1.0  # identical masks have identical boundaries: P = R = 1
    return j, _f_from_boundaries(boundary_map(pc), boundary_map(gc), radius)


def jaccard(pred: np.ndarray, gt: np.ndarray, void: Optional[np.ndarray] = None) -> float:
    """Region similarity J of two ``(H, W)`` masks (both empty: 1.0)."""
    p = np.asarray(pred, dtype=bool)
    g = np.asarray(gt, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        p, g = p & keep, g & keep
    union = int(np.count_nonzero(p | g))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & g)) / union


def f_measure(
    pred: np.ndarray, gt: np.ndarray, void: Optional[np.ndarray] = None, bound_th: float = 0.008
) -> float:
    """Boundary F-measure of two ``(H, W)`` masks, tolerance from :func:`f_radius`."""
    g = np.asarray(gt, dtype=bool)
    return score_frame(pred, g, f_radius(*g.shape, bound_th=bound_th), void)[1]


def db_statistics(values: np.ndarray, uint8_bins: bool = True) -> Tuple[float, float, float]:
    """Mean, Recall and Decay of one object's per-frame scores, as the DAVIS reference.

    Args:
        values: 1D per-frame J (or F) over the object's scored frames.
        uint8_bins: cast the Decay bin edges to uint8 like the reference (exact match; the
            reference's Decay is meaningless from 256 scored frames on). ``False`` keeps them
            as integers.

    Returns:
        ``(mean, recall, decay)``; NaN where ``values`` is empty.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = float(np.nanmean(v))
        recall = float(np.nanmean(v > 0.5))
        edges = np.round(np.linspace(1, len(v), 5) + 1e-10) - 1
        if uint8_bins:
            # the reference's arithmetic: uint8 edges, and the "+ 1" wraps 255 to 0
            starts = edges.astype(np.uint8)
            ends = (starts + np.uint8(1)).astype(np.uint8)
        else:
            starts = edges.astype(np.int64)
            ends = starts + 1
        bins = [v[int(starts[i]) : int(ends[i + 1])] for i in range(4)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay
