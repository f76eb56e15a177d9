"""Upstream SAM 2's builder vocabulary: config file names and ``hydra_overrides_extra``.

Upstream (``sam2==1.1.0``) builds models from hydra yaml files and lets callers change them with
override strings such as ``"++model.non_overlap_masks=true"``. We have no yaml and no hydra: this
module maps the names and the overrides that upstream's tools, docs and common client code pass
onto our typed :class:`~sam2_plugins.configs.SAM2Config` and the video predictor's constructor
arguments. Anything else is refused with a :class:`ValueError` that names it and lists what is
supported, rather than being ignored.

Override syntax (as hydra's): ``[+|++]model.<key>=<value>``; values ``true`` / ``false``
(any case), integers and floats. Supported keys:

* every field of :class:`~sam2_plugins.configs.TrackingConfig` (upstream's ``SAM2Base``
  arguments: ``num_maskmem``, ``memory_temporal_stride_for_eval``, ``max_cond_frames_in_attn``,
  ``binarize_mask_from_pts_for_mem_enc``, ``multimask_output_in_sam``, ...). Some change the
  parameter set (``num_maskmem``, ``pred_obj_scores``, ...); a checkpoint must then match them.
* ``fill_hole_area`` (the video predictor's; our model keeps it too, and
  ``SAM2VideoPredictor(model)`` reads it from there);
* ``sam_mask_decoder_extra_args.dynamic_multimask_via_stability`` / ``..._stability_delta`` /
  ``..._stability_thresh``;
* ``image_size`` (a multiple of 32; every derived size follows, as upstream);
* ``compile_image_encoder=false`` (a no-op; ``true`` is refused: use ``vos_optimized=True``);
* video predictor only: ``non_overlap_masks``, ``clear_non_cond_mem_around_input``,
  ``add_all_frames_to_correct_as_cond``.

Importing this module imports no torch.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Dict, List, Sequence, Tuple

from .configs import DecoderConfig, SAM2Config, TrackingConfig

__all__ = ["UPSTREAM_YAML", "HF_MODEL_IDS", "POSTPROCESSING_OVERRIDES", "VIDEO_POSTPROCESSING_OVERRIDES",
           "supported_override_keys", "apply_overrides"]

UPSTREAM_YAML: Dict[str, str] = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
}
"""Our model name -> upstream's package-relative yaml (what upstream's ``build_sam2`` takes).
:func:`~sam2_plugins.configs.get_config` accepts these paths (and their file names) directly."""

HF_MODEL_IDS: Dict[str, str] = {
    f"facebook/sam2{v}-hiera-{hf}": f"sam2{v}_hiera_{ours}"
    for v in ("", ".1")
    for hf, ours in (("tiny", "tiny"), ("small", "small"), ("base-plus", "base_plus"), ("large", "large"))
}
"""Hugging Face ids upstream's ``from_pretrained`` / ``build_sam2_hf`` take -> our model names."""

# What upstream's builders append to the caller's overrides with apply_postprocessing=True
# (after them, so these win over the caller's own values, as upstream).
POSTPROCESSING_OVERRIDES: Tuple[str, ...] = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
VIDEO_POSTPROCESSING_OVERRIDES: Tuple[str, ...] = POSTPROCESSING_OVERRIDES + (
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
)

_DECODER_PREFIX = "sam_mask_decoder_extra_args."
_DECODER_KEYS = ("dynamic_multimask_via_stability", "dynamic_multimask_stability_delta",
                 "dynamic_multimask_stability_thresh")
_TRACKING_KEYS = tuple(f.name for f in fields(TrackingConfig))
_PREDICTOR_KEYS: Dict[str, Any] = {
    "non_overlap_masks": False, "clear_non_cond_mem_around_input": False,
    "add_all_frames_to_correct_as_cond": False,
}

# Integer keys whose value has a floor (a negative area or stride would silently misbehave).
_MINIMUM = {"fill_hole_area": 0, "num_maskmem": 0, "memory_temporal_stride_for_eval": 1,
            "max_obj_ptrs_in_encoder": 0}


def supported_override_keys(video: bool) -> List[str]:
    """The ``model.<key>`` names :func:`apply_overrides` accepts (``video``: the video builder)."""
    keys = list(_TRACKING_KEYS) + [_DECODER_PREFIX + k for k in _DECODER_KEYS]
    keys += ["image_size", "compile_image_encoder"]
    if video:
        keys += list(_PREDICTOR_KEYS)
    return sorted(keys)


