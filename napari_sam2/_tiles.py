"""Tiled mode for planes larger than the model's input: overlapping tiles, clicks / boxes /
mask prompts decoded in the tile(s) that hold them.

SAM 2 resizes every frame to its input size (1024² for the official models, 256² for the demo
model), so on a 4096² plane a 16 px nucleus shrinks to 4 px and is lost. Tiled mode reads the
plane as overlapping windows of ``size`` pixels (``overlap`` pixels shared with each
neighbour), each embedded on its own (embeddings go through the same memory / disk cache as
whole frames, keyed by the window's pixels). A lazy array (dask, zarr) is only ever read one
window at a time.

* A prompt whose extent fits in a tile is decoded in the grid tile holding it with the widest
  margin (or, when it straddles a seam, in a tile-sized window centred on it).
* A larger prompt (a long box, clicks far apart) is decoded in every tile it touches, each with
  the part of the prompt inside it, and the pieces are joined.

Automatic mode per tile and the stitching of objects across seams are in ``_automatic.py``.
Pure numpy / torch; no napari, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np

from ._prompts import FramePrompt
from ._region import RegionMask

__all__ = ["TileSettings", "TileGrid", "Box", "prompt_extent", "crop_prompt", "place", "union"]

Box = Tuple[int, int, int, int]
"""(y0, y1, x0, x1), end-exclusive, in plane pixels."""


@dataclass(frozen=True)
class TileSettings:
    """Tiled mode: on/off, tile side and overlap in image pixels.

    ``size`` 0 means the model's input size (1024 for the official models). The overlap
    should exceed the largest object so that every object lies whole in some tile.
    """

    enabled: bool = False
    size: int = 0
    overlap: int = 128

    def grid(self, hw: Tuple[int, int], model_size: int) -> "TileGrid":
        size = int(self.size or model_size)
        if size < 16:
            raise ValueError(f"tile size must be at least 16 pixels, got {size}")
        if not 0 <= self.overlap < size:
            raise ValueError(f"tile overlap must be in [0, tile size {size}), got {self.overlap}")
        return TileGrid(hw, size, int(self.overlap))


def _starts(n: int, size: int, overlap: int) -> List[int]:
    if n <= size:
        return [0]
    stride = size - overlap
    out = list(range(0, n - size, stride))
    out.append(n - size)  # the last tile ends at the border
    return out


@dataclass(frozen=True)
class TileGrid:
    """The overlapping tiles of an (H, W) plane."""

    hw: Tuple[int, int]
    size: int
    overlap: int

    @property
    def ys(self) -> List[int]:
        return _starts(self.hw[0], self.size, self.overlap)

    @property
    def xs(self) -> List[int]:
        return _starts(self.hw[1], self.size, self.overlap)

    def tile(self, y0: int, x0: int) -> Box:
        return y0, min(y0 + self.size, self.hw[0]), x0, min(x0 + self.size, self.hw[1])

    def __iter__(self) -> Iterator[Box]:
        for y0 in self.ys:
            for x0 in self.xs:
                yield self.tile(y0, x0)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def inner_edges(self, t: Box) -> Tuple[bool, bool, bool, bool]:
        """Which sides of tile ``t`` (top, bottom, left, right) are seams, not image borders."""
        y0, y1, x0, x1 = t
        return y0 > 0, y1 < self.hw[0], x0 > 0, x1 < self.hw[1]

    def window_for(self, ext: Box) -> Optional[Box]:
        """A tile that holds ``ext`` whole: the grid tile with the widest margin around it,
        else a tile-sized window centred on it (clipped to the plane); None when ``ext`` is
        larger than a tile."""
        ey0, ey1, ex0, ex1 = ext
        if ey1 - ey0 > self.size or ex1 - ex0 > self.size:
            return None
        best, best_margin = None, -1
        for t in self:
            y0, y1, x0, x1 = t
            if y0 <= ey0 and ey1 <= y1 and x0 <= ex0 and ex1 <= x1:
                margin = min(ey0 - y0, y1 - ey1, ex0 - x0, x1 - ex1)
                if margin > best_margin:
                    best, best_margin = t, margin
        if best is not None and best_margin >= min(self.overlap // 4, 16):
            return best
        cy, cx = (ey0 + ey1) // 2, (ex0 + ex1) // 2
        h, w = min(self.size, self.hw[0]), min(self.size, self.hw[1])
        y0 = int(np.clip(cy - h // 2, 0, self.hw[0] - h))
        x0 = int(np.clip(cx - w // 2, 0, self.hw[1] - w))
        return y0, y0 + h, x0, x0 + w

    def overlapping(self, ext: Box) -> List[Box]:
        """Grid tiles that intersect ``ext``."""
        ey0, ey1, ex0, ex1 = ext
        return [t for t in self if t[0] < ey1 and ey0 < t[1] and t[2] < ex1 and ex0 < t[3]]


def prompt_extent(fp: FramePrompt, hw: Tuple[int, int]) -> Box:
    """The box around everything in a prompt (clicks, box, mask), plus a few pixels."""
    ys: List[float] = []
    xs: List[float] = []
    if len(fp.points):
        xs += fp.points[:, 0].tolist()
        ys += fp.points[:, 1].tolist()
    if fp.box is not None:
        xs += [float(fp.box[0]), float(fp.box[2])]
        ys += [float(fp.box[1]), float(fp.box[3])]
    if fp.mask is not None:
        r = RegionMask.from_full(np.asarray(fp.mask, bool))
        if r.crop.size:
            y0, y1, x0, x1 = r.bbox
            ys += [y0, y1 - 1]
            xs += [x0, x1 - 1]
    if not ys:
        raise ValueError("an empty prompt has no extent")
    pad = 2
    return (max(0, int(np.floor(min(ys))) - pad), min(hw[0], int(np.ceil(max(ys))) + 1 + pad),
            max(0, int(np.floor(min(xs))) - pad), min(hw[1], int(np.ceil(max(xs))) + 1 + pad))


def crop_prompt(fp: FramePrompt, win: Box) -> FramePrompt:
    """The part of ``fp`` inside window ``win``, in window coordinates: clicks inside it, the
    box clipped to it, the mask cropped."""
    y0, y1, x0, x1 = win
    pts, lbl = fp.points, fp.labels
    if len(pts):
        inside = (pts[:, 0] >= x0) & (pts[:, 0] < x1) & (pts[:, 1] >= y0) & (pts[:, 1] < y1)
        pts = (pts[inside] - np.asarray([x0, y0], np.float32)).astype(np.float32)
        lbl = lbl[inside]
    box = None
    if fp.box is not None:
        bx0, by0, bx1, by1 = (float(v) for v in fp.box)
        cx0, cy0, cx1, cy1 = max(bx0, x0), max(by0, y0), min(bx1, x1 - 1), min(by1, y1 - 1)
        if cx0 < cx1 and cy0 < cy1:
            box = np.asarray([cx0 - x0, cy0 - y0, cx1 - x0, cy1 - y0], np.float32)
    mask = None
    if fp.mask is not None:
        m = np.asarray(fp.mask, bool)[y0:y1, x0:x1]
        mask = m if m.any() else None
    return FramePrompt(pts, lbl, box, mask)


def place(region: RegionMask, win: Box, hw: Tuple[int, int]) -> RegionMask:
    """A mask of window ``win`` as a mask of the whole (H, W) plane."""
    if not region.crop.size:
        return RegionMask(np.zeros((0, 0), bool), (0, 0), hw)
    return RegionMask(region.crop, (region.offset[0] + win[0], region.offset[1] + win[2]), hw)


def union(parts: List[RegionMask], hw: Tuple[int, int]) -> RegionMask:
    """The union of masks of one (H, W) plane, as a tight :class:`RegionMask`."""
    parts = [p for p in parts if p.crop.size]
    if not parts:
        return RegionMask(np.zeros((0, 0), bool), (0, 0), hw)
    y0 = min(p.bbox[0] for p in parts)
    y1 = max(p.bbox[1] for p in parts)
    x0 = min(p.bbox[2] for p in parts)
    x1 = max(p.bbox[3] for p in parts)
    out = np.zeros((y1 - y0, x1 - x0), bool)
    for p in parts:
        py0, py1, px0, px1 = p.bbox
        out[py0 - y0:py1 - y0, px0 - x0:px1 - x0] |= p.crop
    return RegionMask(out, (y0, x0), hw).tight()


def predict_tiled(fp: FramePrompt, grid: TileGrid, encode: Callable[[Box], None],
                  decode: Callable[[FramePrompt], Tuple[RegionMask, float]]) -> Tuple[RegionMask, float]:
    """One object's mask on a tiled plane.

    Args:
        fp: the object's prompt in plane pixels.
        grid: the plane's tiles.
        encode: makes a window the model's current frame (reads and embeds it, or takes its
            cached embedding).
        decode: the mask of a prompt given in the current window's pixels (a mask of the
            window).

    Returns:
        The mask of the whole plane and its predicted IoU (the mean over tiles when the prompt
        spans several).
    """
    hw = grid.hw
    ext = prompt_extent(fp, hw)
    win = grid.window_for(ext)
    if win is not None:
        encode(win)
        region, iou = decode(crop_prompt(fp, win))
        return place(region, win, hw), iou
    parts, ious = [], []
    for t in grid.overlapping(ext):
        local = crop_prompt(fp, t)
        if not (np.any(local.labels == 1) or local.box is not None or local.mask is not None):
            continue  # nothing of the object's positive prompts in this tile
        encode(t)
        region, iou = decode(local)
        parts.append(place(region, t, hw))
        ious.append(iou)
    return union(parts, hw), float(np.mean(ious)) if ious else 0.0
