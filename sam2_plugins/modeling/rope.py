"""2D axial rotary position encoding (RoPE) and the attention layer that uses it.

Memory attention uses RoPE instead of additive position embeddings for its queries (the
current frame's ``H x W`` feature tokens) and for the spatial-memory keys (each stored frame is
another ``H x W`` grid, so the same rotations repeat per frame). Object-pointer tokens appended
after the spatial memories carry no grid position and are left unrotated.

Conventions (upstream's, needed for checkpoint parity): token ``t`` of a row-major grid of width
``W`` sits at ``x = t % W``, ``y = t // W``; a head's channels are read as consecutive
(even, odd) pairs, i.e. complex numbers; the first ``head_dim / 4`` pairs rotate with ``x`` and
the rest with ``y``, at frequencies ``1 / theta ** (4 i / head_dim)``.

The rotation is kept as real ``cos``/``sin`` tables and applied in real arithmetic on GPUs,
MPS and under ``torch.compile`` (complex tensors are not supported everywhere); on the CPU it
is one complex multiply, as upstream computes it, which is ~3x cheaper there. The tables are
never part of the state dict, are computed in float32 on the device of the input and are
rebuilt when the grid size changes.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .attention_cpu import blocked_attention, use_blocked_attention, use_late_value_attention
from .transformer import Attention

__all__ = ["compute_axial_cis", "compute_axial_cos_sin", "apply_rotary_enc", "RoPEAttention"]


def _axial_angles(dim: int, end_x: int, end_y: int, theta: float,
                  device: Optional[torch.device] = None) -> Tensor:
    """Rotation angles ``(end_x * end_y, dim // 2)``, float32: x-pairs first, then y-pairs."""
    if dim % 4 != 0:
        raise ValueError(f"RoPE head dim must be a multiple of 4, got {dim}")
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4, device=device)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32, device=device)
    t_x = t % end_x
    t_y = torch.div(t, end_x, rounding_mode="floor")
    return torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)


def compute_axial_cis(dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> Tensor:
    """Upstream-compatible complex rotation table.

    Args:
        dim: per-head channel count (multiple of 4).
        end_x, end_y: grid width and height (tokens).
        theta: base of the frequencies.

    Returns:
        ``(end_x * end_y, dim // 2)`` complex64 tensor ``exp(i * angle)`` (on the CPU).
    """
    angles = _axial_angles(dim, int(end_x), int(end_y), theta)
    return torch.polar(torch.ones_like(angles), angles)


def compute_axial_cos_sin(dim: int, end_x: int, end_y: int, theta: float = 10000.0,
                          device: Optional[torch.device] = None) -> Tuple[Tensor, Tensor]:
    """The same table as :func:`compute_axial_cis` as real ``(cos, sin)``, each ``(N, dim//2)``."""
    angles = _axial_angles(dim, int(end_x), int(end_y), theta, device)
    return angles.cos(), angles.sin()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor, repeat: bool) -> Tensor:
    """Rotate ``x`` ``(..., N', D)`` by tables ``(N, D/2)``; ``N' = r * N`` when ``repeat``."""
    n = cos.shape[0]
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    if repeat:
        if x.shape[-2] % n != 0:
            raise ValueError(
                f"RoPE keys ({x.shape[-2]} tokens) are not a whole number of {n}-token grids")
        # (..., r, N, D/2, 2): the same grid rotation is reused for every memory frame.
        pairs = pairs.reshape(*x.shape[:-2], x.shape[-2] // n, n, pairs.shape[-2], 2)
    elif x.shape[-2] != n:
        raise ValueError(f"RoPE table has {n} positions but the input has {x.shape[-2]} tokens")
    if x.device.type == "cpu" and not torch.compiler.is_compiling():
        # One vectorised complex multiply (as upstream computes it): on CPU the real form's
        # four products, stack and copies cost ~3x more, and the result is the same.
        try:  # a strided view works when its strides are even; no copy then
            xc = torch.view_as_complex(pairs)
        except RuntimeError:
            xc = torch.view_as_complex(pairs.contiguous())
        out = torch.view_as_real(xc * torch.complex(cos, sin))
        return out.reshape(x.shape).to(x.dtype)
    re, im = pairs[..., 0], pairs[..., 1]
    out = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)
    return out.reshape(x.shape).to(x.dtype)


