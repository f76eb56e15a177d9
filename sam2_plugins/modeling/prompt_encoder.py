"""SAM's prompt encoder: points / boxes -> sparse tokens, mask logits -> dense embedding."""

from __future__ import annotations

from typing import Optional, Tuple, Type, cast

import torch
from torch import nn

from .common import LayerNorm2d
from .derived_cache import DerivedCache
from .position_encoding import PositionEmbeddingRandom

__all__ = ["PromptEncoder"]


class PromptEncoder(nn.Module):
    """Encode prompts for the mask decoder.

    Point labels: 1 foreground, 0 background, 2 / 3 box top-left / bottom-right corner, -1 a
    padding point (encoded as ``not_a_point_embed`` alone, without position). Coordinates are
    (x, y) pixels in the model's input frame (``input_image_size``, e.g. 1024²); a point sits at
    the centre of its pixel (+0.5).

    Args:
        embed_dim: token width (the decoder's ``transformer_dim``).
        image_embedding_size: (H, W) of the image embedding (64² for 1024² inputs).
        input_image_size: (H, W) of the model input in pixels.
        mask_in_chans: hidden channels of the mask downscaler (the mask prompt is
            4 x image_embedding_size logits).
        activation: activation class of the mask downscaler.
    """

    def __init__(self, embed_dim: int, image_embedding_size: Tuple[int, int],
                 input_image_size: Tuple[int, int], mask_in_chans: int,
                 activation: Type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = cast(Tuple[int, int], tuple(input_image_size))
        self.image_embedding_size = cast(Tuple[int, int], tuple(image_embedding_size))
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # negative, positive, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe_cache = DerivedCache()

    def get_dense_pe(self) -> torch.Tensor:
        """Position encoding of the image-embedding grid: (1, embed_dim, H, W) float32.

        Cached while the Gaussian buffer is unchanged (see
        :class:`~sam2_plugins.modeling.derived_cache.DerivedCache`), as it is needed for every
        prompt; treat the result as read-only. A value computed under ``torch.inference_mode()``
        is an inference tensor that autograd cannot save, so the mode is part of the key.
        """
        g = self.pe_layer.positional_encoding_gaussian_matrix
        # Stored channels-last: the decoder flattens it to (HW, C) tokens, now a free view.
        def compute() -> torch.Tensor:
            pe = self.pe_layer(self.image_embedding_size).unsqueeze(0)
            return pe.contiguous(memory_format=torch.channels_last)

        if torch.compiler.is_compiling():  # part of the graph (the cache's checks would break it)
            return compute()
        return self._dense_pe_cache.get(
            (g,), (tuple(self.image_embedding_size), torch.is_inference_mode_enabled()), compute)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor,
                      pad: bool) -> torch.Tensor:
        """(B, N, 2) xy pixels and (B, N) labels -> (B, N (+1 if pad), embed_dim)."""
        points = points + 0.5  # centre of the pixel
        if pad:
            # A "not a point" token is appended when no box follows (SAM's training setup).
            b = points.shape[0]
            points = torch.cat([points, points.new_zeros((b, 1, 2))], dim=1)
            labels = torch.cat([labels, -torch.ones((b, 1), device=labels.device)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels.unsqueeze(-1)
        emb = torch.where(labels == -1, torch.zeros_like(emb) + self.not_a_point_embed.weight,
                          emb)
        for k, table in enumerate(self.point_embeddings):
            emb = torch.where(labels == k, emb + cast(nn.Embedding, table).weight, emb)
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 4) xyxy pixels (or (B, 2, 2)) -> (B, 2, embed_dim) corner tokens."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_tables = torch.cat([cast(nn.Embedding, self.point_embeddings[2]).weight,
                                   cast(nn.Embedding, self.point_embeddings[3]).weight], dim=0)
        return emb + corner_tables

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, 4h, 4w) mask logits -> (B, embed_dim, h, w)."""
        return self.mask_downscaling(masks)

    @staticmethod
    def _get_batch_size(points: Optional[Tuple[torch.Tensor, torch.Tensor]],
                        boxes: Optional[torch.Tensor], masks: Optional[torch.Tensor]) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def _get_device(self) -> torch.device:
        return cast(nn.Embedding, self.point_embeddings[0]).weight.device

    def forward(self, points: Optional[Tuple[torch.Tensor, torch.Tensor]],
                boxes: Optional[torch.Tensor],
                masks: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts.

        Args:
            points: ``(coords (B, N, 2) float xy pixels, labels (B, N) int)`` or None.
            boxes: (B, 4) xyxy pixels or None. SAM 2 itself never passes boxes here: it turns
                them into two points labelled 2 and 3.
            masks: (B, 1, 4h, 4w) mask logits or None.

        Returns:
            ``(sparse, dense)``: sparse (B, N', embed_dim) point/box tokens (N' = N + 1 when
            points come without boxes, for the padding point; + 2 per box), and dense
            (B, embed_dim, h, w).
        """
        bs = self._get_batch_size(points, boxes, masks)
        sparse = torch.empty((bs, 0, self.embed_dim), device=self._get_device())
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)],
                               dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
