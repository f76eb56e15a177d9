"""Hiera, the hierarchical ViT trunk of SAM 2 (Ryali et al. 2023, "Hiera").

Tokens stay channels-last, ``(B, H, W, C)``, through the whole trunk. Four stages run at
strides 4, 8, 16 and 32 of the input; the first block of stages 2..4 doubles the width and the
heads and max-pools its queries 2x2 (q-pooling), which halves the grid. Most blocks attend
inside non-overlapping square windows; a few (``global_att_blocks``) attend globally.

Facts that matter for parity with upstream (and checkpoint keys, which are upstream's):

* the first block of a stage still uses the *previous* stage's window size;
* windows are zero-padded at the bottom/right when the grid is not a multiple of the window,
  and the padded tokens are *not* masked out of attention (their keys are the qkv bias);
* the position embedding is a bicubic resize of ``pos_embed`` to the token grid plus the
  ``pos_embed_window`` tile repeated over it.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import HieraConfig
from .attention_cpu import blocked_attention, use_blocked_attention
from .common import MLP, DropPath, fused_linear
from .derived_cache import DerivedCache

__all__ = ["Hiera", "MultiScaleBlock", "MultiScaleAttention", "PatchEmbed",
           "window_partition", "window_unpartition"]


def window_partition(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Cut a token grid into square windows, zero-padding bottom/right as needed.

    Args:
        x: (B, H, W, C) tokens.
        window: window side in tokens.

    Returns:
        ``(windows, (Hp, Wp))``: windows of shape (B * nH * nW, window, window, C), in row-major
        window order per image, and the padded grid size.
    """
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.transpose(2, 3).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, pad_hw: Tuple[int, int],
                       hw: Tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window, window, C) -> (B, H, W, C)."""
    hp, wp = pad_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.transpose(2, 3).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


def _max_pool_nhwc(x: torch.Tensor, stride: Tuple[int, int]) -> torch.Tensor:
    """Non-overlapping max-pool of a channels-last grid (B, H, W, C) -> (B, H//sh, W//sw, C).

    Same values as ``nn.MaxPool2d(stride, stride)`` (trailing rows/columns that do not fill a
    window are dropped).
    """
    if tuple(stride) == (2, 2) and not x.is_contiguous():
        # Pooled queries are a strided slice of the qkv output; the pooling kernel would first
        # copy them, while four strided slices and three maxima read them in place.
        h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
        return torch.maximum(torch.maximum(x[:, 0:h:2, 0:w:2], x[:, 0:h:2, 1:w:2]),
                             torch.maximum(x[:, 1:h:2, 0:w:2], x[:, 1:h:2, 1:w:2]))
    # A contiguous (B, H, W, C) tensor permuted to NCHW is channels-last memory, which the
    # pooling kernel handles without a copy.
    y = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return y.permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """Image to tokens: a strided conv (kernel 7, stride 4, padding 3 for SAM 2).

    ``(B, 3, H, W)`` float -> ``(B, H/4, W/4, embed_dim)`` channels-last (contiguous).
    """

    def __init__(self, kernel_size: Tuple[int, int] = (7, 7), stride: Tuple[int, int] = (4, 4),
                 padding: Tuple[int, int] = (3, 3), in_chans: int = 3,
                 embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride,
                              padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A channels-last input makes the conv write channels-last output, so the permute to
        # (B, H, W, C) below is already contiguous and no copy is needed later.
        x = self.proj(x.contiguous(memory_format=torch.channels_last))
        return x.permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) grid, with optional q-pooling.

    With ``q_stride`` set, queries are max-pooled over the grid, so the output grid is smaller:
    (B, H, W, dim) -> (B, H // s, W // s, dim_out).
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int,
                 q_stride: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        if dim_out % num_heads != 0:
            raise ValueError(f"dim_out {dim_out} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H', W', dim_out), plus ``residual`` (same shape) if given."""
        b, h, w, _ = x.shape
        nh = self.num_heads
        # (B, HW, 3, nh, hd) -> three (B, nh, HW, hd) views; SDPA takes strided inputs, so
        # no copies are made here.
        qkv = fused_linear(x, self.qkv).view(b, h * w, 3, nh, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.q_stride is not None:
            # Pool the queries over the (window) grid: (B, nh, HW, hd) -> (B, H, W, nh*hd)
            q = q.transpose(1, 2).reshape(b, h, w, -1)
            q = _max_pool_nhwc(q, self.q_stride)
            h, w = q.shape[1], q.shape[2]
            q = q.reshape(b, h * w, nh, -1).transpose(1, 2)
        if use_blocked_attention(q) and q.shape[-2] >= 1024:
            # bf16 inference on the CPU: torch's SDPA kernel gains nothing from bf16 there,
            # plain bf16 matmuls do (the global-attention blocks, 4096 tokens at 1024²)
            out = blocked_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, HW', hd)
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return fused_linear(out, self.proj, residual=residual)


class MultiScaleBlock(nn.Module):
    """A pre-norm transformer block on a (B, H, W, C) grid: (windowed) attention + MLP.

    When ``dim != dim_out`` (first block of a stage) the residual is ``proj(norm1(x))``,
    max-pooled like the queries.
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, q_stride: Optional[Tuple[int, int]] = None,
                 window_size: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride=q_stride)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2,
                       activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H', W', dim_out); H' = H // q_stride when pooling."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = fused_linear(x, self.proj)
            if self.q_stride is not None:
                shortcut = _max_pool_nhwc(shortcut, self.q_stride)
        # With stochastic depth active, branches must be scaled before the residual add.
        plain = isinstance(self.drop_path, nn.Identity) or not self.training

        window = self.window_size
        if window == 0:
            if plain:
                x = self.attn(x, residual=shortcut)  # residual add fused into the projection
            else:
                x = shortcut + self.drop_path(self.attn(x))
        else:
            x, pad_hw = window_partition(x, window)
            x = self.attn(x)
            h, w = shortcut.shape[1], shortcut.shape[2]
            if self.q_stride is not None:
                # Windows shrank with the queries; the padded grid is recomputed from the
                # pooled grid size, as upstream does.
                window = window // self.q_stride[0]
                pad_hw = (h + (-h) % window, w + (-w) % window)
            if pad_hw == (h, w) and plain:
                # No padding: add the windows to the residual through a strided view, which
                # saves the copy that un-partitioning would make.
                b, c = shortcut.shape[0], shortcut.shape[3]
                win = x.view(b, h // window, w // window, window, window, c).transpose(2, 3)
                x = shortcut.view(b, h // window, window, w // window, window, c) + win
                x = x.reshape(b, h, w, c)
            else:
                x = window_unpartition(x, window, pad_hw, (h, w))
                x = shortcut + self.drop_path(x)

        hidden = self.norm2(x)
        if plain and isinstance(self.mlp.act, nn.GELU) and self.mlp.act.approximate == "none":
            hidden = fused_linear(hidden, cast(nn.Linear, self.mlp.layers[0]), gelu=True)
            return fused_linear(hidden, cast(nn.Linear, self.mlp.layers[1]), residual=x.contiguous())
        return x + self.drop_path(self.mlp(hidden))


class Hiera(nn.Module):
    """The Hiera trunk described by a :class:`~sam2_plugins.configs.HieraConfig`.

    Input: (B, 3, H, W) normalised float images (H, W multiples of 32 for the official
    configs). Output: a list of the four stage outputs, fine to coarse, each (B, C_i, H_i, W_i)
    with C_i = embed_dim * 2**i and H_i = H / (4 * 2**i). The returned tensors are NCHW views
    of channels-last memory (like upstream's).

    Attributes ``channel_list`` (coarse to fine, as the FPN neck expects), ``stage_ends`` and
    ``q_pool_blocks`` follow upstream.
    """

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        stages = tuple(cfg.stages)
        if len(stages) != len(cfg.window_spec):
            raise ValueError(f"stages {stages} and window_spec {cfg.window_spec} differ in length")
        if not 0 <= cfg.q_pool <= len(stages) - 1:
            raise ValueError(f"q_pool must be in [0, {len(stages) - 1}], got {cfg.q_pool}")
        self.config = cfg
        self.window_spec = tuple(cfg.window_spec)
        self.global_att_blocks = tuple(cfg.global_att_blocks)
        self.q_stride = cast(Tuple[int, int], tuple(cfg.q_stride))
        depth = sum(stages)
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        self.q_pool_blocks = [e + 1 for e in self.stage_ends[:-1]][: cfg.q_pool]

        embed_dim = cfg.embed_dim
        k = cfg.patch_kernel
        self.patch_embed = PatchEmbed(kernel_size=(k, k), stride=(4, 4),
                                      padding=(k // 2, k // 2), embed_dim=embed_dim)
        self.window_pos_embed_bkg_spatial_size = tuple(cfg.window_pos_embed_bkg_spatial_size)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, embed_dim, *self.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, embed_dim, self.window_spec[0], self.window_spec[0]))

        # on the CPU explicitly: models built under ``torch.device("meta")`` (shape checks)
        # cannot read a meta tensor back
        dpr = torch.linspace(0, cfg.drop_path_rate, depth, device="cpu").tolist()
        num_heads = cfg.num_heads
        stage = 0
        self.blocks = nn.ModuleList()
        for i in range(depth):
            dim_out = embed_dim
            # The window lags one block: a stage's first block keeps the previous window.
            window = 0 if i in self.global_att_blocks else self.window_spec[stage]
            if i - 1 in self.stage_ends:
                dim_out = embed_dim * 2
                num_heads = num_heads * 2
                stage += 1
            self.blocks.append(MultiScaleBlock(
                dim=embed_dim, dim_out=dim_out, num_heads=num_heads, mlp_ratio=cfg.mlp_ratio,
                drop_path=dpr[i],
                q_stride=self.q_stride if i in self.q_pool_blocks else None,
                window_size=window))
            embed_dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]
        self._pos_cache = DerivedCache()

    def _compute_pos_embed(self, hw: Tuple[int, int]) -> torch.Tensor:
        h, w = hw
        win = self.pos_embed_window
        if h % win.shape[-2] or w % win.shape[-1]:
            raise ValueError(f"token grid {h}x{w} is not a multiple of the position-embedding "
                             f"window {tuple(win.shape[-2:])}")
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        pos = pos + win.tile(1, 1, h // win.shape[-2], w // win.shape[-1])
        return pos.permute(0, 2, 3, 1).contiguous()

    def _get_pos_embed(self, hw: Tuple[int, int]) -> torch.Tensor:
        """Position embedding for an (h, w) token grid: (1, h, w, C) channels-last.

        Bicubic resize of ``pos_embed`` plus the tiled ``pos_embed_window``. When no gradient
        is needed the result is cached until either parameter changes (see
        :class:`~sam2_plugins.modeling.derived_cache.DerivedCache`; this also holds for a model
        built under ``torch.inference_mode()``): the bicubic resize is a measurable share of a
        CPU forward pass.
        """
        grad = torch.is_grad_enabled() and (self.pos_embed.requires_grad
                                            or self.pos_embed_window.requires_grad)
        # Under torch.compile the resize is part of the graph (the cache's checks would break it).
        if grad or torch.compiler.is_compiling():
            return self._compute_pos_embed(hw)
        return self._pos_cache.get((self.pos_embed, self.pos_embed_window), tuple(hw),
                                   lambda: self._compute_pos_embed(hw))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Hiera:
        self._pos_cache.clear()
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(B, 3, H, W) -> [stage outputs, fine to coarse], each (B, C_i, H_i, W_i)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        x = self.patch_embed(x)
        x = x + self._get_pos_embed((x.shape[1], x.shape[2]))
        outputs = []
        ends = set(self.stage_ends)
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
