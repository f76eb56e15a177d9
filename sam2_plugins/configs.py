"""Model sizes as a typed table of frozen dataclasses (no yaml, no hydra).

Every official SAM 2 / 2.1 checkpoint is described by a :class:`SAM2Config`. Only the Hiera
trunk (and the neck channel list derived from it) differs between tiny, small, base+ and large;
2.1 differs from 2.0 by four flags about object pointers and the spatial no-object embedding.

The ``nano`` config runs the very same code with smaller widths and a 256² input; it exists for
fast tests and for the shipped demo model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Tuple

__all__ = [
    "HieraConfig",
    "DecoderConfig",
    "MemoryConfig",
    "TrackingConfig",
    "SAM2Config",
    "MODEL_CONFIGS",
    "get_config",
    "list_models",
    "DEMO_MODEL",
]


@dataclass(frozen=True)
class HieraConfig:
    """The Hiera trunk (hierarchical ViT with windowed attention and q-pooling)."""

    embed_dim: int = 96
    """Channels of stage 1; doubled at each of the ``q_pool`` stage transitions."""
    num_heads: int = 1
    """Heads of stage 1; doubled like ``embed_dim``."""
    stages: Tuple[int, ...] = (2, 3, 16, 3)
    """Blocks per stage."""
    global_att_blocks: Tuple[int, ...] = (12, 16, 20)
    """Indices (over all blocks) that use global instead of windowed attention."""
    window_spec: Tuple[int, ...] = (8, 4, 14, 7)
    """Window size per stage (tokens per side)."""
    window_pos_embed_bkg_spatial_size: Tuple[int, int] = (14, 14)
    """Size of the background position embedding, bicubically resized to the token grid."""
    q_pool: int = 3
    """Number of stage transitions that pool queries (2x2 max-pool)."""
    q_stride: Tuple[int, int] = (2, 2)
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    """Stochastic depth at the last block (linearly increasing); 0 at inference."""
    patch_kernel: int = 7
    """Patch-embedding conv: kernel 7, stride 4, padding 3 (a 4x downsample)."""

    @property
    def channel_list(self) -> Tuple[int, ...]:
        """Output channels from the coarsest (stride 32) to the finest (stride 4) level."""
        n = len(self.stages)
        return tuple(self.embed_dim * 2 ** i for i in reversed(range(n)))


@dataclass(frozen=True)
class DecoderConfig:
    """Prompt encoder, two-way transformer and mask decoder (SAM heads)."""

    transformer_depth: int = 2
    transformer_heads: int = 8
    transformer_mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    """Channels of the dense mask-prompt downscaler's last hidden conv."""
    dynamic_multimask_via_stability: bool = True
    """When one mask is asked for, fall back to the best multimask output if the single-mask
    output is unstable (upstream builders turn this on with ``apply_postprocessing=True``)."""
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98


@dataclass(frozen=True)
class MemoryConfig:
    """Memory encoder and memory attention."""

    mem_dim: int = 64
    """Channels of a stored spatial memory (and of one object-pointer token)."""
    attention_layers: int = 4
    attention_ffn_dim: int = 2048
    attention_dropout: float = 0.1
    rope_theta: float = 10000.0
    pos_enc_at_input_scale: float = 0.1
    """Memory attention adds ``0.1 * pos`` to its input (``pos_enc_at_input``)."""
    fuser_layers: int = 2
    fuser_kernel: int = 7
    mask_downsampler_total_stride: int = 16
    mask_downsampler_kernel: int = 3
    mask_downsampler_stride: int = 2


@dataclass(frozen=True)
class TrackingConfig:
    """The behaviour flags of ``SAM2Base`` (upstream names, upstream values for SAM 2 / 2.1)."""

    num_maskmem: int = 7
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = False
    """The video predictor turns this on (upstream's ``apply_postprocessing``)."""
    use_mask_input_as_output_without_sam: bool = True
    max_cond_frames_in_attn: int = -1
    directly_add_no_mem_embed: bool = True
    use_high_res_features_in_sam: bool = True
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    iou_prediction_use_sigmoid: bool = True
    memory_temporal_stride_for_eval: int = 1
    non_overlap_masks_for_mem_enc: bool = False
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    add_tpos_enc_to_obj_ptrs: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False
    only_obj_ptrs_in_the_past_for_eval: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    use_mlp_for_obj_ptr_proj: bool = True
    no_obj_embed_spatial: bool = False
    fill_hole_area: int = 0
    """Video predictor: holes up to this area (pixels at 256²) are filled; upstream 8."""


