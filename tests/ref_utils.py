"""Helpers for tests that compare against upstream SAM 2 (PyPI ``sam2==1.1.0``).

Upstream is a test-only dependency: tests import this module and call
:func:`require_reference`, which skips with a clear reason where the package is missing
(CI installs it, so there the comparison always runs).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

# Our names -> upstream yaml (package-relative, as upstream's hydra needs): one table, shared
# with the benchmarks.
from benchmarks.upstream_configs import UPSTREAM_YAML


def require_reference() -> None:
    """Skip the calling test when upstream ``sam2`` is not importable."""
    pytest.importorskip("hydra", reason="upstream sam2 comparison needs hydra-core (pip install sam2-plugins[dev])")
    pytest.importorskip("sam2.build_sam", reason="upstream sam2==1.1.0 not installed (see Makefile: test-deps)")


def install_torchvision_shim() -> None:
    """Put a minimal stand-in for ``torchvision`` in ``sys.modules``.

    Upstream's image predictor and mask generator import torchvision only for ``Resize``,
    ``Normalize``, ``ToTensor``, ``batched_nms`` and ``box_area``; a real torchvision cannot be
    installed beside our torch. The stand-in follows torchvision's definitions (bilinear +
    antialias resize of float tensors; per-class NMS) so upstream code runs unchanged.
    """
    if "torchvision" in sys.modules and getattr(sys.modules["torchvision"], "_sam2_plugins_shim", False):
        return
    import torch.nn.functional as F
    from torch import nn

    tv = types.ModuleType("torchvision")
    tv._sam2_plugins_shim = True
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    boxes_mod = types.ModuleType("torchvision.ops.boxes")

    class ToTensor(nn.Module):
        def forward(self, pic: Any) -> torch.Tensor:  # HWC uint8 numpy -> CHW float in [0,1]
            import numpy as np
            arr = np.asarray(pic)
            if arr.ndim == 2:
                arr = arr[:, :, None]
            t = torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
            return t.float().div(255) if t.dtype == torch.uint8 else t.float()

    class Resize(nn.Module):
        def __init__(self, size: Any, antialias: bool = True) -> None:
            super().__init__()
            self.size = tuple(size) if not isinstance(size, int) else (size, size)
            self.antialias = antialias

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            squeeze = x.dim() == 3
            y = x[None] if squeeze else x
            y = F.interpolate(y, size=self.size, mode="bilinear", align_corners=False, antialias=True)
            return y[0] if squeeze else y

    class Normalize(nn.Module):
        def __init__(self, mean: Any, std: Any) -> None:
            super().__init__()
            self.mean = torch.tensor(mean).view(-1, 1, 1)
            self.std = torch.tensor(std).view(-1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.mean.to(x)) / self.std.to(x)

    def resize(x: torch.Tensor, size: Any, antialias: bool = True, **_: Any) -> torch.Tensor:
        return Resize(size)(x)

    def box_area(b: torch.Tensor) -> torch.Tensor:
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    def nms(b: torch.Tensor, s: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        order = torch.argsort(s, descending=True, stable=True)
        keep = []
        suppressed = torch.zeros(len(b), dtype=torch.bool)
        area = box_area(b)
        for i in order.tolist():
            if suppressed[i]:
                continue
            keep.append(i)
            xx1, yy1 = torch.maximum(b[i, 0], b[:, 0]), torch.maximum(b[i, 1], b[:, 1])
            xx2, yy2 = torch.minimum(b[i, 2], b[:, 2]), torch.minimum(b[i, 3], b[:, 3])
            inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
            iou = inter / (area[i] + area - inter)
            suppressed |= iou > iou_threshold
        return torch.tensor(keep, dtype=torch.long)

    def batched_nms(b: torch.Tensor, s: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        if b.numel() == 0:
            return torch.empty((0,), dtype=torch.long)
        offsets = idxs.to(b) * (b.max() + 1)
        return nms(b + offsets[:, None], s, iou_threshold)

    transforms.ToTensor, transforms.Resize, transforms.Normalize = ToTensor, Resize, Normalize
    transforms.functional = functional
    functional.resize = resize
    ops.batched_nms, ops.box_area, ops.nms = batched_nms, box_area, nms
    ops.boxes = boxes_mod
    boxes_mod.batched_nms, boxes_mod.box_area = batched_nms, box_area
    tv.transforms, tv.ops = transforms, ops
    sys.modules.update({
        "torchvision": tv, "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional, "torchvision.ops": ops,
        "torchvision.ops.boxes": boxes_mod,
    })


def build_reference(name: str, *, video: bool = False, apply_postprocessing: bool = True,
                    seed: int = 0, extra_overrides: tuple = ()) -> torch.nn.Module:
    """Build upstream's model (random init, CPU, eval) for one of our model names.

    ``video=True`` gives upstream's ``SAM2VideoPredictor`` (itself the model). ``fill_hole_area``
    is set to 0 there: its CUDA-only ``_C`` would only warn on CPU.
    """
    require_reference()
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    torch.manual_seed(seed)
    cfg = UPSTREAM_YAML[name]
    if video:
        model = build_sam2_video_predictor(
            cfg, ckpt_path=None, device="cpu", apply_postprocessing=apply_postprocessing,
            hydra_overrides_extra=list(extra_overrides))
        # Upstream's builder appends fill_hole_area=8 after any override; its CUDA-only _C would
        # only warn on CPU every frame, so switch it off on the built model.
        model.fill_hole_area = 0
    else:
        model = build_sam2(cfg, ckpt_path=None, device="cpu",
                           apply_postprocessing=apply_postprocessing,
                           hydra_overrides_extra=list(extra_overrides))
    # Upstream zero-initialises some parameters (Hiera pos embeds); randomise everything so a
    # parity test cannot pass by two implementations both ignoring a zero tensor.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 1 and float(p.abs().sum()) == 0.0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


def save_reference_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save upstream's state dict as an official ``{"model": state_dict}`` file."""
    torch.save({"model": model.state_dict()}, path)
    return Path(path)


def uninstall_torchvision_shim() -> None:
    """Remove the stand-in from ``sys.modules`` (other libraries probe for a real torchvision)."""
    tv = sys.modules.get("torchvision")
    if tv is not None and getattr(tv, "_sam2_plugins_shim", False):
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
