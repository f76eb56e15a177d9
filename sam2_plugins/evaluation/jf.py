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

Speed, without changing a single bit of the result:

- each object-frame is cropped to the union bounding box of both masks (plus the one pixel the
  boundary rule needs); with several objects, a frame is cropped once to all of them, then to
  each object; identical masks short-cut to J = F = 1;
- both masks are packed 64 pixels per ``uint64`` word, side by side in the same rows
  (prediction words, then GT words), so every later step is one numpy call for the pair;
- boundary maps are XORs of the words with their right / lower / lower-right neighbours;
- the disk dilation is exact: the disk is the union over ``dy`` of horizontal runs of
  half-width ``isqrt(r² - dy²)``; runs grow by word-carrying bit shifts (doubling while that
  stays gap-free), then are OR-ed in with their vertical offsets (about 60 calls, each on a
  few thousand words for a large DAVIS object);
- matches are counted with a popcount of ``boundary & dilated other boundary``.

No OpenCV and no scipy (their import alone costs more than scoring a DAVIS sequence).
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import List, Optional, Sequence, Tuple, cast

import numpy as np

__all__ = [
    "boundary_map",
    "f_radius",
    "disk_dilate",
    "jaccard",
    "f_measure",
    "score_frame",
    "score_labels",
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
_U64 = np.dtype("<u8")


def _popcount(a: np.ndarray) -> int:
    """Number of set bits of an unsigned integer array."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return int(np.bitwise_count(a).sum(dtype=np.int64))
    return int(_POPCOUNT[np.ascontiguousarray(a).view(np.uint8)].sum(dtype=np.int64))


def _words_per_row(w: int, r: int) -> int:
    # r empty columns on both sides (runs grown by up to r stay in their own row) and one spare
    # column after the last for the boundary rule
    return -(-(w + 2 * r + 1) // 64)


def _as_words(padded: np.ndarray) -> np.ndarray:
    """Pack a bool map ``(..., 64 n)`` into uint64 words ``(..., n)``, column ``c`` at bit
    ``c % 64`` of word ``c // 64`` (least significant bit first)."""
    words = np.packbits(padded, axis=-1, bitorder="little").view(_U64)
    return words if sys.byteorder == "little" else words.astype(np.uint64)


def _grow(x: np.ndarray, s: int) -> np.ndarray:
    """``x`` (1D words, rows laid end to end) OR-ed with itself moved ``s`` columns left and
    right, ``1 <= s <= 63``, carrying bits across word borders. Rows never exchange bits as
    long as every row has at least the grown width of empty columns at both ends."""
    up, down = np.uint64(s), np.uint64(64 - s)
    right = x << up  # towards higher columns
    right[1:] |= x[:-1] >> down
    left = x >> up
    left[:-1] |= x[1:] << down
    right |= left
    right |= x
    return right


def _dilate64(x: np.ndarray, r: int, row: int) -> np.ndarray:
    """Exact disk dilation (``dx² + dy² <= r²``) of 1D packed rows of ``row`` words each, with
    ``r`` empty columns at both ends of every row; rows beyond the first and last contribute
    nothing, as outside the image."""
    h = x.size // row
    dys = range(min(r, h - 1) + 1)
    width = [math.isqrt(r * r - dy * dy) for dy in dys]
    runs = {0: x}
    cur, c = x, 0
    for t in sorted(set(width)):
        while c < t:
            # a run of half-width c moved by s <= 2c + 1 leaves no gap: doubling steps
            s = min(t - c, 2 * c + 1, 63)
            cur = _grow(cur, s)
            c += s
        runs[t] = cur
    out = runs[width[0]].copy()
    for dy in dys[1:]:
        run, k = runs[width[dy]], dy * row
        out[k:] |= run[:-k]  # from the row dy above
        out[:-k] |= run[k:]  # from the row dy below
    return out


def disk_dilate(b: np.ndarray, radius: int) -> np.ndarray:
    """Exact binary dilation of a 2D map ``b`` by the disk ``dx² + dy² <= radius²``
    (cv2.dilate with skimage's ``disk(radius)``, pixels outside the image contributing
    nothing); bool, same shape."""
    b = np.asarray(b, dtype=bool)
    r = int(radius)
    if r <= 0:
        return b.copy()
    h, w = b.shape
    n = _words_per_row(w, r)
    padded = np.zeros((h, 64 * n), dtype=bool)
    padded[:, r : r + w] = b
    words = _dilate64(_as_words(padded).reshape(-1), r, n).reshape(h, n)
    if sys.byteorder != "little":
        words = words.astype(_U64)
    bits = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")
    return bits[:, r : r + w].astype(bool)


def _bbox(m: np.ndarray) -> Optional[Tuple[slice, slice]]:
    """Crop of the non-zero pixels of ``m`` with one extra pixel above/left (a boundary sits
    half a pixel towards the origin) and one below/right (an empty row/column, so the crop's
    last row and column follow the image's interior rule), clipped to ``m``."""
    rows = np.flatnonzero(m.max(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m[rows[0] : rows[-1] + 1].max(axis=0))  # only the rows that matter
    h, w = m.shape
    return (
        slice(max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h)),
        slice(max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w)),
    )


