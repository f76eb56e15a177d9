"""SAM 2's mask decoder (SAM's, plus an object-score head and high-resolution skip features)."""

from __future__ import annotations

from typing import List, Optional, Tuple, Type, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import SAM2Config
from .common import MLP, LayerNorm2d, linear_fused
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

__all__ = ["MaskDecoder", "build_sam_heads"]


def _conv_transpose_2x2_nhwc(x: torch.Tensor, conv: nn.ConvTranspose2d,
                             add: torch.Tensor) -> torch.Tensor:
    """``add + conv(x)`` for a kernel-2 stride-2 transposed conv, on channels-last grids.

    x: (B, H, W, C_in); add: (B, 2H, 2W, C_out) -> (B, 2H, 2W, C_out). Each input pixel writes
    its own 2x2 output block, so the conv is the GEMM ``x @ W.reshape(C_in, C_out * 4)``
    followed by a pixel shuffle; the shuffle is done by the addition reading the GEMM output
    through a permuted view, so no separate copy is made. On CPU this is about twice as fast
    as the ConvTranspose2d kernel.
    """
    b, h, w, c_in = x.shape
    c_out = conv.out_channels
    weight = conv.weight.reshape(c_in, c_out * 4).t()  # rows ordered (c_out, kh, kw)
    bias = None if conv.bias is None else conv.bias.repeat_interleave(4)
    y = linear_fused(x, weight, bias).view(b, h, w, c_out, 2, 2).permute(0, 1, 4, 2, 5, 3)
    return (add.reshape(b, h, 2, w, 2, c_out) + y).reshape(b, 2 * h, 2 * w, c_out)