def _rotate_inplace(x: Tensor, cos: Tensor, sin: Tensor, repeat: bool) -> None:
    """:func:`_rotate` of a float32 CPU tensor, written over ``x`` (inference only)."""
    n = cos.shape[0]
    if x.shape[-2] % n != 0 or (not repeat and x.shape[-2] != n):
        raise ValueError(f"RoPE table has {n} positions; cannot rotate {x.shape[-2]} tokens")
    pairs = x.view(*x.shape[:-2], x.shape[-2] // n, n, x.shape[-1] // 2, 2)  # a view: in place
    torch.view_as_complex(pairs).mul_(torch.complex(cos, sin))


def apply_rotary_enc(
    xq: Tensor,
    xk: Tensor,
    freqs_cis: Union[Tensor, Tuple[Tensor, Tensor]],
    repeat_freqs_k: bool = False,
) -> Tuple[Tensor, Tensor]:
    """Rotate queries and keys (upstream-compatible signature).

    Args:
        xq: queries ``(B, heads, N, D)``.
        xk: keys ``(B, heads, Nk, D)``; ``Nk`` may be 0 (returned unchanged).
        freqs_cis: complex ``(N, D/2)`` from :func:`compute_axial_cis`, or a ``(cos, sin)`` pair.
        repeat_freqs_k: keys are ``Nk / N`` stacked grids, each rotated like the queries.

    Returns:
        ``(xq_rot, xk_rot)`` in the input dtypes; the rotation is computed in float32.
    """
    if isinstance(freqs_cis, tuple):
        cos, sin = freqs_cis
    else:
        cos, sin = freqs_cis.real, freqs_cis.imag
    cos, sin = cos.to(xq.device, torch.float32), sin.to(xq.device, torch.float32)
    q_out = _rotate(xq, cos, sin, repeat=False)
    if xk.shape[-2] == 0:
        return q_out, xk
    return q_out, _rotate(xk, cos, sin, repeat=repeat_freqs_k)


class RoPEAttention(Attention):
    """Multi-head attention whose queries and (leading) keys get 2D axial RoPE.

    Same parameters (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``) and constructor as
    :class:`~sam2_plugins.modeling.transformer.Attention`, plus:

    Args:
        rope_theta: frequency base.
        rope_k_repeat: keys are several grids of the query's size (cross-attention to memories);
            without it the key count must equal the query count.
        feat_sizes: ``(W, H)`` of the query grid the tables are built for first; other square
            grids are handled by rebuilding the tables (``N`` must then be a perfect square).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        dropout: float = 0.0,
        kv_in_dim: Optional[int] = None,
        *,
        rope_theta: float = 10000.0,
        rope_k_repeat: bool = False,
        feat_sizes: Tuple[int, int] = (64, 64),
    ) -> None:
        super().__init__(embedding_dim, num_heads, downsample_rate=downsample_rate,
                         dropout=dropout, kv_in_dim=kv_in_dim)
        self.rope_heads = num_heads
        self.rope_head_dim = (embedding_dim // downsample_rate) // num_heads
        self.rope_dropout = float(dropout)
        self.rope_theta = float(rope_theta)
        self.rope_k_repeat = bool(rope_k_repeat)
        self.feat_sizes = (int(feat_sizes[0]), int(feat_sizes[1]))
        # Plain attributes, not buffers: they must stay float32 under ``model.half()`` and never
        # enter the state dict. Built lazily on the first forward, on the input's device.
        self._rope_cos: Optional[Tensor] = None
        self._rope_sin: Optional[Tensor] = None

    def _tables(self, n: int, device: torch.device) -> Tuple[Tensor, Tensor]:
        cos = self._rope_cos
        if torch.compiler.is_compiling():
            # Inside a compiled graph: no staleness checks (they break the graph); tables of
            # the right size are constants there, others are computed in the graph.
            if cos is not None and cos.shape[0] == n and cos.device == device:
                assert self._rope_sin is not None
                return cos, self._rope_sin
            w, h = self.feat_sizes
            if w * h != n:
                w = h = math.isqrt(n)
            return compute_axial_cos_sin(self.rope_head_dim, w, h, self.rope_theta, device=device)
        # Tables first built under torch.inference_mode() (a predictor, or Lightning's
        # validation) are inference tensors, which autograd refuses to save: rebuild them.
        stale = cos is not None and cos.is_inference() and not torch.is_inference_mode_enabled()
        if cos is None or stale or cos.shape[0] != n or cos.device != device:
            w, h = self.feat_sizes
            if w * h != n:
                side = math.isqrt(n)
                if side * side != n:
                    raise ValueError(
                        f"RoPE attention needs a square query grid; got {n} tokens "
                        f"(configured for {w}x{h})")
                w = h = side
            self._rope_cos, self._rope_sin = compute_axial_cos_sin(
                self.rope_head_dim, w, h, self.rope_theta, device=device)
        assert self._rope_cos is not None and self._rope_sin is not None
        return self._rope_cos, self._rope_sin

    @staticmethod
    def _heads(x: Tensor, heads: int) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, heads, c // heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0,
                key_mask: Optional[Tensor] = None) -> Tensor:
        """Attend ``q`` ``(B, N, C)`` to ``k``/``v`` ``(B, Nk, C_kv)``; returns ``(B, N, C)``.

        ``N`` is a query grid (``H * W`` tokens, row-major). The last ``num_k_exclude_rope``
        keys (object-pointer tokens) are not rotated; the others are ``Nk' / N`` grids when
        ``rope_k_repeat`` (memories), else exactly ``N`` tokens (self-attention).
        ``key_mask`` ``(B, Nk)`` bool (True = attend) lets a batch whose rows have different
        memories be padded to one length (not in upstream; ``None`` = all keys).

        In bf16 on a CPU outside autograd, the attention runs as blocked bf16 matmuls
        (:mod:`.attention_cpu`), and when the values are narrower than the attention width
        (memory tokens: 64 channels vs 256) the value projection moves after the attention:
        ``P (X W^T + b) = (P X) W^T + b`` because each row of ``P`` sums to one, so the
        ``N x Nk`` product runs on 64 channels instead of 256. That late projection is used in
        float32 CPU inference too (blocked float32 matmuls): the fused kernel cannot do it.
        """
        heads = self.rope_heads
        q = self._heads(self.q_proj(q), heads)
        no_dropout = not (self.training and self.rope_dropout > 0)
        late_v = no_dropout and use_late_value_attention(q, self.kv_in_dim)
        fast = late_v or (no_dropout and use_blocked_attention(q))
        if fast:
            # Keys projected and rotated in float32, in place, then cast to bf16 once: the
            # rotation needs float32 anyway, and this saves two passes over Nk x 256 keys.
            with torch.autocast("cpu", enabled=False):
                k = F.linear(k.float(), self.k_proj.weight.float(),
                             None if self.k_proj.bias is None else self.k_proj.bias.float())
            k = self._heads(k, heads)
        else:
            k = self._heads(self.k_proj(k), heads)
        if not late_v:
            v = self._heads(self.v_proj(v), heads)

        n_q, n_k = q.shape[-2], k.shape[-2]
        if n_q != n_k and not self.rope_k_repeat:
            raise ValueError(
                f"query ({n_q}) and key ({n_k}) lengths differ but rope_k_repeat is False")
        if not 0 <= num_k_exclude_rope <= n_k:
            raise ValueError(f"num_k_exclude_rope={num_k_exclude_rope} outside [0, {n_k}]")
        cos, sin = self._tables(n_q, q.device)
        n_rope = n_k - num_k_exclude_rope
        q = _rotate(q, cos, sin, repeat=False)
        if fast:
            if n_rope > 0:
                _rotate_inplace(k[:, :, :n_rope], cos, sin, repeat=self.rope_k_repeat)
            k = k.to(q.dtype)
        elif n_rope > 0:
            k_rot = _rotate(k[:, :, :n_rope], cos, sin, repeat=self.rope_k_repeat)
            if not num_k_exclude_rope:
                k = k_rot
            elif torch.is_grad_enabled():
                k = torch.cat([k_rot, k[:, :, n_rope:]], dim=2)
            else:  # k is this call's own projection: overwrite in place instead of a copy
                k[:, :, :n_rope] = k_rot
        mask = None
        if key_mask is not None:
            if key_mask.shape != (k.shape[0], n_k):
                raise ValueError(f"key_mask must be ({k.shape[0]}, {n_k}), got {tuple(key_mask.shape)}")
            mask = key_mask.to(torch.bool)

        if fast:
            if late_v:
                x = v.to(q.dtype).unsqueeze(1).expand(-1, heads, -1, -1)  # (B, heads, Nk, C_kv)
                out = blocked_attention(q, k, x, key_mask=mask)       # (B, heads, N, C_kv)
                w = self.v_proj.weight.to(out.dtype).reshape(heads, -1, self.kv_in_dim)
                out = torch.matmul(out, w.transpose(-1, -2))           # (B, heads, N, d_head)
                if self.v_proj.bias is not None:
                    out = out + self.v_proj.bias.to(out.dtype).reshape(heads, 1, -1)
            else:
                out = blocked_attention(q, k, v, key_mask=mask)
        else:
            # Same value width as the queries keeps SDPA on its fused (flash) CPU/GPU
            # kernels; a narrower value would fall back to the math path that materialises
            # N x Nk weights.
            p = self.rope_dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if mask is None else mask[:, None, None, :], dropout_p=p)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))