def _f_value(n_fg: int, n_gt: int, fg_match: int, gt_match: int) -> float:
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = fg_match / float(n_fg)
        recall = gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _jf_cropped(pc: np.ndarray, gc: np.ndarray, radius: int) -> Tuple[float, float]:
    """J and F of two bool masks already cropped by :func:`_bbox` (or whole images)."""
    inter = int(np.count_nonzero(pc & gc))
    union = int(np.count_nonzero(pc | gc))
    if union == 0:
        return 1.0, 1.0  # both empty
    j = inter / union
    if inter == union:
        return j, 1.0  # identical masks have identical boundaries: P = R = 1
    r = max(int(radius), 0)
    h, w = pc.shape
    n = _words_per_row(w, r)
    # Both masks side by side in one packed array (prediction in words [0, n), GT in [n, 2n)
    # of each row), so every step below is one numpy call for the pair. The spare row and
    # column repeat the last ones: comparing with them finds no boundary, which is the rule
    # at the image border, and inside the image the crop's last row/column are empty anyway.
    padded = np.zeros((h + 1, 2, 64 * n), dtype=bool)
    padded[:h, 0, r : r + w] = pc
    padded[:h, 1, r : r + w] = gc
    padded[:h, :, r + w] = padded[:h, :, r + w - 1]
    padded[h] = padded[h - 1]
    row = 2 * n
    x = _as_words(padded).reshape(-1)
    right = x >> np.uint64(1)  # at each column, the value of its right neighbour
    right[:-1] |= x[1:] << np.uint64(63)
    k = h * row
    b = x[:k] ^ right[:k]  # right neighbour
    b |= x[:k] ^ x[row:]  # lower neighbour
    b |= x[:k] ^ right[row:]  # lower-right neighbour
    b = b.reshape(h, 2, n)
    b &= _column_mask(n, r, w)  # only the crop's own columns
    n_fg, n_gt = _popcount(b[:, 0]), _popcount(b[:, 1])
    if n_fg == 0 or n_gt == 0:
        return j, _f_value(n_fg, n_gt, 0, 0)
    grown = _dilate64(b.reshape(-1), r, row).reshape(h, 2, n) if r > 0 else b
    fg_match = _popcount(b[:, 0] & grown[:, 1])
    gt_match = _popcount(b[:, 1] & grown[:, 0])
    return j, _f_value(n_fg, n_gt, fg_match, gt_match)


_MASKS: dict = {}


def _column_mask(n: int, r: int, w: int) -> np.ndarray:
    """``(n,)`` words with the bits of columns ``r .. r + w - 1`` set (cached)."""
    key = (n, r, w)
    m = _MASKS.get(key)
    if m is None:
        cols = np.zeros(64 * n, dtype=bool)
        cols[r : r + w] = True
        m = _MASKS[key] = _as_words(cols)
        if len(_MASKS) > 4096:
            _MASKS.clear()
    return m


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
    crop = _bbox(p | g)
    if crop is None:
        return 1.0, 1.0  # both empty
    return _jf_cropped(p[crop], g[crop], radius)


def score_labels(
    pred: np.ndarray, gt: np.ndarray, objects: Sequence[int], radius: int
) -> List[Tuple[float, float]]:
    """J and F of several objects of one frame given as label maps; the same numbers as
    ``[score_frame(pred == k, gt == k, radius) for k in objects]``, in less time.

    Args:
        pred, gt: ``(H, W)`` integer label maps (0 background, ``k`` object ``k``; void
            already removed by the caller).
        objects: object ids to score.
        radius: boundary tolerance in pixels.

    Returns:
        One ``(J, F)`` pair of Python floats per object, in the order of ``objects``.
    """
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape or p.ndim != 2:
        raise ValueError(f"pred and gt must be 2D label maps of equal shape, got {p.shape} and {g.shape}")
    both = (p != 0) | (g != 0) if p.dtype.kind == "b" or g.dtype.kind == "b" else p | g
    crop = _bbox(both)
    if crop is None:
        return [(1.0, 1.0)] * len(objects)  # no object in either map
    pc, gc = p[crop], g[crop]
    out = []
    for k in objects:
        pk, gk = pc == k, gc == k
        if len(objects) > 1:
            # objects rarely span the same box: crop again to this one (inside the frame crop,
            # clipping to it is clipping to the image, so the margins stay right)
            sub = _bbox(pk | gk)
            if sub is None:
                out.append((1.0, 1.0))
                continue
            pk, gk = pk[sub], gk[sub]
        out.append(_jf_cropped(pk, gk, radius))
    return out


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
    return score_frame(pred, g, f_radius(*cast(Tuple[int, int], g.shape), bound_th=bound_th), void)[1]


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