class MaskDecoder(nn.Module):
    """Predict masks from image features and prompt tokens.

    Output tokens ``[object score (if pred_obj_scores), IoU, mask x (1 + num_multimask_outputs)]``
    are prepended to the prompt tokens and run through the two-way transformer with the image
    features (+ dense prompt). The image side is upscaled 4x by two transposed convs (adding
    the stride-8 / stride-4 features from ``conv_s1`` / ``conv_s0`` when
    ``use_high_res_features``); each mask token's hypernetwork MLP gives the weights of a dot
    product with the upscaled features.

    Mask 0 is the single-mask output, masks 1.. the multimask ones. With
    ``dynamic_multimask_via_stability`` (eval only), a single-mask request falls back to the
    best-IoU multimask output when mask 0 is unstable (the IoU of its logits thresholded at
    +delta and -delta is below ``dynamic_multimask_stability_thresh``).
    """

    def __init__(self, *, transformer_dim: int, transformer: nn.Module,
                 num_multimask_outputs: int = 3, activation: Type[nn.Module] = nn.GELU,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256,
                 use_high_res_features: bool = False, iou_prediction_use_sigmoid: bool = False,
                 dynamic_multimask_via_stability: bool = False,
                 dynamic_multimask_stability_delta: float = 0.05,
                 dynamic_multimask_stability_thresh: float = 0.98,
                 pred_obj_scores: bool = False, pred_obj_scores_mlp: bool = False,
                 use_multimask_token_for_obj_ptr: bool = False) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr

        d = transformer_dim
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2),
            LayerNorm2d(d // 4),
            activation(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            # Applied by SAM2Model.forward_image to the stride-4 / stride-8 FPN levels.
            self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1, stride=1)
            self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1, stride=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(d, d, d // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(d, iou_head_hidden_dim, self.num_mask_tokens,
                                       iou_head_depth, sigmoid_output=iou_prediction_use_sigmoid)
        if pred_obj_scores:
            self.pred_obj_score_head = (MLP(d, d, 1, 3) if pred_obj_scores_mlp
                                        else nn.Linear(d, 1))
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool, repeat_image: bool,
                high_res_features: Optional[List[torch.Tensor]] = None,
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict masks.

        Args:
            image_embeddings: (B_img, C, h, w) image features (stride 16).
            image_pe: (1, C, h, w) from ``PromptEncoder.get_dense_pe()``.
            sparse_prompt_embeddings: (B, N, C) prompt tokens.
            dense_prompt_embeddings: (B, C, h, w).
            multimask_output: return the ``num_multimask_outputs`` multimask masks instead of one.
            repeat_image: repeat each image embedding for the B prompts (B_img = 1); otherwise
                B_img must equal B.
            high_res_features: ``[feat_s0 (B_img, C/8, 4h, 4w), feat_s1 (B_img, C/4, 2h, 2w)]``
                when ``use_high_res_features``.

        Returns:
            ``(masks, iou_pred, sam_tokens_out, object_score_logits)``: masks (B, M, 4h, 4w)
            logits with M = num_multimask_outputs or 1; iou_pred (B, M); sam_tokens_out
            (B, M', C) the mask tokens for object pointers (the multimask ones when
            ``multimask_output and use_multimask_token_for_obj_ptr``, else token 0);
            object_score_logits (B, 1) (10 when the model has no object-score head).
        """
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings=image_embeddings, image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings, repeat_image=repeat_image,
            high_res_features=high_res_features)
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            # Token 0 even when the dynamic fallback picked a multimask *mask*: tracking was
            # trained on single-mask tokens (upstream's convention).
            sam_tokens_out = mask_tokens_out[:, 0:1]
        return masks, iou_pred, sam_tokens_out, object_score_logits

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor,
                      dense_prompt_embeddings: torch.Tensor, repeat_image: bool,
                      high_res_features: Optional[List[torch.Tensor]] = None,
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All masks before selection: (B, 1+M, 4h, 4w), (B, 1+M), (B, 1+M, C), (B, 1)."""
        weights = [self.iou_token.weight, self.mask_tokens.weight]
        s = 0
        if self.pred_obj_scores:
            weights.insert(0, self.obj_score_token.weight)
            s = 1
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat(weights, dim=0).unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

        if repeat_image and image_embeddings.shape[0] == 1:
            src = image_embeddings.expand(b, -1, -1, -1)  # the add below makes the copy
        elif repeat_image:
            src = torch.repeat_interleave(image_embeddings, b, dim=0)
        else:
            if image_embeddings.shape[0] != b:
                raise ValueError(f"{image_embeddings.shape[0]} image embeddings for {b} prompt "
                                 "sets; pass repeat_image=True to share one image")
            src = image_embeddings
        src = src + dense_prompt_embeddings
        if image_pe.shape[0] != 1:
            raise ValueError(f"image_pe must have batch size 1 (get_dense_pe()), got "
                             f"{tuple(image_pe.shape)}")
        pos_src = image_pe.expand(b, -1, -1, -1)  # only added to tokens: no copy needed
        _, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1: s + 1 + self.num_mask_tokens, :]

        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                                for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        if not self.use_high_res_features:
            src = src.transpose(1, 2).reshape(b, c, h, w)
            upscaled = self.output_upscaling(src)
            _, c_up, h_up, w_up = upscaled.shape
            masks = (hyper_in @ upscaled.reshape(b, c_up, h_up * w_up)).view(b, -1, h_up, w_up)
        else:
            if high_res_features is None:
                raise ValueError("this decoder uses high-resolution features; pass "
                                 "high_res_features=[feat_s0, feat_s1]")
            dc1, ln1, act1, dc2, act2 = self.output_upscaling
            norm1 = cast(LayerNorm2d, ln1)
            feat_s0, feat_s1 = high_res_features
            # Channels-last all the way: the transformer already returns (B, HW, C) tokens,
            # the 2x2 transposed convs become GEMMs, and the LayerNorm runs over the last axis.
            x = _conv_transpose_2x2_nhwc(src.reshape(b, h, w, c), cast(nn.ConvTranspose2d, dc1),
                                         add=feat_s1.permute(0, 2, 3, 1).expand(b, -1, -1, -1))
            x = act1(F.layer_norm(x, (x.shape[-1],), norm1.weight, norm1.bias, norm1.eps))
            x = act2(_conv_transpose_2x2_nhwc(
                x, cast(nn.ConvTranspose2d, dc2), add=feat_s0.permute(0, 2, 3, 1).expand(b, -1, -1, -1)))
            _, h_up, w_up, c_up = x.shape
            masks = (hyper_in @ x.reshape(b, h_up * w_up, c_up).transpose(1, 2))
            masks = masks.view(b, -1, h_up, w_up)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            # No head: "object present" with certainty (sigmoid(10) ~ 1).
            object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def _get_stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """IoU of ``logits > delta`` and ``logits > -delta``: (B, M, H, W) -> (B, M)."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        inter = torch.sum(flat > delta, dim=-1).float()
        union = torch.sum(flat > -delta, dim=-1).float()
        return torch.where(union > 0, inter / union, 1.0)

    def _dynamic_multimask_via_stability(self, all_mask_logits: torch.Tensor,
                                         all_iou_scores: torch.Tensor
                                         ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mask 0 where it is stable, else the multimask output with the best predicted IoU."""
        multi_logits = all_mask_logits[:, 1:]
        multi_iou = all_iou_scores[:, 1:]
        best = torch.argmax(multi_iou, dim=-1)
        rows = torch.arange(multi_iou.shape[0], device=all_iou_scores.device)
        best_logits = multi_logits[rows, best].unsqueeze(1)
        best_iou = multi_iou[rows, best].unsqueeze(1)

        single_logits = all_mask_logits[:, 0:1]
        single_iou = all_iou_scores[:, 0:1]
        stability = self._get_stability_scores(single_logits)
        stable = stability >= self.dynamic_multimask_stability_thresh
        logits = torch.where(stable[..., None, None].expand_as(single_logits), single_logits,
                             best_logits)
        iou = torch.where(stable.expand_as(single_iou), single_iou, best_iou)
        return logits, iou


def build_sam_heads(cfg: SAM2Config) -> Tuple[PromptEncoder, MaskDecoder]:
    """The prompt encoder and mask decoder of a model config (upstream's ``_build_sam_heads``)."""
    d = cfg.d_model
    dec = cfg.decoder
    tr = cfg.tracking
    prompt_encoder = PromptEncoder(
        embed_dim=d, image_embedding_size=(cfg.feat_size, cfg.feat_size),
        input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=dec.mask_in_chans)
    mask_decoder = MaskDecoder(
        transformer_dim=d,
        transformer=TwoWayTransformer(depth=dec.transformer_depth, embedding_dim=d,
                                      num_heads=dec.transformer_heads,
                                      mlp_dim=dec.transformer_mlp_dim,
                                      attention_downsample_rate=dec.attention_downsample_rate),
        num_multimask_outputs=dec.num_multimask_outputs,
        iou_head_depth=dec.iou_head_depth,
        iou_head_hidden_dim=dec.iou_head_hidden_dim,
        use_high_res_features=tr.use_high_res_features_in_sam,
        iou_prediction_use_sigmoid=tr.iou_prediction_use_sigmoid,
        dynamic_multimask_via_stability=dec.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=dec.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=dec.dynamic_multimask_stability_thresh,
        pred_obj_scores=tr.pred_obj_scores,
        pred_obj_scores_mlp=tr.pred_obj_scores_mlp,
        use_multimask_token_for_obj_ptr=tr.use_multimask_token_for_obj_ptr,
    )
    return prompt_encoder, mask_decoder
