"""Position encodings of the image side: 2D sine (FPN neck, memory encoder) and random Fourier
features (prompt encoder).

Rotary encodings (memory attention) live in :mod:`sam2_plugins.modeling.rope`.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

__all__ = ["PositionEmbeddingSine", "PositionEmbeddingRandom"]


class PositionEmbeddingSine(nn.Module):
    """The DETR-style 2D sine/cosine encoding of a feature map's pixel grid.

    Row ``i`` (1-based) sits at ``i / (H + 1e-6) * scale`` and column ``j`` at
    ``j / (W + 1e-6) * scale`` (``scale`` = 2π by default). Each axis gets ``num_pos_feats / 2``
    channels: ``pos / temperature ** (2 * (k // 2) / (num_pos_feats / 2))`` with sine on even
    and cosine on odd ``k``. Output channels are ``cat(y_channels, x_channels)``.

    The module has no parameters and its output depends only on ``(H, W)``, so results are
    cached per grid size, device and dtype; ``forward`` returns a read-only ``expand`` view of the
    cache (do not modify it in place).

    Args:
        num_pos_feats: output channels (even).
        temperature: frequency base.
        normalize: divide positions by the grid side (must be True when ``scale`` is given).
        scale: multiplier of the normalised positions (default 2π).
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000, normalize: bool = True,
                 scale: Optional[float] = None) -> None:
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats // 2  # channels per axis (upstream's meaning)
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self._cache: Dict[Tuple[int, int, str, bool], torch.Tensor] = {}

    def _axis(self, n: int, device: torch.device) -> torch.Tensor:
        """Encoding of positions 1..n along one axis: (n, num_pos_feats // 2 * 2) float32."""
        pos = torch.arange(1, n + 1, dtype=torch.float32, device=device)
        if self.normalize:
            pos = pos / (pos[-1:] + 1e-6) * self.scale
        k = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * (k // 2) / self.num_pos_feats)
        ang = pos[:, None] / dim_t
        # sin of the even channels and cos of the odd ones, interleaved back in channel order
        return torch.stack((ang[:, 0::2].sin(), ang[:, 1::2].cos()), dim=2).flatten(1)

    def encode_grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """The encoding of an ``h x w`` grid: (2 * num_pos_feats, h, w) float32 (cached)."""
        # a tensor made under inference_mode cannot enter autograd later (training after a
        # validation pass), so each mode keeps its own copy
        key = (h, w, str(device), torch.is_inference_mode_enabled())
        pe = self._cache.get(key)
        if pe is None:
            c = self.num_pos_feats
            pos_y = self._axis(h, device).t()[:, :, None].expand(c, h, w)
            pos_x = self._axis(w, device).t()[:, None, :].expand(c, h, w)
            pe = torch.cat((pos_y, pos_x), dim=0)
            self._cache[key] = pe
        return pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode the grid of ``x`` (B, C, H, W) -> (B, 2 * num_pos_feats, H, W) float32.

        Only the shape and device of ``x`` are used.
        """
        if x.dim() != 4:
            raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        pe = self.encode_grid(x.shape[-2], x.shape[-1], x.device)
        return pe.unsqueeze(0).expand(x.shape[0], -1, -1, -1)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> PositionEmbeddingSine:
        # .to()/.cuda() move modules; the cache is keyed by device, but dropping it keeps
        # stale copies from piling up.
        self._cache = {}
        return super()._apply(fn, recurse)


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of 2D coordinates (the prompt encoder's encoding).

    A point with coordinates ``c`` in [0, 1]² is encoded as ``[sin(2π u), cos(2π u)]`` with
    ``u = (2c - 1) @ G`` and ``G`` the (2, num_pos_feats) Gaussian buffer
    ``positional_encoding_gaussian_matrix`` (saved in checkpoints). Output channels:
    ``2 * num_pos_feats``.

    Args:
        num_pos_feats: frequencies per coordinate pair (output has twice as many channels).
        scale: standard deviation of ``G`` at initialisation (1 when None or <= 0).
    """

    positional_encoding_gaussian_matrix: torch.Tensor  # buffer, registered in __init__

    def __init__(self, num_pos_feats: int = 64, scale: Optional[float] = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix",
                             scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode coordinates in [0, 1]: (..., 2) xy -> (..., 2 * num_pos_feats)."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """Encode the pixel centres of an ``(h, w)`` grid -> (2 * num_pos_feats, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor,
                            image_size: Tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates.

        Args:
            coords_input: (B, N, 2) xy in pixels of an image of ``image_size``.
            image_size: (H, W) of that image; x is divided by W and y by H.

        Returns:
            (B, N, 2 * num_pos_feats) float32.
        """
        h, w = image_size
        if not coords_input.is_floating_point():
            coords_input = coords_input.float()
        scale = torch.tensor([w, h], dtype=coords_input.dtype, device=coords_input.device)
        return self._pe_encoding((coords_input / scale).to(torch.float))
