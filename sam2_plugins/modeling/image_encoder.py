"""The image encoder: Hiera trunk + FPN neck (+ sine position encodings of every level)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import SAM2Config
from .hiera import Hiera
from .position_encoding import PositionEmbeddingSine

__all__ = ["FpnNeck", "ImageEncoder", "build_image_encoder"]


class FpnNeck(nn.Module):
    """A light FPN: a 1x1 conv per trunk level to ``d_model`` channels, plus top-down fusion.

    Levels are indexed fine to coarse (0 = stride 4). ``convs[0]`` acts on the *coarsest*
    level (upstream's order, which fixes the checkpoint keys ``convs.N.conv``). Walking from
    coarse to fine, a level listed in ``fpn_top_down_levels`` adds the 2x upsampled (computed
    in float32) output of the coarser level to its lateral conv; other levels keep the lateral
    conv only. With SAM 2's ``(2, 3)`` only stride 16 receives top-down input.

    Args:
        position_encoding: module mapping a (B, C, H, W) feature map to its position encoding.
        d_model: output channels of every level.
        backbone_channel_list: trunk channels, coarse to fine.
        kernel_size, stride, padding: of the lateral convs (1, 1, 0 in SAM 2).
        fpn_interp_model: ``F.interpolate`` mode of the top-down path (SAM 2: "nearest").
        fuse_type: "sum" or "avg" of lateral and top-down features.
        fpn_top_down_levels: levels that receive top-down features (default: all).
    """

    def __init__(self, position_encoding: nn.Module, d_model: int,
                 backbone_channel_list: Sequence[int], kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, fpn_interp_model: str = "bilinear", fuse_type: str = "sum",
                 fpn_top_down_levels: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        self.position_encoding = position_encoding
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for dim in self.backbone_channel_list:
            level = nn.Sequential()
            level.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=kernel_size,
                                               stride=stride, padding=padding))
            self.convs.append(level)
        self.fpn_interp_model = fpn_interp_model
        self.fuse_type = fuse_type
        if fpn_top_down_levels is None:
            fpn_top_down_levels = range(len(self.convs))
        self.fpn_top_down_levels = list(fpn_top_down_levels)

    def forward(self, xs: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Trunk levels fine to coarse, (B, C_i, H_i, W_i) -> (features, pos), fine to coarse.

        ``features[i]`` is (B, d_model, H_i, W_i); ``pos[i]`` has the same shape and dtype.
        """
        n = len(self.convs)
        if len(xs) != n:
            raise ValueError(f"expected {n} trunk levels, got {len(xs)}")
        out: List[torch.Tensor] = [torch.empty(0)] * n
        pos: List[torch.Tensor] = [torch.empty(0)] * n
        prev: Optional[torch.Tensor] = None
        for i in range(n - 1, -1, -1):  # coarse to fine
            lateral = self.convs[n - 1 - i](xs[i])
            if i in self.fpn_top_down_levels and prev is not None:
                top_down = F.interpolate(
                    prev.to(torch.float32), scale_factor=2.0, mode=self.fpn_interp_model,
                    align_corners=None if self.fpn_interp_model == "nearest" else False,
                    antialias=False)
                prev = lateral + top_down
                if self.fuse_type == "avg":
                    prev = prev / 2
            else:
                prev = lateral
            out[i] = prev
            pos[i] = self.position_encoding(prev).to(prev.dtype)
        return out, pos


class ImageEncoder(nn.Module):
    """Trunk + neck, dropping the ``scalp`` coarsest levels.

    ``forward(images)`` takes (B, 3, S, S) normalised images and returns a dict:

    * ``"backbone_fpn"``: list of (B, d_model, S/4, S/4), (B, d_model, S/8, S/8) and
      (B, d_model, S/16, S/16) for SAM 2 (``scalp`` 1 drops stride 32), fine to coarse;
    * ``"vision_pos_enc"``: the matching sine position encodings (same shapes);
    * ``"vision_features"``: the coarsest kept level, ``backbone_fpn[-1]``.
    """

    def __init__(self, trunk: nn.Module, neck: nn.Module, scalp: int = 0) -> None:
        super().__init__()
        # any trunk / neck pair with these attributes (Hiera and FpnNeck have them)
        trunk_channels = cast(Sequence[int], trunk.channel_list)
        neck_channels = cast(Sequence[int], neck.backbone_channel_list)
        if list(trunk_channels) != list(neck_channels):
            raise ValueError(f"trunk channels {list(trunk_channels)} do not match the "
                             f"neck's {list(neck_channels)}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: torch.Tensor) -> Dict[str, Union[torch.Tensor, List[torch.Tensor]]]:
        features, pos = self.neck(self.trunk(sample))
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": pos,
                "backbone_fpn": features}


def build_image_encoder(cfg: SAM2Config) -> ImageEncoder:
    """The image encoder of a model config (Hiera trunk, FPN neck with nearest top-down)."""
    trunk = Hiera(cfg.hiera)
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(cfg.d_model, temperature=10000, normalize=True),
        d_model=cfg.d_model,
        backbone_channel_list=cfg.hiera.channel_list,
        fpn_interp_model="nearest",
        fpn_top_down_levels=cfg.fpn_top_down_levels,
    )
    return ImageEncoder(trunk, neck, scalp=cfg.scalp)
