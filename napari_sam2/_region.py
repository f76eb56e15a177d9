"""Masks kept as their bounding box, and SAM's mask upsampling restricted to that box.

A click on a 2048x2048 plane should cost what the object costs, not what the plane costs:
the image predictor upsamples every candidate mask to the full image (3 x 16 MB of floats
at 2048²) and the Labels write then scans the plane. Here the chosen mask's low-res logits
(``image_size / 4`` square) are upsampled only where they can be above the threshold, and
the result travels as a :class:`RegionMask` down to the Labels write.

Pure numpy / torch (no napari, no Qt).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["RegionMask", "upsample_region", "source_index"]


@dataclass(frozen=True)
class RegionMask:
    """A binary mask of a ``shape`` = (H, W) plane, stored as ``crop`` (h, w) bool placed at
    ``offset`` = (y0, x0). Pixels outside the crop are False. An empty mask has a (0, 0) crop.
    """

    crop: np.ndarray
    offset: Tuple[int, int]
    shape: Tuple[int, int]

    def __post_init__(self) -> None:
        h, w = self.crop.shape
        y0, x0 = self.offset
        if self.crop.dtype != bool or y0 < 0 or x0 < 0 or y0 + h > self.shape[0] or x0 + w > self.shape[1]:
            raise ValueError(f"crop {self.crop.shape} {self.crop.dtype} at {self.offset} does not fit a "
                             f"bool mask of a {self.shape} plane")

    @property
    def bbox(self) -> Tuple[int, int, int, int]:
        """(y0, y1, x0, x1), end-exclusive."""
        y0, x0 = self.offset
        return y0, y0 + self.crop.shape[0], x0, x0 + self.crop.shape[1]

    @property
    def empty(self) -> bool:
        return not self.crop.any()

    @classmethod
    def from_full(cls, mask: np.ndarray) -> "RegionMask":
        """The tight box of a full (H, W) mask."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            return cls(np.zeros((0, 0), bool), (0, 0), mask.shape)
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(mask[y0:y1, x0:x1].copy(), (int(y0), int(x0)), mask.shape)

    def full(self) -> np.ndarray:
        """The (H, W) bool mask."""
        out = np.zeros(self.shape, bool)
        y0, y1, x0, x1 = self.bbox
        out[y0:y1, x0:x1] = self.crop
        return out

    def tight(self) -> "RegionMask":
        """The same mask with its crop shrunk to the True pixels."""
        inner = RegionMask.from_full(self.crop)
        if not inner.crop.size:
            return RegionMask(inner.crop, (0, 0), self.shape)
        return RegionMask(inner.crop, (self.offset[0] + inner.offset[0], self.offset[1] + inner.offset[1]),
                          self.shape)


@lru_cache(maxsize=32)
def source_index(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear sampling of one axis as ``F.interpolate(..., align_corners=False)`` does it.

    Output pixel ``i`` reads inputs ``i0[i]`` and ``i1[i]`` with weights ``1 - lam[i]`` and
    ``lam[i]``: source coordinate ``(i + 0.5) * n_in / n_out - 0.5`` clamped at 0, in float32
    as PyTorch's CPU kernel computes it.
    """
    scale = np.float32(n_in) / np.float32(n_out)
    src = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0.astype(np.float32), np.float32(0.0), np.float32(1.0)).astype(np.float32)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, lam


def _out_range(i0: np.ndarray, lo: int, hi: int) -> Tuple[int, int]:
    """Output pixels whose two inputs (``i0``, ``i0 + 1``) touch inputs ``lo..hi`` (inclusive)."""
    start = int(np.searchsorted(i0, lo - 1, side="left"))
    stop = int(np.searchsorted(i0, hi, side="right"))
    return start, stop


def upsample_region(low: "torch.Tensor | np.ndarray", out_hw: Tuple[int, int],
                    threshold: float = 0.0) -> RegionMask:
    """``F.interpolate(low, out_hw, mode="bilinear") > threshold``, computed only where it can
    be True.

    Bilinear interpolation is a convex combination of two inputs per axis, so an output pixel
    can exceed the threshold only if one of its inputs does: the output box is the one whose
    inputs touch the box of the low-res pixels above the threshold. Inside it the values are
    computed with the same indices, weights and order as PyTorch's CPU kernel (the masks
    agree with the full upsampling up to float rounding exactly at the threshold).

    Args:
        low: (h, w) float logits (SAM's low-res mask, e.g. 256 x 256).
        out_hw: the output plane (H, W).
        threshold: logit threshold (the predictor's ``mask_threshold``).

    Returns:
        A :class:`RegionMask` of the (H, W) plane, tight around its True pixels.
    """
    if low.ndim != 2:
        raise ValueError(f"low must be (h, w) logits, got shape {tuple(low.shape)}")
    H, W = int(out_hw[0]), int(out_hw[1])
    low_np = (low.detach().float().cpu().numpy() if isinstance(low, torch.Tensor)
              else np.asarray(low, dtype=np.float32))
    above = low_np > threshold
    rows = np.flatnonzero(above.any(axis=1))
    if not len(rows):
        return RegionMask(np.zeros((0, 0), bool), (0, 0), (H, W))
    cols = np.flatnonzero(above.any(axis=0))
    h, w = low_np.shape
    yi0, yi1, ylam = source_index(h, H)
    xi0, xi1, xlam = source_index(w, W)
    y0, y1 = _out_range(yi0, int(rows[0]), int(rows[-1]))
    x0, x1 = _out_range(xi0, int(cols[0]), int(cols[-1]))
    if y0 >= y1 or x0 >= x1:  # downscaling can skip the only inputs above the threshold
        return RegionMask(np.zeros((0, 0), bool), (0, 0), (H, W))
    if (y1 - y0) * (x1 - x0) * 4 > H * W:
        # a large object: PyTorch's vectorised kernel over the whole plane (one channel) is
        # then faster than gathering; it is the reference, so the result is the same
        full = F.interpolate(torch.from_numpy(np.ascontiguousarray(low_np))[None, None], (H, W),
                             mode="bilinear", align_corners=False)[0, 0]
        crop = (full[y0:y1, x0:x1] > threshold).numpy()
        return RegionMask(crop, (y0, x0), (H, W)).tight()
    # only the input rows / columns the box reads. PyTorch's kernel interpolates each input
    # row along x (t = a * (1 - lam) + b * lam), then combines two such rows along y the same
    # way, in float32: the x pass is done once per input row here (rows are shared by
    # several output rows), which gives the same numbers with a quarter of the gathers
    r0, r1 = int(yi0[y0]), int(yi1[y1 - 1]) + 1
    c0, c1 = int(xi0[x0]), int(xi1[x1 - 1]) + 1
    sub = low_np[r0:r1, c0:c1]
    one = np.float32(1.0)
    xl = xlam[None, x0:x1]
    rows_x = sub[:, xi0[x0:x1] - c0] * (one - xl) + sub[:, xi1[x0:x1] - c0] * xl  # (nr, nx)
    yl = ylam[y0:y1, None]
    vals = rows_x[yi0[y0:y1] - r0] * (one - yl) + rows_x[yi1[y0:y1] - r0] * yl
    crop = vals > threshold
    return RegionMask(crop, (y0, x0), (H, W)).tight()