def _split(text: Any) -> Tuple[str, str]:
    """``"++model.a.b=v"`` -> ``("a.b", "v")``."""
    if not isinstance(text, str):
        raise TypeError(f"hydra_overrides_extra must hold strings like '++model.non_overlap_masks=true', "
                        f"got {type(text).__name__}: {text!r}")
    body = text.strip()
    if body.startswith("~"):
        raise ValueError(f"override {text!r}: deleting a key is not supported")
    body = body.lstrip("+")
    key, sep, value = body.partition("=")
    key = key.strip()
    if not sep or not key.startswith("model."):
        raise ValueError(f"override {text!r} is not of the form '[++]model.<key>=<value>' "
                         f"(only the model's keys can be overridden)")
    return key[len("model."):], value.strip()


def _convert(text: str, override: str, like: Any) -> Any:
    """The value ``text`` of ``override`` as the type of ``like`` (bool, int or float)."""
    raw = text.strip().strip("'\"")
    if isinstance(like, bool):
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ValueError(f"override {override!r}: expected true or false, got {text!r}")
    try:
        if isinstance(like, int):
            return int(raw)
        return float(raw)
    except ValueError:
        kind = "an integer" if isinstance(like, int) else "a number"
        raise ValueError(f"override {override!r}: expected {kind}, got {text!r}") from None


def _unsupported(key: str, text: str, video: bool) -> ValueError:
    hint = ""
    if key in _PREDICTOR_KEYS and not video:
        hint = (f" ({key} is a video predictor option: pass the override to build_sam2_video_predictor, "
                f"or {key}=... to SAM2VideoPredictor)")
    elif key == "_target_":
        hint = " (the class is chosen by the builder: use build_sam2_video_predictor for a video predictor)"
    return ValueError(f"unsupported override {text!r} (key model.{key}){hint}; supported keys: "
                      + ", ".join("model." + k for k in supported_override_keys(video)))


def apply_overrides(cfg: SAM2Config, overrides: Sequence[str], *, video: bool,
                    then: Sequence[str] = ()) -> Tuple[SAM2Config, Dict[str, Any]]:
    """Apply upstream-style override strings to ``cfg``.

    Args:
        cfg: the model config the overrides start from.
        overrides: strings such as ``"++model.non_overlap_masks=true"``, applied in order (a
            later value for the same key wins).
        video: whether the caller builds a video predictor (predictor-only keys are accepted).
        then: overrides applied after ``overrides`` (the builders' postprocessing ones).

    Returns:
        ``(config, predictor_kwargs)``: the changed config, and keyword arguments for
        :class:`~sam2_plugins.predictors.video.SAM2VideoPredictor` (empty unless ``video``).

    Raises:
        ValueError: an override that is malformed, has a value of the wrong type or a key that
            is not supported (the message names it and lists the supported keys).
    """
    if isinstance(overrides, str):
        raise TypeError(f"hydra_overrides_extra must be a list of strings, got the string {overrides!r}")
    tracking: Dict[str, Any] = {}
    decoder: Dict[str, Any] = {}
    top: Dict[str, Any] = {}
    predictor: Dict[str, Any] = {}
    for text in list(overrides) + list(then):
        key, value = _split(text)
        if key in _TRACKING_KEYS:
            tracking[key] = _convert(value, text, getattr(cfg.tracking, key))
        elif key.startswith(_DECODER_PREFIX) and key[len(_DECODER_PREFIX):] in _DECODER_KEYS:
            name = key[len(_DECODER_PREFIX):]
            decoder[name] = _convert(value, text, getattr(DecoderConfig(), name))
        elif key in _PREDICTOR_KEYS and video:
            predictor[key] = _convert(value, text, _PREDICTOR_KEYS[key])
        elif key == "image_size":
            size = _convert(value, text, cfg.image_size)
            if size < 32 or size % 32:
                raise ValueError(f"override {text!r}: image_size must be a positive multiple of 32 "
                                 f"(the trunk pools four times and tiles 8-token windows), got {size}")
            top["image_size"] = size
        elif key == "compile_image_encoder":
            if _convert(value, text, False):
                raise ValueError(f"override {text!r} is not supported: pass vos_optimized=True to "
                                 "build_sam2_video_predictor (or compile=True to SAM2VideoPredictor)")
        else:
            raise _unsupported(key, text, video)
    for key, low in _MINIMUM.items():
        if tracking.get(key, low) < low:
            raise ValueError(f"override model.{key}={tracking[key]}: expected a value >= {low}")
    if tracking:
        cfg = replace(cfg, tracking=replace(cfg.tracking, **tracking))
    if decoder:
        cfg = replace(cfg, decoder=replace(cfg.decoder, **decoder))
    if top:
        cfg = replace(cfg, **top)
    return cfg, predictor
