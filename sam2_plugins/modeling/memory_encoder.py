"""Memory encoder: fuse a frame's features with its predicted mask into a spatial memory.

``pix_feat_proj(features) + MaskDownSampler(mask)`` goes through a small ConvNeXt "fuser" and
a 1x1 projection down to ``mem_dim`` channels; a sine position encoding comes with it.
State-dict names follow upstream: ``mask_downsampler.encoder.{0,3,6,9 conv; 1,4,7,10 LN2d;
12 1x1 conv}``, ``fuser.layers.N.{gamma, dwconv, norm, pwconv1, pwconv2}``, ``pix_feat_proj``,
``out_proj`` (``position_encoding`` has no parameters).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, List, Union

import torch
from torch import Tensor, nn

from .common import DropPath, LayerNorm2d
from .position_encoding import PositionEmbeddingSine

if TYPE_CHECKING:  # pragma: no cover
    from ..configs import SAM2Config

__all__ = ["MaskDownSampler", "CXBlock", "Fuser", "MemoryEncoder"]


class MaskDownSampler(nn.Module):
    """Downsample a full-resolution mask to the feature grid with strided convs.

    Each step is ``conv(k, stride, pad) -> LayerNorm2d -> GELU`` and multiplies the channels by
    ``stride**2`` (1 -> 4 -> 16 -> 64 -> 256 for stride 2, total stride 16); a final 1x1 conv
    maps to ``embed_dim``.

    Shapes: ``(B, 1, S, S)`` float (scaled sigmoid of logits) -> ``(B, embed_dim, S/16, S/16)``.
    """

    def __init__(self, embed_dim: int = 256, kernel_size: int = 3, stride: int = 2,
                 padding: int = 1, total_stride: int = 16) -> None:
        super().__init__()
        num_layers = int(round(math.log(total_stride) / math.log(stride)))
        if stride ** num_layers != total_stride:
            raise ValueError(f"total_stride {total_stride} is not a power of stride {stride}")
        layers: List[nn.Module] = []
        c_in = 1
        for _ in range(num_layers):
            c_out = c_in * stride ** 2
            layers += [nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding),
                       LayerNorm2d(c_out), nn.GELU()]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv -> LN -> Linear(4x) -> GELU -> Linear -> layer scale,
    plus the residual. Runs the MLP channels-last (as upstream: faster in PyTorch).

    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int, kernel_size: int = 7, padding: int = 3, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-6, use_dwconv: bool = True) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding,
                                groups=dim if use_dwconv else 1)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (nn.Parameter(layer_scale_init_value * torch.ones(dim))
                      if layer_scale_init_value > 0 else None)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Fuser(nn.Module):
    """A stack of :class:`CXBlock` (with an optional 1x1 input projection, off upstream)."""

    def __init__(self, dim: int, num_layers: int = 2, kernel_size: int = 7,
                 input_projection: bool = False, layer_scale_init_value: float = 1e-6) -> None:
        super().__init__()
        self.proj: nn.Module = (nn.Conv2d(dim, dim, kernel_size=1) if input_projection
                                else nn.Identity())
        self.layers = nn.ModuleList(
            CXBlock(dim, kernel_size=kernel_size, padding=kernel_size // 2,
                    layer_scale_init_value=layer_scale_init_value)
            for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Encode (frame features, mask) into a memory.

    Args:
        out_dim: channels of the memory (``mem_dim``; 64 for the official models).
        in_dim: channels of the frame features (``d_model``; 256).
        fuser_layers / fuser_kernel: the ConvNeXt fuser.
        mask_kernel / mask_stride / mask_total_stride: the :class:`MaskDownSampler`.
    """

    def __init__(self, out_dim: int = 64, in_dim: int = 256, fuser_layers: int = 2,
                 fuser_kernel: int = 7, mask_kernel: int = 3, mask_stride: int = 2,
                 mask_total_stride: int = 16) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(
            in_dim, kernel_size=mask_kernel, stride=mask_stride, padding=mask_kernel // 2,
            total_stride=mask_total_stride)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim, num_layers=fuser_layers, kernel_size=fuser_kernel)
        self.position_encoding = PositionEmbeddingSine(out_dim)
        self.out_proj: nn.Module = (nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim
                                    else nn.Identity())

    @classmethod
    def from_config(cls, cfg: SAM2Config) -> "MemoryEncoder":
        """Build from a :class:`~sam2_plugins.configs.SAM2Config`."""
        m = cfg.memory
        return cls(out_dim=m.mem_dim, in_dim=cfg.d_model, fuser_layers=m.fuser_layers,
                   fuser_kernel=m.fuser_kernel, mask_kernel=m.mask_downsampler_kernel,
                   mask_stride=m.mask_downsampler_stride,
                   mask_total_stride=m.mask_downsampler_total_stride)

    def forward(self, pix_feat: Tensor, masks: Tensor,
                skip_mask_sigmoid: bool = False) -> Dict[str, Union[Tensor, List[Tensor]]]:
        """
        Args:
            pix_feat: ``(B, in_dim, H, W)`` raw backbone features of the frame (stride 16).
            masks: ``(B, 1, 16H, 16W)`` mask logits, or already-scaled probabilities when
                ``skip_mask_sigmoid`` (the model passes ``sigmoid(logits) * 20 - 10``).
            skip_mask_sigmoid: do not apply a sigmoid to ``masks`` first.

        Returns:
            ``{"vision_features": (B, out_dim, H, W), "vision_pos_enc": [(B, out_dim, H, W)]}``
            (the position encoding in the features' dtype).
        """
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        masks = self.mask_downsampler(masks)
        x = self.pix_feat_proj(pix_feat.to(masks.device)) + masks
        x = self.out_proj(self.fuser(x))
        pos = self.position_encoding(x).to(x.dtype)
        return {"vision_features": x, "vision_pos_enc": [pos]}