@dataclass(frozen=True)
class SAM2Config:
    """A complete SAM 2 model description."""

    name: str
    hiera: HieraConfig
    image_size: int = 1024
    """Square input side (pixels). Features are at stride 16: 64² for 1024."""
    d_model: int = 256
    """Width of the neck, prompt encoder, mask decoder and memory attention."""
    backbone_stride: int = 16
    fpn_top_down_levels: Tuple[int, ...] = (2, 3)
    scalp: int = 1
    """Number of coarsest FPN levels dropped (1: the stride-32 level is not used)."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    version: str = "2.1"

    @property
    def feat_size(self) -> int:
        """Side of the stride-16 feature map (64 for 1024² inputs)."""
        return self.image_size // self.backbone_stride

    def with_tracking(self, **changes: Any) -> "SAM2Config":
        """A copy with some :class:`TrackingConfig` fields changed."""
        return replace(self, tracking=replace(self.tracking, **changes))


_HIERA = {
    "tiny": HieraConfig(
        embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9),
        window_pos_embed_bkg_spatial_size=(7, 7)),
    "small": HieraConfig(
        embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13),
        window_pos_embed_bkg_spatial_size=(7, 7)),
    "base_plus": HieraConfig(embed_dim=112, num_heads=2),
    "large": HieraConfig(
        embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
        window_spec=(8, 4, 16, 8), window_pos_embed_bkg_spatial_size=(7, 7)),
}

_V21 = dict(
    no_obj_embed_spatial=True,
    add_tpos_enc_to_obj_ptrs=True,
    proj_tpos_enc_in_obj_ptrs=True,
    use_signed_tpos_enc_to_obj_ptrs=True,
)


def _official(size: str, version: str) -> SAM2Config:
    prefix = "sam2.1" if version == "2.1" else "sam2"
    tracking = TrackingConfig(**_V21) if version == "2.1" else TrackingConfig()
    return SAM2Config(name=f"{prefix}_hiera_{size}", hiera=_HIERA[size], tracking=tracking,
                      version=version)


def _nano() -> SAM2Config:
    # Same blocks and flags as 2.1, just narrower and at 256² (16² features), so a forward
    # pass takes milliseconds on a CPU. Windows shrink with the grid (64² tokens at stride 4).
    return SAM2Config(
        name="sam2.1_hiera_nano",
        hiera=HieraConfig(
            embed_dim=32, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3, 4),
            window_spec=(8, 4, 4, 2), window_pos_embed_bkg_spatial_size=(4, 4)),
        image_size=256,
        d_model=128,
        decoder=DecoderConfig(transformer_heads=4, transformer_mlp_dim=256, iou_head_hidden_dim=128,
                              mask_in_chans=8),
        memory=MemoryConfig(mem_dim=32, attention_layers=2, attention_ffn_dim=256),
        tracking=TrackingConfig(**_V21),
        version="2.1",
    )


MODEL_CONFIGS: Dict[str, SAM2Config] = {}
for _v in ("2.1", "2.0"):
    for _s in ("tiny", "small", "base_plus", "large"):
        _c = _official(_s, _v)
        MODEL_CONFIGS[_c.name] = _c
MODEL_CONFIGS["sam2.1_hiera_nano"] = _nano()

DEMO_MODEL = "sam2.1_hiera_nano"
"""Name of the model whose trained weights ship in ``sam2_plugins/weights/``."""

# Short names people type (and the names of upstream's yaml files) map to the table.
_ALIASES = {
    "tiny": "sam2.1_hiera_tiny", "small": "sam2.1_hiera_small",
    "base_plus": "sam2.1_hiera_base_plus", "base-plus": "sam2.1_hiera_base_plus",
    "large": "sam2.1_hiera_large", "nano": "sam2.1_hiera_nano", "demo": DEMO_MODEL,
    "sam2.1_hiera_t": "sam2.1_hiera_tiny", "sam2.1_hiera_s": "sam2.1_hiera_small",
    "sam2.1_hiera_b+": "sam2.1_hiera_base_plus", "sam2.1_hiera_l": "sam2.1_hiera_large",
    "sam2_hiera_t": "sam2_hiera_tiny", "sam2_hiera_s": "sam2_hiera_small",
    "sam2_hiera_b+": "sam2_hiera_base_plus", "sam2_hiera_l": "sam2_hiera_large",
}


def list_models() -> Tuple[str, ...]:
    """All model names :func:`get_config` accepts (without aliases)."""
    return tuple(MODEL_CONFIGS)


def get_config(name: str) -> SAM2Config:
    """Look a model up by name (``sam2.1_hiera_tiny``), short name (``tiny``) or yaml stem.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    key = name.strip()
    for suffix in (".yaml", ".pt"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    key = key.rsplit("/", 1)[-1]
    key = _ALIASES.get(key, key)
    if key not in MODEL_CONFIGS:
        raise ValueError(
            f"unknown model name {name!r}; expected one of {', '.join(MODEL_CONFIGS)} "
            f"(or a short name: {', '.join(sorted(_ALIASES))})")
    return MODEL_CONFIGS[key]
