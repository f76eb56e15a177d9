"""How a clip's frames become the model's square S×S input: native-scale crops, or squashing.

``resize="crop"`` (the default) keeps the data's pixel size, times ``scale``: training takes a
random S×S window (with a random extra zoom from ``scale_jitter``), validation cuts the frame
into a fixed grid of S×S tiles. Frames smaller than the window are padded with black
(background in the masks). Nuclei that span 20 pixels in the data span 20 pixels in the
model's input, as they do when the predictors run on S×S windows of the data.

``resize="squash"`` resizes the whole frame to S×S without keeping its aspect ratio, which is
what the predictors do to a whole frame at inference and how SAM 2 itself was trained (fine
for natural videos; on a large microscopy image it shrinks small objects away).

Windows are given in source pixels, as ``(y0, x0, h, w)``; masks are resized with nearest
neighbour so ids never blend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import FrozenSet, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Geometry", "View", "train_view", "eval_views", "apply_view", "squash_clip"]

RESIZE_MODES = ("crop", "squash")


@dataclass(frozen=True)
class Geometry:
    """Attributes:
        resize: ``"crop"`` (native scale × ``scale``, S×S windows) or ``"squash"``.
        scale: zoom applied to the data before cropping (2: objects twice as large; use it
            when objects are much smaller or larger than SAM's usual few dozen pixels).
        scale_jitter: training only: an extra zoom drawn log-uniformly in ``[low, high]``
            (e.g. ``(0.8, 1.25)``), so the model sees objects at a range of sizes.
    """

    resize: str = "crop"
    scale: float = 1.0
    scale_jitter: Tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        lo, hi = (float(v) for v in self.scale_jitter)
        if not 0 < lo <= hi:
            raise ValueError(f"scale_jitter must be (low, high) with 0 < low <= high, got "
                             f"{self.scale_jitter}")
        object.__setattr__(self, "scale_jitter", (lo, hi))


@dataclass(frozen=True)
class View:
    """A window of the source frames and where it lands in the S×S input.

    ``(y0, x0, h, w)``: the window in source pixels; ``scale``: its zoom; ``(py, px)``: the
    offset of the zoomed window inside the padded S×S input; ``objects``: when set, the only
    object ids to use (validation: those whose frame-0 centroid lies in this tile's share of
    the frame, so an object cut by a tile border is scored once).
    """

    y0: int
    x0: int
    h: int
    w: int
    scale: float
    py: int = 0
    px: int = 0
    objects: Optional[FrozenSet[int]] = None


def _side(size: int, scale: float) -> int:
    return max(1, int(round(size / scale)))


def train_view(ids0: np.ndarray, size: int, geom: Geometry, gen: torch.Generator,
               tries: int = 5) -> View:
    """A random training window of a frame whose frame-0 ids are ``ids0`` (H, W).

    The window is placed uniformly; up to ``tries`` placements are drawn until one holds an
    object on frame 0, after which the window is centred on a random object pixel (sparse
    data still gives clips with objects).
    """
    def u() -> float:
        return float(torch.rand((), generator=gen))

    lo, hi = geom.scale_jitter
    s = geom.scale * math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u())
    H, W = ids0.shape
    side = _side(size, s)
    h, w = min(H, side), min(W, side)
    # the zoomed window may be a pixel off S after rounding; never more than S
    oh, ow = min(size, int(round(h * s))), min(size, int(round(w * s)))
    py, px = int(u() * (size - oh + 1)), int(u() * (size - ow + 1))
    y0 = x0 = 0
    for _ in range(tries):
        y0, x0 = int(u() * (H - h + 1)), int(u() * (W - w + 1))
        if (ids0[y0:y0 + h, x0:x0 + w] > 0).any():
            return View(y0, x0, h, w, s, py, px)
    ys, xs = np.nonzero(ids0 > 0)
    if ys.size:
        j = int(u() * ys.size)
        y0 = int(np.clip(ys[j] - h // 2, 0, H - h))
        x0 = int(np.clip(xs[j] - w // 2, 0, W - w))
    return View(y0, x0, h, w, s, py, px)


def _starts(n: int, side: int) -> List[Tuple[int, int, int]]:
    """Tile starts along one axis of length n, with each tile's own share [lo, hi)."""
    if n <= side:
        return [(0, 0, n)]
    k = math.ceil(n / side)
    out = []
    for i in range(k):
        lo, hi = i * side, min((i + 1) * side, n)
        out.append((min(lo, n - side), lo, hi))  # the last tile is aligned to the end
    return out


def eval_views(ids0: np.ndarray, size: int, geom: Geometry) -> List[View]:
    """The fixed validation tiles of a frame (ids of frame 0: (H, W)), in row-major order.

    ``crop``: a grid of S×S tiles at ``geom.scale`` (no jitter) covering the frame, the last
    row / column aligned to the frame's edge. Each object is given to the tile whose share of
    the frame holds its frame-0 centroid. ``squash``: one view of the whole frame.
    """
    H, W = ids0.shape
    if geom.resize == "squash":
        return [View(0, 0, H, W, float("nan"))]
    side = _side(size, geom.scale)
    labels = ids0.ravel()
    n = np.bincount(labels, minlength=1).astype(np.float64)
    yy, xx = np.indices((H, W))
    cy = np.bincount(labels, weights=yy.ravel(), minlength=n.size) / np.maximum(n, 1)
    cx = np.bincount(labels, weights=xx.ravel(), minlength=n.size) / np.maximum(n, 1)
    present = np.flatnonzero(n > 0)
    present = present[present > 0]
    views = []
    for y0, ylo, yhi in _starts(H, side):
        for x0, xlo, xhi in _starts(W, side):
            own = [int(i) for i in present if ylo <= cy[i] < yhi and xlo <= cx[i] < xhi]
            h, w = min(H, side), min(W, side)
            views.append(View(y0, x0, h, w, geom.scale, objects=frozenset(own)))
    return views


def apply_view(frames: torch.Tensor, ids: torch.Tensor, view: View, size: int
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cut, zoom and pad a clip to the S×S input.

    Args:
        frames: uint8 (T, H, W, 3). ids: integer (T, H, W).

    Returns:
        float (T, 3, S, S) in [0, 1] and long (T, S, S); padding is 0 (black / background).
    """
    if view.scale != view.scale:  # NaN: squash the whole frame
        return squash_clip(frames, ids, size)
    sub = frames[:, view.y0:view.y0 + view.h, view.x0:view.x0 + view.w]
    sid = ids[:, view.y0:view.y0 + view.h, view.x0:view.x0 + view.w].long()
    x = sub.permute(0, 3, 1, 2).float() / 255.0
    oh = min(size, int(round(view.h * view.scale)))
    ow = min(size, int(round(view.w * view.scale)))
    if (oh, ow) != (view.h, view.w):
        x = F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0, 1)
        sid = F.interpolate(sid[:, None].float(), size=(oh, ow), mode="nearest-exact")[:, 0].long()
    T = frames.shape[0]
    out = x.new_zeros(T, 3, size, size)
    out_ids = sid.new_zeros(T, size, size)
    out[:, :, view.py:view.py + oh, view.px:view.px + ow] = x
    out_ids[:, view.py:view.py + oh, view.px:view.px + ow] = sid
    return out, out_ids


def squash_clip(frames: torch.Tensor, masks: torch.Tensor, size: int
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Resize uint8 frames (T, H, W, 3) and id masks (T, H, W) to a square ``size``.

    Frames: bilinear with antialias, to float (T, 3, size, size) in [0, 1] (aspect ratio is
    not kept, as the predictors do). Masks: nearest neighbour, long.
    """
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0, 1)
    m = masks.long()
    if m.shape[-2:] != (size, size):
        m = F.interpolate(m[:, None].float(), size=(size, size), mode="nearest-exact")[:, 0].long()
    return x, m
