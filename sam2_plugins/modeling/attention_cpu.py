"""Attention for bf16 inference on CPUs, built from plain bf16 matmuls.

Why: torch's fused CPU attention kernel (``scaled_dot_product_attention``) computes its dot
products in float32 even for bf16 inputs, so it gains nothing from bf16 (measured on an AMD
EPYC with ``avx512_bf16``, one thread: 57 GFLOPS fp32, 58 bf16), while a plain bf16 matmul
reaches 140+ GFLOPS there. The memory attention of SAM 2 (4096 queries over ~7 x 4096 memory
tokens, per object, layer and frame) is where a video spends most of its time, so we compute
``softmax(Q K^T / sqrt(d)) V`` ourselves: a block of queries at a time (the block's scores stay
in the CPU's cache), scores and probabilities in bf16, the softmax accumulated in float32
inside torch's kernel.

In float32 the fused kernel is kept, as upstream does, except for the memory cross-attention
when its values are narrower than its queries (64-channel memory tokens vs 256): there the
value projection can move after the attention (see ``RoPEAttention``), which no fused kernel
allows (they need values as wide as queries); the ``N x Nk`` product then runs on 64 channels
instead of 256 and the whole attention is ~25% cheaper. Results differ from the fused kernel
by float32 rounding only (~1e-7 relative).
"""

from __future__ import annotations

import functools
from typing import List, Optional

import torch
from torch import Tensor

__all__ = ["cpu_has_fast_bf16", "use_blocked_attention", "use_late_value_attention",
           "blocked_attention"]

# Queries per block and a cap on the bytes of one block's scores. Measured on an EPYC
# (avx512_bf16) with 2 threads, 4096 queries x 28,688 memory keys: blocks of 512 rows were
# fastest in both dtypes (fp32 0.52 s, bf16 0.235 s per call; 128 rows: 0.61 / 0.285 s; 64 rows:
# 0.76 / 0.35 s): small blocks leave the threads of each matmul too little work. The byte cap
# only bites for very long memories (large inputs), where it bounds the scratch buffer.
_BLOCK_ROWS = 512
_BLOCK_BYTES = 64 << 20


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 dot-product instructions (AVX512-BF16 or AMX).

    Without them bf16 matmuls are emulated and slower than fp32, so bf16 is no speed-up.
    Reads ``/proc/cpuinfo`` (Linux); elsewhere returns False.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def use_blocked_attention(q: Tensor) -> bool:
    """Whether :func:`blocked_attention` should replace SDPA for these (projected) queries:
    bf16 tensors on the CPU, outside autograd (it is inference-only by design: its blocks
    would keep every block's scores alive for the backward pass)."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16 and not torch.is_grad_enabled()


def use_late_value_attention(q: Tensor, value_dim: int) -> bool:
    """Whether an attention whose raw values have ``value_dim`` channels, narrower than the
    (projected) queries ``q`` ``(..., D)``, should run blocked with the value projection moved
    after it: on the CPU in bf16 or float32, outside autograd."""
    return (q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float32)
            and not torch.is_grad_enabled() and value_dim < q.shape[-1])


def _softmax_(s: Tensor) -> None:
    """Softmax over the last axis, in place."""
    try:
        torch.ops.aten._softmax.out(s, -1, False, out=s)
    except (AttributeError, RuntimeError):  # an op registry without the out= variant
        s.copy_(torch.softmax(s, dim=-1))


def blocked_attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Optional[Tensor] = None,
                      block: Optional[int] = None) -> Tensor:
    """``softmax(q k^T / sqrt(D)) v`` one block of queries at a time, in ``q``'s dtype.

    Args:
        q: ``(B, heads, N, D)`` queries.
        k: ``(B, heads, Nk, D)`` keys (same dtype as ``q``).
        v: ``(B, heads, Nk, Dv)`` values; ``Dv`` may differ from ``D`` (the memory attention
            passes its 64-channel memory tokens and projects after the attention).
        key_mask: ``(B, Nk)`` bool, True where a row may attend to a key; ``None``: all keys.
            A row with no key allowed gives NaN (as SDPA).
        block: queries per block; default ``_BLOCK_ROWS`` (512), fewer when ``block x Nk``
            scores would pass ``_BLOCK_BYTES`` (never under 64; a multiple of 32).

    Returns:
        ``(B, heads, N, Dv)`` in ``q``'s dtype.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be (B, heads, N, D); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    B, H, N, D = q.shape
    Nk = k.shape[-2]
    if k.shape[:2] != (B, H) or v.shape[:3] != k.shape[:3] or k.shape[-1] != D:
        raise ValueError(f"shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if block is None:
        block = max(64, min(_BLOCK_ROWS, _BLOCK_BYTES // max(1, q.element_size() * Nk)) // 32 * 32)
    # Scale the queries, not the N x Nk scores (for D = 256 the scale is 1/16: exact in bf16).
    qs = q * (D ** -0.5)
    # A contiguous (D, Nk) right operand: a transposed view makes the bf16 matmul ~2x slower.
    kt = k.transpose(-1, -2).contiguous()
    v = v.to(q.dtype)
    neg = None
    if key_mask is not None:
        if key_mask.shape != (B, Nk):
            raise ValueError(f"key_mask must be ({B}, {Nk}), got {tuple(key_mask.shape)}")
        neg = ~key_mask.to(device=q.device, dtype=torch.bool)
    # One scores buffer, reused: scores and probabilities are written in place (~3% faster
    # than a fresh block-sized allocation per step).
    buf = q.new_empty(min(block, N), Nk)
    rows: List[Tensor] = []
    for b in range(B):
        for h in range(H):
            kt_bh, v_bh = kt[b, h], v[b, h]
            parts = []
            for i in range(0, N, block):
                qb = qs[b, h, i:i + block]
                s = torch.mm(qb, kt_bh, out=buf[:qb.shape[0]])
                if neg is not None:
                    s.masked_fill_(neg[b], float("-inf"))
                # bf16 in and out; torch accumulates the softmax's max and sum in float32.
                _softmax_(s)
                parts.append(torch.mm(s, v_bh))
            rows.append(torch.cat(parts, 0) if len(parts) > 1 else parts[0])
    return torch.stack(rows, 0).reshape(B, H, N, v.shape[-1])
