"""Connected components and small-region clean-up of mask logits, on any device.

Upstream SAM 2 does this with a CUDA-only extension (``sam2._C``) and silently skips it (with a
warning) everywhere else. Here it works on CPU (``scipy.ndimage.label`` when scipy is installed,
imported lazily) and on any torch device (an iterative label propagation with pointer jumping),
with the same semantics:

* 8-connectivity;
* :func:`get_connected_components` returns, per pixel, a positive component id (0 on
  background) and the area of the component the pixel belongs to (0 on background);
* image predictor (:func:`remove_small_regions_in_logits`): background components of at
  most ``max_hole_area`` pixels are set to ``threshold + 10`` (become foreground), foreground
  components of at most ``max_sprinkle_area`` pixels are set to ``threshold - 10``. Both are
  found on the *input* logits (as upstream: the sprinkle pass does not see filled holes).
  Note that a background region touching the border is a "hole" too when it is small enough;
* video predictor (:func:`fill_holes_in_mask_scores`): background components (logit <= 0) of
  at most ``max_area`` pixels are set to ``0.1``.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "get_connected_components",
    "fill_holes_in_mask_scores",
    "remove_small_regions_in_logits",
    "remove_small_regions",
]


#: ``scipy.ndimage.label``: ``(mask, structure=...) -> (labels, number of components)``.
LabelFn = Callable[..., Tuple[np.ndarray, int]]


def _scipy_label() -> Optional[LabelFn]:
    try:
        from scipy import ndimage  # lazy: scipy is optional
    except ImportError:
        return None
    return ndimage.label


def _components_scipy(masks: np.ndarray, label_fn: LabelFn) -> Tuple[np.ndarray, np.ndarray]:
    """masks: (N, H, W) bool -> labels, areas int32 (N, H, W)."""
    structure = np.ones((3, 3), dtype=bool)
    labels = np.zeros(masks.shape, dtype=np.int32)
    areas = np.zeros(masks.shape, dtype=np.int32)
    for i in range(masks.shape[0]):
        if not masks[i].any():
            continue
        lab, n = label_fn(masks[i], structure=structure)
        sizes = np.bincount(lab.ravel(), minlength=n + 1).astype(np.int32)
        sizes[0] = 0
        labels[i] = lab
        areas[i] = sizes[lab]
    return labels, areas


def _components_torch(masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """masks: (N, H, W) bool on any device -> labels, areas int32 (N, H, W).

    Every foreground pixel starts with its own flat index + 1 as label; labels spread as the
    3x3 maximum inside the foreground until nothing changes. Pointer jumping (a pixel takes
    the label of the pixel its label points at, which is in the same component and holds a
    label at least as large) cuts the number of rounds from the component's diameter to
    roughly its logarithm for convex-ish shapes.
    """
    n, h, w = masks.shape
    fg = masks
    idx = torch.arange(1, h * w + 1, device=masks.device, dtype=torch.int64).view(1, h, w)
    # float64 holds every index exactly (max_pool2d has no integer kernel on all devices).
    lab = torch.where(fg, idx.to(torch.float64), torch.zeros((), dtype=torch.float64, device=masks.device))
    while True:
        grown = F.max_pool2d(lab[:, None], kernel_size=3, stride=1, padding=1)[:, 0]
        grown = torch.where(fg, grown, torch.zeros_like(grown))
        flat = grown.view(n, -1)
        ptr = (flat.long() - 1).clamp(min=0)
        jumped = torch.gather(flat, 1, ptr).view(n, h, w)
        jumped = torch.where(fg, torch.maximum(jumped, grown), grown)
        if torch.equal(jumped, lab):
            break
        lab = jumped
    labels = lab.long()
    areas = torch.zeros(n, h * w + 1, dtype=torch.int64, device=masks.device)
    areas.scatter_add_(1, labels.view(n, -1), torch.ones_like(labels.view(n, -1)))
    areas[:, 0] = 0
    pix_area = torch.gather(areas, 1, labels.view(n, -1)).view(n, h, w)
    return labels.to(torch.int32), pix_area.to(torch.int32)


def get_connected_components(mask: torch.Tensor, backend: Optional[str] = None
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """8-connected components of binary masks (same contract as upstream's ``_C``).

    Args:
        mask: ``(N, 1, H, W)`` (or ``(N, H, W)``) tensor; non-zero / True is foreground.
        backend: ``"scipy"``, ``"torch"`` or ``None`` (scipy for CPU tensors when it is
            installed, else torch on the tensor's device).

    Returns:
        ``(labels, areas)``, int32 tensors of the input's shape and device: a positive id per
        component (unique within each mask, not necessarily consecutive) and the component's
        pixel count; both 0 on background.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor (N, 1, H, W), got {type(mask).__name__}")
    if mask.dim() not in (3, 4) or (mask.dim() == 4 and mask.shape[1] != 1):
        raise ValueError(f"mask must have shape (N, 1, H, W) or (N, H, W), got {tuple(mask.shape)}")
    shape = mask.shape
    m = (mask != 0).reshape(-1, shape[-2], shape[-1])
    if backend not in (None, "scipy", "torch"):
        raise ValueError(f"backend must be None, 'scipy' or 'torch', got {backend!r}")
    label_fn = _scipy_label() if backend in (None, "scipy") else None
    if backend == "scipy" and label_fn is None:
        raise RuntimeError("backend='scipy' requested but scipy is not installed")
    use_scipy = label_fn is not None and (backend == "scipy" or m.device.type == "cpu")
    if m.numel() == 0:
        z = torch.zeros(shape, dtype=torch.int32, device=mask.device)
        return z, z.clone()
    if use_scipy:
        assert label_fn is not None  # use_scipy implies it
        labels, areas = _components_scipy(m.cpu().numpy(), label_fn)
        labels_t = torch.from_numpy(labels).to(mask.device)
        areas_t = torch.from_numpy(areas).to(mask.device)
    else:
        labels_t, areas_t = _components_torch(m)
    return labels_t.reshape(shape), areas_t.reshape(shape)


def fill_holes_in_mask_scores(mask: torch.Tensor, max_area: float, fill_value: float = 0.1,
                              backend: Optional[str] = None) -> torch.Tensor:
    """Video path: background components (score <= 0) of area <= ``max_area`` -> ``fill_value``.

    ``mask``: ``(N, 1, H, W)`` float logits; returns a new tensor of the same shape and dtype.
    """
    if max_area <= 0:
        raise ValueError(f"max_area must be positive, got {max_area}")
    labels, areas = get_connected_components(mask <= 0, backend=backend)
    is_hole = (labels > 0) & (areas <= max_area)
    return torch.where(is_hole, torch.as_tensor(fill_value, dtype=mask.dtype, device=mask.device), mask)


def remove_small_regions_in_logits(masks: torch.Tensor, mask_threshold: float = 0.0,
                                   max_hole_area: float = 0.0, max_sprinkle_area: float = 0.0,
                                   backend: Optional[str] = None) -> torch.Tensor:
    """Image path: fill small holes (+10) and remove small sprinkles (-10) in logits.

    Args:
        masks: ``(B, C, H, W)`` float logits (typically the 256x256 low-res decoder output).
        mask_threshold: logit above which a pixel is foreground.
        max_hole_area / max_sprinkle_area: areas in pixels of ``masks``; 0 disables the pass.

    Returns:
        float32 ``(B, C, H, W)``; the input is returned unchanged (as float) when both are 0.
    """
    masks = masks.float()
    if max_hole_area <= 0 and max_sprinkle_area <= 0:
        return masks
    flat = masks.flatten(0, 1).unsqueeze(1)
    out = masks
    if max_hole_area > 0:
        labels, areas = get_connected_components(flat <= mask_threshold, backend=backend)
        is_hole = ((labels > 0) & (areas <= max_hole_area)).reshape_as(masks)
        out = torch.where(is_hole, torch.full_like(out, mask_threshold + 10.0), out)
    if max_sprinkle_area > 0:
        labels, areas = get_connected_components(flat > mask_threshold, backend=backend)
        is_sprinkle = ((labels > 0) & (areas <= max_sprinkle_area)).reshape_as(masks)
        out = torch.where(is_sprinkle, torch.full_like(out, mask_threshold - 10.0), out)
    return out


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Binary-mask clean-up as upstream's (cv2-based) AMG helper, without cv2.

    ``mode="holes"`` fills background components smaller than ``area_thresh``;
    ``mode="islands"`` drops foreground components smaller than it (keeping the largest when
    all are small). Returns ``(mask bool HxW, changed)``.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    mask = np.asarray(mask, dtype=bool)
    correct_holes = mode == "holes"
    working = correct_holes ^ mask
    labels_t, areas_t = get_connected_components(torch.from_numpy(working)[None])
    labels, areas = labels_t[0].numpy(), areas_t[0].numpy()
    small = working & (areas < area_thresh)
    if not small.any():
        return mask, False
    if correct_holes:
        return mask | small, True
    keep = working & ~small
    if not keep.any():  # every island is small: keep the largest one
        keep = labels == labels.flat[int(np.argmax(areas))]
    return keep, True
