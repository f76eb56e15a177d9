"""The two-way transformer of SAM's mask decoder, and the attention layer it (and the memory
attention's RoPE variant in :mod:`.rope`) is built on."""

from __future__ import annotations

from typing import Optional, Tuple, Type

import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP, fused_linear

__all__ = ["Attention", "TwoWayAttentionBlock", "TwoWayTransformer"]


class Attention(nn.Module):
    """Multi-head attention whose projections can shrink the width (``downsample_rate``).

    ``q_proj`` maps ``embedding_dim`` and ``k_proj`` / ``v_proj`` map ``kv_in_dim`` (default
    ``embedding_dim``) to ``internal_dim = embedding_dim // downsample_rate``; ``out_proj``
    maps back to ``embedding_dim``. Attention is ``F.scaled_dot_product_attention`` with the
    default ``1/sqrt(head_dim)`` scale and dropout ``dropout`` in training.

    Shapes: ``forward(q (B, Nq, embedding_dim), k (B, Nk, kv_in_dim), v (B, Nk, kv_in_dim))
    -> (B, Nq, embedding_dim)``.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1,
                 dropout: float = 0.0, kv_in_dim: Optional[int] = None) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = kv_in_dim if kv_in_dim is not None else embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(f"num_heads ({num_heads}) must divide the internal width "
                             f"{self.internal_dim} (= {embedding_dim} // {downsample_rate})")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.dropout_p = dropout

    def _separate_heads(self, x: Tensor, num_heads: int) -> Tensor:
        """(B, N, C) -> (B, num_heads, N, C // num_heads) (a view when possible)."""
        b, n, c = x.shape
        return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)

    def _recombine_heads(self, x: Tensor) -> Tensor:
        """(B, num_heads, N, c) -> (B, N, num_heads * c)."""
        b, nh, n, c = x.shape
        return x.transpose(1, 2).reshape(b, n, nh * c)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """SDPA on head-separated tensors (B, nh, N, c); dropout only while training."""
        dropout_p = self.dropout_p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        # fused_linear == nn.Linear, with oneDNN (bias fused) for float32 CPU inference
        q = self._separate_heads(fused_linear(q, self.q_proj), self.num_heads)
        k = self._separate_heads(fused_linear(k, self.k_proj), self.num_heads)
        v = self._separate_heads(fused_linear(v, self.v_proj), self.num_heads)
        out = self._attend(q, k, v)
        return fused_linear(self._recombine_heads(out), self.out_proj)


class TwoWayAttentionBlock(nn.Module):
    """One two-way layer: token self-attention, token->image cross-attention, token MLP,
    image->token cross-attention; each followed by a residual and a LayerNorm (post-norm).

    The prompt-token position encoding (``query_pe``) is added to queries/keys of every
    attention except the self-attention of the first layer (``skip_first_layer_pe``), whose
    output also replaces (rather than adds to) the tokens.
    """

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int = 2048,
                 activation: Type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2,
                 skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2,
                       activation=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor,
                key_pe: Tensor) -> Tuple[Tensor, Tensor]:
        """queries (B, Nq, C), keys (B, HW, C) and their encodings -> updated (queries, keys)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe  # the image side is unchanged until the last step: used twice
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """The mask decoder's transformer: ``depth`` two-way layers, then a final token->image
    attention with a LayerNorm.

    Args:
        depth: number of :class:`TwoWayAttentionBlock` layers.
        embedding_dim: token / image channels.
        num_heads: attention heads (must divide ``embedding_dim // attention_downsample_rate``).
        mlp_dim: hidden width of the token MLP.
        activation: MLP activation class.
        attention_downsample_rate: width reduction inside the cross-attentions.
    """

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 activation: Type[nn.Module] = nn.ReLU,
                 attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim=embedding_dim, num_heads=num_heads,
                                 mlp_dim=mlp_dim, activation=activation,
                                 attention_downsample_rate=attention_downsample_rate,
                                 skip_first_layer_pe=(i == 0))
            for i in range(depth))
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: Tensor, image_pe: Tensor,
                point_embedding: Tensor) -> Tuple[Tensor, Tensor]:
        """Run the decoder transformer.

        Args:
            image_embedding: (B, C, H, W) image features.
            image_pe: (B, C, H, W) or (1, C, H, W) their position encoding.
            point_embedding: (B, N, C) output + prompt tokens (also their position encoding).

        Returns:
            ``(tokens (B, N, C), image (B, HW, C))``.
        """
        # Dense (B, HW, C) image tokens, so that the many adds and projections below run on
        # contiguous memory (a free view when the input is channels-last). ``image_pe`` may
        # have batch size 1: it is only ever added.
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2)
        if key_pe.stride(-1) != 1:
            key_pe = key_pe.contiguous()
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding,
                                  key_pe=key_pe)
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys
