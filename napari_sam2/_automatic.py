"""Automatic mode ("segment everything") on one frame, whole or tiled, and why a result is empty.

* Whole frame: the core's :class:`~sam2_plugins.SAM2AutomaticMaskGenerator` on the frame.
* Tiled (see ``_tiles.py``): the generator runs on every tile; masks are moved to plane
  coordinates, masks touching a seam (a tile side inside the image) are set aside, the others
  are de-duplicated across the overlaps (greedy non-maximum suppression on mask IoU, best
  predicted IoU x stability first). Seam pieces that no kept mask covers are then stitched:
  pieces from different tiles that overlap are joined into one object.
* An empty result is explained: the generator runs again with both thresholds at 0 on the
  frame (or on the tiles with the most contrast), and :func:`diagnose` says which threshold
  removed the candidates and which values would keep about half of them.

Pure numpy / torch; no napari, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ._region import RegionMask
from ._tiles import Box, TileGrid, place

__all__ = ["AutoParams", "AutoResult", "Candidate", "automatic_frame", "diagnose", "merge_tiles"]


@dataclass(frozen=True)
class AutoParams:
    """Settings of automatic mode (the generator's own names and meaning)."""

    points_per_side: int = 16
    pred_iou_thresh: float = 0.7
    stability_score_thresh: float = 0.8
    min_mask_region_area: int = 0

    def kwargs(self) -> Dict[str, Any]:
        return {"points_per_side": int(self.points_per_side), "pred_iou_thresh": float(self.pred_iou_thresh),
                "stability_score_thresh": float(self.stability_score_thresh),
                "min_mask_region_area": int(self.min_mask_region_area)}


@dataclass
class AutoResult:
    """What automatic mode found on one frame.

    ``labels``: (H, W) int32, 0 background, objects 1..n (largest painted first). When empty,
    ``reason`` says which filter removed the candidates and ``suggestion`` holds thresholds
    that would keep some (None when lowering them cannot help).
    """

    labels: np.ndarray
    n_masks: int
    tiles: int = 1
    reason: str = ""
    suggestion: Optional[AutoParams] = None
    candidates: Optional[int] = None
    masks: List[RegionMask] = field(default_factory=list, repr=False)

    @property
    def message(self) -> str:
        where = f" ({self.tiles} tiles)" if self.tiles > 1 else ""
        if self.n_masks:
            return f"automatic: {self.n_masks} masks{where}"
        return f"automatic: 0 masks{where}: {self.reason}"


@dataclass
class Candidate:
    """One generated mask in plane coordinates; ``edge``: it touches a seam of its tile."""

    region: RegionMask
    iou: float
    stability: float
    edge: bool = False
    tile: int = 0
    window: Optional[Box] = None  # the tile it was found in

    @property
    def score(self) -> float:
        return self.iou * self.stability

    @property
    def area(self) -> int:
        return int(self.region.crop.sum())


def _records_to_candidates(records: Sequence[Dict[str, Any]], win: Box, hw: Tuple[int, int],
                           seams: Tuple[bool, bool, bool, bool], tile: int) -> List[Candidate]:
    out = []
    h, w = win[1] - win[0], win[3] - win[2]
    for r in records:
        reg = RegionMask.from_full(np.asarray(r["segmentation"], bool))
        if not reg.crop.size:
            continue
        y0, y1, x0, x1 = reg.bbox
        edge = (seams[0] and y0 == 0) or (seams[1] and y1 == h) or (seams[2] and x0 == 0) or (seams[3] and x1 == w)
        out.append(Candidate(place(reg, win, hw), float(r["predicted_iou"]), float(r["stability_score"]),
                             bool(edge), tile, win))
    return out


def _inter(a: RegionMask, b: RegionMask) -> int:
    ay0, ay1, ax0, ax1 = a.bbox
    by0, by1, bx0, bx1 = b.bbox
    y0, y1, x0, x1 = max(ay0, by0), min(ay1, by1), max(ax0, bx0), min(ax1, bx1)
    if y0 >= y1 or x0 >= x1:
        return 0
    ca = a.crop[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0]
    cb = b.crop[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    return int(np.count_nonzero(ca & cb))


def _counts_in(a: RegionMask, b: RegionMask, win: Box) -> Tuple[int, int, int]:
    """Pixels of ``a``, of ``b`` and of both inside window ``win``."""
    def crop(r: RegionMask) -> np.ndarray:
        ry0, ry1, rx0, rx1 = r.bbox
        out = np.zeros((win[1] - win[0], win[3] - win[2]), bool)
        y0, y1, x0, x1 = max(ry0, win[0]), min(ry1, win[1]), max(rx0, win[2]), min(rx1, win[3])
        if y0 < y1 and x0 < x1:
            out[y0 - win[0]:y1 - win[0], x0 - win[2]:x1 - win[2]] = r.crop[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0]
        return out
    ca, cb = crop(a), crop(b)
    return int(ca.sum()), int(cb.sum()), int((ca & cb).sum())


def _same_object(a: "Candidate", b: "Candidate") -> bool:
    """Two seam pieces from different tiles are one object when they agree where both tiles
    saw the image (IoU > 0.5 inside the tiles' shared window)."""
    if a.tile == b.tile or a.window is None or b.window is None:
        return False
    wa, wb = a.window, b.window
    win = (max(wa[0], wb[0]), min(wa[1], wb[1]), max(wa[2], wb[2]), min(wa[3], wb[3]))
    if win[0] >= win[1] or win[2] >= win[3]:
        return False
    na, nb, both = _counts_in(a.region, b.region, win)
    return both > 0 and both / (na + nb - both) > 0.5


class _Buckets:
    """Masks indexed by the grid cells their boxes touch (neighbour look-ups only)."""

    def __init__(self, cell: int) -> None:
        self.cell = max(int(cell), 1)
        self.cells: Dict[Tuple[int, int], List[int]] = {}

    def _keys(self, r: RegionMask) -> List[Tuple[int, int]]:
        y0, y1, x0, x1 = r.bbox
        c = self.cell
        return [(i, j) for i in range(y0 // c, (y1 - 1) // c + 1) for j in range(x0 // c, (x1 - 1) // c + 1)]

    def add(self, idx: int, r: RegionMask) -> None:
        for k in self._keys(r):
            self.cells.setdefault(k, []).append(idx)

    def near(self, r: RegionMask) -> List[int]:
        return sorted({i for k in self._keys(r) for i in self.cells.get(k, ())})


def merge_tiles(cands: List[Candidate], cell: int, nms_iou: float = 0.5, cover: float = 0.5) -> List[RegionMask]:
    """De-duplicate masks across tile overlaps and stitch objects cut by seams (module docstring)."""
    kept: List[RegionMask] = []
    index = _Buckets(cell)
    for c in sorted((c for c in cands if not c.edge), key=lambda c: -c.score):
        a = c.area
        dup = False
        for i in index.near(c.region):
            inter = _inter(c.region, kept[i])
            if inter and inter / (a + kept[i].crop.sum() - inter) > nms_iou:
                dup = True
                break
        if not dup:
            index.add(len(kept), c.region)
            kept.append(c.region)
    # seam pieces not already covered by a whole mask
    pieces = []
    for c in sorted((c for c in cands if c.edge), key=lambda c: -c.score):
        if any(_inter(c.region, kept[i]) > cover * c.area for i in index.near(c.region)):
            continue
        pieces.append(c)
    parent = list(range(len(pieces)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pidx = _Buckets(cell)
    for i, c in enumerate(pieces):
        for j in pidx.near(c.region):
            if _same_object(c, pieces[j]):
                parent[find(i)] = find(j)
        pidx.add(i, c.region)
    groups: Dict[int, List[RegionMask]] = {}
    for i, c in enumerate(pieces):
        groups.setdefault(find(i), []).append(c.region)
    from ._tiles import union

    for regions in groups.values():
        joined = union(regions, regions[0].shape) if len(regions) > 1 else regions[0]
        if not any(_inter(joined, kept[i]) > cover * joined.crop.sum() for i in index.near(joined)):
            index.add(len(kept), joined)
            kept.append(joined)
    return kept


def paint(masks: List[RegionMask], hw: Tuple[int, int]) -> np.ndarray:
    """(H, W) int32 labels, largest mask first so that small ones stay visible on top."""
    out = np.zeros(hw, np.int32)
    for i, m in enumerate(sorted(masks, key=lambda m: -int(m.crop.sum())), start=1):
        y0, y1, x0, x1 = m.bbox
        out[y0:y1, x0:x1][m.crop] = i
    return out


def diagnose(ious: np.ndarray, stabs: np.ndarray, params: AutoParams) -> Tuple[str, Optional[AutoParams]]:
    """Why no mask passed, from the candidates a run with both thresholds at 0 proposed
    (their predicted IoUs and stability scores), and thresholds that would keep about half."""
    n = len(ious)
    if n == 0:
        return (f"the model proposed no mask at all from {params.points_per_side}² points; try more points "
                "per side, other contrast limits, or (for small objects in a large image) tiled mode", None)
    t_iou, t_st = params.pred_iou_thresh, params.stability_score_thresh
    p_iou = ious > t_iou
    p_both = p_iou & (stabs >= t_st)

    def floor05(v: float) -> float:
        return float(max(0.0, np.floor(v * 20) / 20))

    new_iou = min(floor05(float(np.quantile(ious, 0.5))), floor05(t_iou - 0.05)) if t_iou > 0 else 0.0
    keep = ious > new_iou
    new_st = (min(floor05(float(np.quantile(stabs[keep], 0.5))), floor05(t_st - 0.05))
              if keep.any() and t_st > 0 else 0.0)
    if not p_iou.any():
        reason = (f"the predicted-IoU threshold {t_iou:.2f} removed all {n} candidates "
                  f"(best predicted IoU {ious.max():.2f})")
        new_st = t_st if ((ious > new_iou) & (stabs >= t_st)).any() else new_st
    elif not p_both.any():
        reason = (f"the predicted-IoU threshold {t_iou:.2f} kept {int(p_iou.sum())} of {n} candidates and the "
                  f"stability threshold {t_st:.2f} removed them all (best stability {stabs[p_iou].max():.2f})")
        new_iou = t_iou
    else:
        return (f"{int(p_both.sum())} of {n} candidates pass both thresholds, but none survived the minimum "
                f"region area of {params.min_mask_region_area} px: lower it", replace(params, min_mask_region_area=0))
    return reason, replace(params, pred_iou_thresh=new_iou, stability_score_thresh=new_st)


def automatic_frame(records_of: Callable[[np.ndarray, AutoParams], List[Dict[str, Any]]],
                    read: Callable[[Optional[Box]], np.ndarray], hw: Tuple[int, int], params: AutoParams,
                    grid: Optional[TileGrid] = None) -> Iterator[Any]:
    """Generator: segment everything on one frame (whole, or per tile of ``grid``).

    Args:
        records_of: the generator's records of an RGB image with given settings.
        read: the (h, w, 3) uint8 pixels of a window (None: the whole frame).

    Yields:
        ``(done, total)`` tiles as they finish, then the :class:`AutoResult` (last item).
    """
    tiles = list(grid) if grid is not None else [(0, hw[0], 0, hw[1])]
    cands: List[Candidate] = []
    contrast: List[Tuple[float, Box]] = []
    for i, t in enumerate(tiles):
        rgb = read(t if grid is not None else None)
        contrast.append((float(rgb.std()), t))
        seams = grid.inner_edges(t) if grid is not None else (False,) * 4
        cands += _records_to_candidates(records_of(rgb, params), t, hw, seams, i)
        yield (i + 1, len(tiles))
    masks = merge_tiles(cands, grid.size if grid is not None else max(hw)) if grid is not None \
        else [c.region for c in cands]
    result = AutoResult(paint(masks, hw), len(masks), len(tiles), masks=masks)
    if not masks:
        probe = AutoParams(params.points_per_side, 0.0, 0.0, 0)
        ious, stabs = [], []
        for _, t in sorted(contrast, key=lambda c: -c[0])[:4]:  # the tiles with the most contrast
            for r in records_of(read(t if grid is not None else None), probe):
                ious.append(r["predicted_iou"])
                stabs.append(r["stability_score"])
        result.reason, result.suggestion = diagnose(np.asarray(ious, float), np.asarray(stabs, float), params)
        result.candidates = len(ious)
    yield result
