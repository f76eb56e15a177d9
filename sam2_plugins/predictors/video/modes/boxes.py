"""Boxes of masks and box IoU on the device, batched, without host round-trips.

Conventions (SAMURAI's): a box is ``(x0, y0, x1, y1)`` in pixel indices of the mask it comes
from, inclusive extents (``x1`` is the last foreground column), so a one-pixel mask has a box of
width 0. An empty mask has the box ``(0, 0, 0, 0)``; :func:`box_iou` gives 0 against it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mask_boxes", "box_iou", "box_area"]


def _first_last(hit: Tensor) -> "tuple[Tensor, Tensor]":
    """``(..., L)`` bool -> index of the first and the last True along the last axis (0 if none)."""
    n = hit.shape[-1]
    h = hit.to(torch.uint8)
    first = h.argmax(dim=-1)
    last = (n - 1) - h.flip(-1).argmax(dim=-1)
    return first, last


def mask_boxes(masks: Tensor, threshold: float = 0.0) -> Tensor:
    """Tight boxes of ``masks > threshold``.

    Args:
        masks: ``(..., H, W)`` logits or probabilities (any float dtype) or bool.

    Returns:
        ``(..., 4)`` float boxes ``(x0, y0, x1, y1)`` (inclusive pixel indices), zeros for an
        empty mask. Everything stays on the masks' device (no synchronisation).
    """
    fg = masks if masks.dtype == torch.bool else masks > threshold
    cols = fg.any(dim=-2)  # (..., W): columns holding foreground
    rows = fg.any(dim=-1)  # (..., H)
    x0, x1 = _first_last(cols)
    y0, y1 = _first_last(rows)
    box = torch.stack([x0, y0, x1, y1], dim=-1).to(torch.float32)
    nonempty = cols.any(dim=-1, keepdim=True)
    return torch.where(nonempty, box, torch.zeros_like(box))


def box_area(boxes: Tensor) -> Tensor:
    """``(..., 4)`` -> ``(...)`` areas ``(x1 - x0) * (y1 - y0)`` (SAMURAI's, no +1)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of broadcastable ``(..., 4)`` boxes. 0 where ``b`` is the empty box ``(0, 0, 0, 0)``
    or where the union has no area."""
    ix = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    iy = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = ix * iy
    union = box_area(a) + box_area(b) - inter
    iou = torch.where(union != 0, inter / torch.where(union != 0, union, torch.ones_like(union)),
                      torch.zeros_like(union))
    empty_b = (b == 0).all(dim=-1)
    return torch.where(empty_b, torch.zeros_like(iou), iou)
