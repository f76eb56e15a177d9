"""``build_sam2``: config + (optional) checkpoint + device -> a ready :class:`SAM2Model`.

The builders also take upstream's signatures, config file names and override strings (see
:mod:`sam2_plugins.upstream_compat`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from .checkpoints import CheckpointError, PathLike, ProgressFn, load_state_dict_file, resolve_checkpoint
from .configs import MODEL_CONFIGS, SAM2Config, get_config
from .device import DeviceLike, pick_device
from .upstream_compat import HF_MODEL_IDS, POSTPROCESSING_OVERRIDES, VIDEO_POSTPROCESSING_OVERRIDES, apply_overrides

if TYPE_CHECKING:  # pragma: no cover
    from .modeling.sam2 import SAM2Model
    from .predictors.video import SAM2VideoPredictor

__all__ = ["build_sam2", "build_sam2_video_predictor", "build_sam2_hf", "build_sam2_video_predictor_hf",
           "load_checkpoint", "guess_model_name"]


_NO_OVERRIDES: Tuple[str, ...] = ()


def _resolve_name(name: Union[str, SAM2Config, None], config_file: Union[str, SAM2Config, None]
                  ) -> Union[str, SAM2Config]:
    if config_file is not None and name is not None:
        raise TypeError("pass the model as name (ours) or config_file (upstream's keyword), not both")
    chosen = config_file if config_file is not None else name
    return "sam2.1_hiera_tiny" if chosen is None else chosen


def _resolve_checkpoint(checkpoint: Optional[PathLike], ckpt_path: Optional[PathLike]) -> Optional[PathLike]:
    if checkpoint is not None and ckpt_path is not None:
        raise TypeError("pass the weights as checkpoint (ours) or ckpt_path (upstream's keyword), not both")
    return ckpt_path if ckpt_path is not None else checkpoint


def _no_extra(kwargs: Mapping[str, object], where: str) -> None:
    if kwargs:
        raise TypeError(f"{where}() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")


def _make_config(name_or_cfg: Union[str, SAM2Config], apply_postprocessing: bool,
                 overrides: Sequence[str], video: bool) -> Tuple[SAM2Config, Dict[str, object]]:
    """The config after upstream's builder rules, and the video predictor's keyword arguments.

    As upstream: dynamic multimask (and for a video predictor mask binarisation and hole
    filling) are off unless ``apply_postprocessing`` or an override turns them on; the
    postprocessing overrides come after the caller's, so they win.
    """
    cfg = name_or_cfg if isinstance(name_or_cfg, SAM2Config) else get_config(name_or_cfg)
    cfg = replace(cfg, decoder=replace(cfg.decoder, dynamic_multimask_via_stability=False))
    if video:  # upstream's SAM2Base / SAM2VideoPredictor defaults, whatever our config's are
        cfg = cfg.with_tracking(binarize_mask_from_pts_for_mem_enc=False, fill_hole_area=0)
    post = VIDEO_POSTPROCESSING_OVERRIDES if video else POSTPROCESSING_OVERRIDES
    return apply_overrides(cfg, overrides, video=video, then=post if apply_postprocessing else ())


def build_sam2(
    name: Union[str, SAM2Config, None] = None,
    checkpoint: Optional[PathLike] = None,
    device: DeviceLike = None,
    mode: str = "eval",
    hydra_overrides_extra: Sequence[str] = _NO_OVERRIDES,
    apply_postprocessing: bool = True,
    *,
    config_file: Union[str, SAM2Config, None] = None,
    ckpt_path: Optional[PathLike] = None,
    progress: Union[bool, ProgressFn] = True,
    **kwargs: object,
) -> "SAM2Model":
    """Build a SAM 2 / 2.1 model.

    Takes our arguments and upstream's (``sam2.build_sam.build_sam2(config_file, ckpt_path=None,
    device="cuda", mode="eval", hydra_overrides_extra=[], apply_postprocessing=True)``), by
    position or keyword, so code written for upstream runs unchanged.

    Args:
        name: a model name from :func:`sam2_plugins.configs.list_models` (``"sam2.1_hiera_tiny"``,
            short ``"tiny"``), upstream's config file (``"configs/sam2.1/sam2.1_hiera_t.yaml"``,
            ``"sam2.1_hiera_t.yaml"``, ``"configs/sam2/sam2_hiera_s.yaml"``), or a config.
            Default: ``"sam2.1_hiera_tiny"``.
        checkpoint: ``None`` (random init), a path to an official ``{"model": state_dict}`` file
            (or safetensors / Lightning checkpoint), ``"download"`` (official weights, cached), or
            ``"demo"`` (the weights shipped for the demo model).
        device: ``None`` picks cuda > mps > cpu (upstream defaults to ``"cuda"``); any torch
            device string is accepted.
        mode: ``"eval"`` (default) or ``"train"``.
        hydra_overrides_extra: upstream's override strings, e.g.
            ``["++model.memory_temporal_stride_for_eval=2"]``; the supported keys are listed in
            :mod:`sam2_plugins.upstream_compat` (an unsupported one raises ``ValueError``).
        apply_postprocessing: as upstream: dynamic multimask via stability (delta 0.05,
            threshold 0.98) for single-mask requests; ``False``: off (unless an override sets it).
        config_file, ckpt_path: upstream's keywords for ``name`` and ``checkpoint``.
        progress: show a download progress bar (or a callback ``fn(done_bytes, total_bytes)``).

    Returns:
        The model on ``device`` in the requested mode.
    """
    _no_extra(kwargs, "build_sam2")
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    cfg, _ = _make_config(_resolve_name(name, config_file), apply_postprocessing, hydra_overrides_extra,
                          video=False)
    return _build_model(cfg, _resolve_checkpoint(checkpoint, ckpt_path), device, mode, progress)


def _build_model(cfg: SAM2Config, checkpoint: Optional[PathLike], device: DeviceLike, mode: str,
                 progress: Union[bool, ProgressFn]) -> "SAM2Model":
    dev = pick_device(device)
    from .modeling.sam2 import SAM2Model

    model = SAM2Model(cfg)
    path = resolve_checkpoint(cfg.name, checkpoint, progress=progress)
    if path is not None:
        load_checkpoint(model, path)
    model = model.to(dev)
    return model.train() if mode == "train" else model.eval()


def build_sam2_video_predictor(
    name: Union[str, SAM2Config, None] = None,
    checkpoint: Optional[PathLike] = None,
    device: DeviceLike = None,
    mode: str = "eval",
    hydra_overrides_extra: Sequence[str] = _NO_OVERRIDES,
    apply_postprocessing: bool = True,
    vos_optimized: bool = False,
    *,
    config_file: Union[str, SAM2Config, None] = None,
    ckpt_path: Optional[PathLike] = None,
    progress: Union[bool, ProgressFn] = True,
    **predictor_kwargs: object,
) -> "SAM2VideoPredictor":
    """Build a model and wrap it in a :class:`SAM2VideoPredictor`, as upstream's builder does.

    Takes upstream's arguments (``sam2.build_sam.build_sam2_video_predictor(config_file,
    ckpt_path=None, device="cuda", mode="eval", hydra_overrides_extra=[],
    apply_postprocessing=True, vos_optimized=False)``) by position or keyword, and reproduces
    upstream's numerics on the same device: the predictor computes in float32 (``dtype=None``;
    an outer ``torch.autocast`` still applies, as upstream), unlike ``SAM2VideoPredictor(model)``
    whose default ``dtype="auto"`` may use bf16. Pass ``dtype="auto"`` for the faster path.

    Args:
        name, checkpoint, device, mode, config_file, ckpt_path, progress: as :func:`build_sam2`.
        hydra_overrides_extra: upstream's override strings. Model keys go to the config (see
            :mod:`sam2_plugins.upstream_compat`); ``non_overlap_masks``, ``fill_hole_area``,
            ``clear_non_cond_mem_around_input`` and ``add_all_frames_to_correct_as_cond`` become
            the predictor's arguments. An unsupported key raises ``ValueError`` naming it.
        apply_postprocessing: as upstream: dynamic multimask via stability (delta 0.05,
            threshold 0.98), prompted masks binarised before memory encoding
            (``binarize_mask_from_pts_for_mem_enc``) and holes up to 8 pixels filled
            (``fill_hole_area=8``). These win over the same keys in ``hydra_overrides_extra``,
            as upstream. ``False``: all three off unless an override sets them.
        vos_optimized: compile the image encoder and the per-frame step (the predictor's
            ``compile=True``), in place of upstream's ``SAM2VideoPredictorVOS``.
        **predictor_kwargs: further :class:`SAM2VideoPredictor` arguments (``dtype``,
            ``bounded_memory``, ...).
    """
    from .predictors.video import SAM2VideoPredictor

    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    cfg, from_overrides = _make_config(_resolve_name(name, config_file), apply_postprocessing,
                                       hydra_overrides_extra, video=True)
    model = _build_model(cfg, _resolve_checkpoint(checkpoint, ckpt_path), device, mode, progress)
    kwargs: Dict[str, Any] = {"dtype": None, **from_overrides,
                              "fill_hole_area": cfg.tracking.fill_hole_area}
    if vos_optimized:
        kwargs["compile"] = True
    clash = sorted(set(kwargs) & set(predictor_kwargs) - {"dtype"})
    if clash:
        raise TypeError(f"{', '.join(clash)} given both as an override / builder argument and as a keyword")
    kwargs.update(predictor_kwargs)
    # apply_postprocessing=False: the model's config already carries binarize_mask_from_pts_for_mem_enc
    # (the predictor only tests its truth value, so False acts as the None passed before).
    return SAM2VideoPredictor(model, apply_postprocessing=False, **kwargs)


def _hf_kwargs(model_id: str, kwargs: Dict[str, object]) -> Dict[str, object]:
    if model_id not in HF_MODEL_IDS:
        raise ValueError(f"unknown Hugging Face model id {model_id!r}; expected one of {', '.join(HF_MODEL_IDS)}")
    if "checkpoint" not in kwargs and "ckpt_path" not in kwargs:
        kwargs["checkpoint"] = "download"
    return {"name": HF_MODEL_IDS[model_id], **kwargs}


def build_sam2_hf(model_id: str, **kwargs: object) -> "SAM2Model":
    """Upstream's ``build_sam2_hf``: a model from its Hugging Face id (``"facebook/sam2.1-hiera-tiny"``)
    with the official weights (``checkpoint="download"``: Meta's URL or the Hugging Face mirror,
    cached). Other keywords go to :func:`build_sam2`."""
    return build_sam2(**_hf_kwargs(model_id, dict(kwargs)))  # type: ignore[arg-type]


def build_sam2_video_predictor_hf(model_id: str, **kwargs: object) -> "SAM2VideoPredictor":
    """Upstream's ``build_sam2_video_predictor_hf``: as :func:`build_sam2_hf`, through
    :func:`build_sam2_video_predictor`."""
    return build_sam2_video_predictor(**_hf_kwargs(model_id, dict(kwargs)))  # type: ignore[arg-type]


def _shapes(sd: Mapping[str, torch.Tensor]) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def guess_model_name(state_dict: Mapping[str, torch.Tensor]) -> Tuple[str, float]:
    """The known model whose keys and shapes best match ``state_dict``, and the match fraction."""
    from .modeling.sam2 import SAM2Model

    got = _shapes(state_dict)
    best, best_score = "", -1.0
    for n, cfg in MODEL_CONFIGS.items():
        with torch.device("meta"):
            ref = _shapes(SAM2Model(cfg).state_dict())
        same = sum(1 for k, s in got.items() if ref.get(k) == s)
        score = same / max(len(ref), len(got), 1)
        if score > best_score:
            best, best_score = n, score
    return best, best_score


def load_checkpoint(model: torch.nn.Module, path: PathLike) -> torch.nn.Module:
    """Load a checkpoint file into ``model`` strictly (key for key, shape for shape).

    Raises:
        CheckpointError: on any mismatch, naming the missing / unexpected / mis-shaped keys and the
            model the file most likely belongs to.
    """
    sd = load_state_dict_file(path)
    own = model.state_dict()
    missing: List[str] = [k for k in own if k not in sd]
    unexpected: List[str] = [k for k in sd if k not in own]
    wrong = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        guess, score = guess_model_name(sd)
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)

        def _few(items: List[str]) -> str:
            return ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")

        parts = [f"checkpoint {path} does not fit model {name!r}"]
        if missing:
            parts.append(f"missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_few(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches: {_few(wrong)}")
        if guess and score > 0.5:
            parts.append(f"the file looks like {guess!r} ({100 * score:.0f}% of keys and shapes match): "
                         f"build_sam2({guess!r}, checkpoint=...)")
        raise CheckpointError("\n  ".join(parts))
    model.load_state_dict(sd, strict=True)
    return model
