"""Memory attention: condition the current frame's features on the memory bank.

A stack of pre-norm layers, each: RoPE self-attention over the current frame's tokens, RoPE
cross-attention from those tokens to the memories (spatial memories of earlier frames plus
object-pointer tokens), then a ReLU feed-forward; a final LayerNorm. State-dict names follow
upstream: ``layers.N.{self_attn, cross_attn_image, linear1, linear2, norm1, norm2, norm3}``
and ``norm``.

Tensors enter and leave *sequence-first* as upstream's ``SAM2Base`` passes them:
``(tokens, batch, channels)``; internally the layers run batch-first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Union, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import _use_onednn, linear_fused
from .rope import RoPEAttention

if TYPE_CHECKING:  # pragma: no cover
    from ..configs import SAM2Config

__all__ = ["MemoryAttentionLayer", "MemoryAttention"]


class MemoryAttentionLayer(nn.Module):
    """One pre-norm layer: ``t += SA(norm1 t)``; ``t += CA(norm2 t, mem + pos, mem)``;
    ``t += FFN(norm3 t)``.

    Args:
        d_model: token width of the current frame (256 for the official models).
        dim_feedforward: hidden width of the ReLU feed-forward (2048).
        dropout: dropout after each sub-layer, inside the FFN and inside attention (0.1;
            only active in training).
        kv_dim: channels of a memory token (``mem_dim``, 64).
        num_heads: attention heads (1 upstream).
        rope_theta: RoPE frequency base.
        feat_size: side of the square query grid (64 at 1024² input).
        pos_enc_at_attn: add the query position encoding before self-attention (upstream: no).
        pos_enc_at_cross_attn_queries: add it to the cross-attention queries (upstream: no).
        pos_enc_at_cross_attn_keys: add the memory position encoding to the keys (upstream: yes).
    """

    def __init__(
        self,
        d_model: int = 256,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        kv_dim: int = 64,
        num_heads: int = 1,
        rope_theta: float = 10000.0,
        feat_size: int = 64,
        pos_enc_at_attn: bool = False,
        pos_enc_at_cross_attn_queries: bool = False,
        pos_enc_at_cross_attn_keys: bool = True,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.dim_feedforward = dim_feedforward
        self.self_attn = RoPEAttention(
            d_model, num_heads, dropout=dropout, rope_theta=rope_theta,
            feat_sizes=(feat_size, feat_size))
        self.cross_attn_image = RoPEAttention(
            d_model, num_heads, dropout=dropout, kv_in_dim=kv_dim, rope_theta=rope_theta,
            rope_k_repeat=True, feat_sizes=(feat_size, feat_size))
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.pos_enc_at_attn = pos_enc_at_attn
        self.pos_enc_at_cross_attn_queries = pos_enc_at_cross_attn_queries
        self.pos_enc_at_cross_attn_keys = pos_enc_at_cross_attn_keys

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        num_k_exclude_rope: int = 0,
        memory_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Batch-first: ``tgt`` ``(B, N, d_model)``, ``memory``/``pos`` ``(B, M, kv_dim)``,
        ``query_pos`` ``(B, N, d_model)``; the last ``num_k_exclude_rope`` memory tokens are
        object pointers (no RoPE); ``memory_mask`` ``(B, M)`` bool marks the memory tokens each
        row may read (``None``: all). Returns ``(B, N, d_model)``."""
        tgt = self.self_attention_block(tgt, query_pos)
        return self.cross_attention_block(tgt, memory, pos, query_pos, num_k_exclude_rope,
                                          memory_mask)

    def self_attention_block(self, tgt: Tensor, query_pos: Optional[Tensor] = None) -> Tensor:
        """``tgt + SA(norm1 tgt)``: ``(B, N, d_model) -> (B, N, d_model)``."""
        x = self.norm1(tgt)
        qk = x + query_pos if (self.pos_enc_at_attn and query_pos is not None) else x
        return tgt + self.dropout1(self.self_attn(qk, qk, x))

    def cross_attention_block(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        num_k_exclude_rope: int = 0,
        memory_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Cross-attention to the memories then the feed-forward (shapes as :meth:`forward`)."""
        x = self.norm2(tgt)
        q = x + query_pos if (self.pos_enc_at_cross_attn_queries and query_pos is not None) else x
        k = memory + pos if (self.pos_enc_at_cross_attn_keys and pos is not None) else memory
        tgt = tgt + self.dropout2(
            self.cross_attn_image(q, k, memory, num_k_exclude_rope=num_k_exclude_rope,
                                  key_mask=memory_mask))

        x = self.norm3(tgt)
        if not self.training and _use_onednn(x, self.linear1.weight, self.linear1.bias, None):
            # float32 CPU inference: bias + ReLU and bias + residual fused into the GEMMs
            # (the same sums; saves three passes over a (B, N, 2048) tensor).
            h = torch.ops.mkldnn._linear_pointwise(x, self.linear1.weight, self.linear1.bias,
                                                   "relu", [], "")
            return linear_fused(h, self.linear2.weight, self.linear2.bias, residual=tgt)
        x = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return tgt + self.dropout3(x)


class MemoryAttention(nn.Module):
    """The stack of :class:`MemoryAttentionLayer` plus a final LayerNorm.

    Args:
        d_model: width of the current-frame tokens.
        num_layers: number of layers (4 upstream).
        pos_enc_at_input: add ``pos_enc_at_input_scale * curr_pos`` to the input (upstream: yes,
            scale 0.1).
        pos_enc_at_input_scale: that scale.
        **layer_kwargs: forwarded to every :class:`MemoryAttentionLayer`.
    """

    def __init__(
        self,
        d_model: int = 256,
        num_layers: int = 4,
        pos_enc_at_input: bool = True,
        pos_enc_at_input_scale: float = 0.1,
        **layer_kwargs: object,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.num_layers = num_layers
        self.pos_enc_at_input = pos_enc_at_input
        self.pos_enc_at_input_scale = pos_enc_at_input_scale
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model=d_model, **layer_kwargs)  # type: ignore[arg-type]
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    @classmethod
    def from_config(cls, cfg: SAM2Config) -> "MemoryAttention":
        """Build from a :class:`~sam2_plugins.configs.SAM2Config`."""
        m = cfg.memory
        return cls(
            d_model=cfg.d_model, num_layers=m.attention_layers, pos_enc_at_input=True,
            pos_enc_at_input_scale=m.pos_enc_at_input_scale,
            dim_feedforward=m.attention_ffn_dim, dropout=m.attention_dropout, kv_dim=m.mem_dim,
            # One head in every official model; a config field may add more later.
            num_heads=getattr(m, "attention_heads", 1), rope_theta=m.rope_theta,
            feat_size=cfg.feat_size)

    def forward(
        self,
        curr: Union[Tensor, Sequence[Tensor]],
        memory: Tensor,
        curr_pos: Optional[Union[Tensor, Sequence[Tensor]]] = None,
        memory_pos: Optional[Tensor] = None,
        num_obj_ptr_tokens: int = 0,
        memory_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Condition the current frame on the memories.

        Args:
            curr: ``(N, B, d_model)`` current-frame tokens (``N = H * W``, row-major), or a
                one-element list of it (as upstream's model passes it).
            memory: ``(M, B, kv_dim)`` memory tokens: spatial memories (whole ``H * W`` grids)
                followed by ``num_obj_ptr_tokens`` object-pointer tokens.
            curr_pos: ``(N, B, d_model)`` position encoding of ``curr`` (or a one-element list).
            memory_pos: ``(M, B, kv_dim)`` position + temporal encoding of ``memory``.
            num_obj_ptr_tokens: how many trailing memory tokens are object pointers.
            memory_mask: ``(B, M)`` bool, True where a batch row may read a memory token. Not in
                upstream: it lets objects with different memory banks share one batch (pad the
                spatial part with whole dummy grids and the pointer part with dummy tokens).

        Returns:
            ``(N, B, d_model)`` conditioned tokens (after the final LayerNorm).
        """
        if isinstance(curr, (list, tuple)):
            if len(curr) != 1:
                raise ValueError(f"expected one current-frame feature level, got {len(curr)}")
            curr = curr[0]
        if isinstance(curr_pos, (list, tuple)):
            curr_pos = curr_pos[0]
        # single tensors from here on (one-element lists were unwrapped above)
        curr = cast(Tensor, curr)
        curr_pos = cast("Optional[Tensor]", curr_pos)  # a string: nothing to evaluate when compiled
        if curr.shape[1] != memory.shape[1]:
            raise ValueError(
                f"batch of current features ({curr.shape[1]}) and memory ({memory.shape[1]}) "
                "must match")
        # Objects of one frame share the frame's features: the tracker passes them broadcast
        # (batch stride 0). Then the first self-attention, which sees only those features,
        # is computed once for all rows (outside training, where dropout would differ).
        b = curr.shape[1]
        shared = (b > 1 and curr.stride(1) == 0 and not self.training
                  and (curr_pos is None or curr_pos.stride(1) == 0))
        if shared:
            curr = curr[:, :1]
            curr_pos = None if curr_pos is None else curr_pos[:, :1]
        out = curr
        if self.pos_enc_at_input and curr_pos is not None:
            out = out + self.pos_enc_at_input_scale * curr_pos
        # Batch-first and contiguous: sequence-first (N, B, C) with B > 1 is a strided view,
        # and every projection and norm on it would run on strided memory.
        out = out.transpose(0, 1).contiguous()
        qpos = curr_pos.transpose(0, 1).contiguous() if curr_pos is not None else None
        mem = memory.transpose(0, 1).contiguous()
        mpos = memory_pos.transpose(0, 1).contiguous() if memory_pos is not None else None
        for i, layer in enumerate(self.layers):
            if i == 0 and shared:
                first = cast(MemoryAttentionLayer, layer)
                out = first.self_attention_block(out, qpos).expand(b, -1, -1)
                qpos = None if qpos is None else qpos.expand(b, -1, -1)
                out = first.cross_attention_block(out, mem, mpos, qpos, num_obj_ptr_tokens,
                                                  memory_mask)
            else:
                out = layer(out, mem, pos=mpos, query_pos=qpos,
                            num_k_exclude_rope=num_obj_ptr_tokens, memory_mask=memory_mask)
        return self.norm(out).transpose(0, 1)
