"""Torch-only clip augmentation, the same draw for every frame of a clip.

SAM 2's video recipe: horizontal flip, a random affine (rotation ±25°, shear ±20°), colour jitter
and 5 % greyscale, all "consistent" across the clip so that motion stays physical. Images are
float (T, 3, S, S) in [0, 1]; masks are integer id maps (T, S, S) warped with nearest
neighbour so ids never blend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "augment_clip", "resize_clip"]


@dataclass
class AugmentConfig:
    """Augmentation strengths (upstream SAM 2 video values by default); 0 / 0.0 disables one."""

    hflip_p: float = 0.5
    degrees: float = 25.0
    shear: float = 20.0
    scale: Tuple[float, float] = (1.0, 1.0)
    translate: float = 0.0
    brightness: float = 0.1
    contrast: float = 0.03
    saturation: float = 0.03
    grayscale_p: float = 0.05


def resize_clip(frames: torch.Tensor, masks: torch.Tensor, size: int
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Resize uint8 frames (T, H, W, 3) and id masks (T, H, W) to a square ``size``.

    Frames: bilinear with antialias, to float (T, 3, size, size) in [0, 1] (aspect ratio is
    not kept: SAM 2 squashes every input to a square). Masks: nearest neighbour, long.
    """
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {tuple(frames.shape)}")
    if masks.shape != frames.shape[:3]:
        raise ValueError(f"masks {tuple(masks.shape)} must be (T, H, W) like the frames "
                         f"{tuple(frames.shape[:3])}")
    from .geometry import squash_clip

    return squash_clip(frames, masks, size)


def _affine_matrix(angle: float, shear: float, scale: float, tx: float, ty: float
                   ) -> torch.Tensor:
    """2x3 matrix mapping output to input coordinates in [-1, 1] (what affine_grid wants)."""
    a, s = math.radians(angle), math.radians(shear)
    # forward transform: rotation then x-shear, then scale; the grid needs its inverse
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    sh = torch.tensor([[1.0, math.tan(s)], [0.0, 1.0]])
    fwd = scale * (rot @ sh)
    inv = torch.linalg.inv(fwd)
    t = -inv @ torch.tensor([tx, ty])
    return torch.cat([inv, t[:, None]], 1)


def augment_clip(images: torch.Tensor, masks: torch.Tensor, cfg: AugmentConfig,
                 generator: Optional[torch.Generator] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Apply one random draw of ``cfg`` to a whole clip.

    Args:
        images: float (T, 3, S, S) in [0, 1].
        masks: long (T, S, S) object ids (0 = background).
        generator: torch RNG for the draw (None: the global one).

    Returns:
        Augmented ``(images, masks)``, same shapes and dtypes; pixels warped in from outside
        the image are black / background.
    """
    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    if cfg.hflip_p > 0 and u(0, 1) < cfg.hflip_p:
        images, masks = images.flip(-1), masks.flip(-1)
    if cfg.degrees > 0 or cfg.shear > 0 or cfg.scale != (1.0, 1.0) or cfg.translate > 0:
        theta = _affine_matrix(u(-cfg.degrees, cfg.degrees), u(-cfg.shear, cfg.shear),
                               u(*cfg.scale), u(-cfg.translate, cfg.translate) * 2,
                               u(-cfg.translate, cfg.translate) * 2)
        T = images.shape[0]
        grid = F.affine_grid(theta[None].expand(T, 2, 3).to(images), list(images.shape),
                             align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)
        masks = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                              align_corners=False)[:, 0].round().long()
    if cfg.brightness > 0:
        images = images * u(1 - cfg.brightness, 1 + cfg.brightness)
    if cfg.contrast > 0:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * u(1 - cfg.contrast, 1 + cfg.contrast) + mean
    grey = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])[:, None]
    if cfg.saturation > 0:
        images = (images - grey) * u(1 - cfg.saturation, 1 + cfg.saturation) + grey
    if cfg.grayscale_p > 0 and u(0, 1) < cfg.grayscale_p:
        images = (0.299 * images[:, 0] + 0.587 * images[:, 1]
                  + 0.114 * images[:, 2])[:, None].expand_as(images)
    return images.clamp(0, 1).contiguous(), masks
