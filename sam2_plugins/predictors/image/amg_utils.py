"""Helpers of the automatic mask generator: point grids, crops, filtering, box NMS (pure torch).

Conventions: boxes are ``XYXY`` in pixels (``x1, y1`` inclusive pixel indices for boxes derived
from masks, as upstream), crop boxes ``[x0, y0, x1, y1]`` with exclusive ends; point grids are
``(N, 2)`` ``(x, y)`` in ``[0, 1]``.

The NMS follows torchvision's definition (scores sorted descending with a stable sort, a box
is suppressed when its IoU with a kept box is strictly above the threshold, areas without +1),
so results match upstream's use of ``torchvision.ops.batched_nms`` without torchvision.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any, Dict, ItemsView, Iterator, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "MaskData",
    "build_point_grid",
    "build_all_layer_point_grids",
    "generate_crop_boxes",
    "batch_iterator",
    "calculate_stability_score",
    "batched_mask_to_box",
    "box_xyxy_to_xywh",
    "box_area",
    "box_iou",
    "nms",
    "batched_nms",
    "is_box_near_crop_edge",
    "uncrop_boxes_xyxy",
    "uncrop_points",
    "uncrop_masks",
]


class MaskData:
    """Named, equally long batches (tensors, arrays or lists) filtered and concatenated together."""

    def __init__(self, **fields: Any) -> None:
        self._stats: Dict[str, Any] = {}
        for k, v in fields.items():
            self[k] = v

    def __setitem__(self, key: str, item: Any) -> None:
        if item is not None and not isinstance(item, (list, np.ndarray, torch.Tensor)):
            raise TypeError(f"MaskData field {key!r} must be a list, np.ndarray or torch.Tensor, got "
                            f"{type(item).__name__}")
        self._stats[key] = item

    def __getitem__(self, key: str) -> Any:
        return self._stats[key]

    def __delitem__(self, key: str) -> None:
        del self._stats[key]

    def __contains__(self, key: str) -> bool:
        return key in self._stats

    def items(self) -> ItemsView[str, Any]:
        return self._stats.items()

    def filter(self, keep: torch.Tensor) -> None:
        """Keep the rows selected by ``keep`` (bool mask or indices) in every field."""
        keep = torch.as_tensor(keep)
        idx = keep.nonzero().flatten() if keep.dtype == torch.bool else keep.long()
        idx_list = idx.cpu().tolist()
        for k, v in self._stats.items():
            if v is None:
                continue
            if isinstance(v, torch.Tensor):
                self._stats[k] = v[idx.to(v.device)]
            elif isinstance(v, np.ndarray):
                self._stats[k] = v[np.asarray(idx_list, dtype=np.int64)]
            else:
                self._stats[k] = [v[i] for i in idx_list]

    def cat(self, other: "MaskData") -> None:
        """Append ``other``'s rows (fields missing here are taken as they are)."""
        for k, v in other.items():
            mine = self._stats.get(k)
            if mine is None:
                self._stats[k] = v.clone() if isinstance(v, torch.Tensor) else (
                    v.copy() if isinstance(v, np.ndarray) else (list(v) if v is not None else None))
            elif isinstance(v, torch.Tensor):
                self._stats[k] = torch.cat([mine, v], dim=0)
            elif isinstance(v, np.ndarray):
                self._stats[k] = np.concatenate([mine, v], axis=0)
            else:
                self._stats[k] = mine + list(v)

    def to_numpy(self) -> None:
        """Tensors -> float32 numpy arrays (upstream's records carry float boxes)."""
        for k, v in self._stats.items():
            if isinstance(v, torch.Tensor):
                self._stats[k] = v.float().detach().cpu().numpy()


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n², 2)`` cell centres of an ``n x n`` grid over ``[0, 1]²``, x fastest."""
    offset = 1.0 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)  # ys varies along rows, xs along columns
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """One grid per crop layer; layer i has ``int(n_per_side / scale_per_layer**i)`` points per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer ** i))) for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: Tuple[int, int], n_layers: int, overlap_ratio: float
                        ) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes ``[x0, y0, x1, y1]`` and their layer index; layer i has ``(2**i)²`` crops.

    Layer 0 is the whole image. Neighbouring crops of layer i overlap by
    ``int(overlap_ratio * short_side * 2 / 2**i)`` pixels.
    """
    im_h, im_w = im_size
    short = min(im_h, im_w)
    boxes: List[List[int]] = [[0, 0, im_w, im_h]]
    layers = [0]
    for layer in range(1, n_layers + 1):
        per_side = 2 ** layer
        overlap = int(overlap_ratio * short * (2 / per_side))
        crop_w = int(math.ceil((overlap * (per_side - 1) + im_w) / per_side))
        crop_h = int(math.ceil((overlap * (per_side - 1) + im_h) / per_side))
        x0s = [int((crop_w - overlap) * i) for i in range(per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x0s, y0s):  # x outer, y inner (upstream's order)
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer)
    return boxes, layers


def batch_iterator(batch_size: int, *args: Union[Sequence[Any], np.ndarray, torch.Tensor]) -> Iterator[List[Any]]:
    """Yield aligned slices of ``batch_size`` rows from every argument."""
    if not args or any(len(a) != len(args[0]) for a in args):
        raise ValueError("batch_iterator needs at least one sequence, all of the same length")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(args[0])
    for start in range(0, n, batch_size):
        yield [a[start:start + batch_size] for a in args]


def calculate_stability_score(masks: torch.Tensor, mask_threshold: float, threshold_offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``t + offset`` and ``t - offset`` (``(..., H, W)`` -> ``(...)``).

    The high-threshold mask is inside the low-threshold one, so IoU = area_high / area_low.
    Sums are taken in int16 per row, then int32 (as upstream; rows are shorter than 32768).
    """
    high = (masks > (mask_threshold + threshold_offset)).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    low = (masks > (mask_threshold - threshold_offset)).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return high / low


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (inclusive pixel indices, int64) of bool masks ``(..., H, W)``; empty -> zeros."""
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, device=masks.device, dtype=torch.int64)
    h, w = masks.shape[-2:]
    m = masks.reshape(-1, h, w).bool()
    rows, cols = m.any(dim=-1), m.any(dim=-2)  # (N, H), (N, W)
    ar_h = torch.arange(h, device=m.device)
    ar_w = torch.arange(w, device=m.device)
    y1 = torch.where(rows, ar_h, -1).amax(-1)
    y0 = torch.where(rows, ar_h, h).amin(-1)
    x1 = torch.where(cols, ar_w, -1).amax(-1)
    x0 = torch.where(cols, ar_w, w).amin(-1)
    out = torch.stack([x0, y0, x1, y1], dim=-1)
    empty = ~rows.any(-1)
    out = torch.where(empty[:, None], torch.zeros_like(out), out)
    return out.reshape(*masks.shape[:-2], 4)


def box_xyxy_to_xywh(box: Any) -> Any:
    """``[x0, y0, x1, y1]`` -> ``[x0, y0, w, h]`` (a copy; tensor or array, last dim 4)."""
    out: Any = box.clone() if isinstance(box, torch.Tensor) else np.array(box, copy=True)  # tensor or array
    out[..., 2] = out[..., 2] - out[..., 0]
    out[..., 3] = out[..., 3] - out[..., 1]
    return out


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` XYXY -> ``(N,)`` areas ``(x1 - x0) * (y1 - y0)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``(N, M)`` of XYXY boxes."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS; returns kept indices (int64) in decreasing score order."""
    return batched_nms(boxes, scores, torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device), iou_threshold)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Per-category greedy NMS (``torchvision.ops.batched_nms`` semantics), in torch.

    The pairwise IoU matrix is computed once on the boxes' device; boxes of different
    categories never suppress each other. The greedy pass runs over a host bool matrix.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order].float()
    over = box_iou(b, b) > iou_threshold
    cats = idxs[order].to(boxes.device)
    over &= cats[:, None] == cats[None, :]
    over_host = over.cpu().numpy()
    n = len(order)
    removed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if removed[i]:
            continue
        keep.append(i)
        removed |= over_host[i]
    keep_t = torch.as_tensor(keep, dtype=torch.int64, device=order.device)
    return order[keep_t]


def is_box_near_crop_edge(boxes: torch.Tensor, crop_box: List[int], orig_box: List[int],
                          atol: float = 20.0) -> torch.Tensor:
    """True for boxes (crop coordinates) within ``atol`` of a crop edge that is not an image edge."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    b = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(b, crop[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(b, orig[None, :], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: List[int]) -> torch.Tensor:
    """Shift XYXY boxes ``(..., 4)`` from crop to image coordinates."""
    x0, y0 = crop_box[0], crop_box[1]
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: List[int]) -> torch.Tensor:
    """Shift ``(..., 2)`` points from crop to image coordinates."""
    return points + torch.tensor([crop_box[0], crop_box[1]], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: List[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """Zero-pad ``(N, h, w)`` crop masks back to ``(N, orig_h, orig_w)``."""
    x0, y0, x1, y1 = crop_box
    if x0 == 0 and y0 == 0 and x1 == orig_w and y1 == orig_h:
        return masks
    pad_x, pad_y = orig_w - (x1 - x0), orig_h - (y1 - y0)
    return F.pad(masks, (x0, pad_x - x0, y0, pad_y - y0), value=0)
