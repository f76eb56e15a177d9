"""``build_sam2``: config + (optional) checkpoint + device -> a ready :class:`SAM2Model`."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple, Union

import torch

from .checkpoints import CheckpointError, PathLike, ProgressFn, load_state_dict_file, resolve_checkpoint
from .configs import MODEL_CONFIGS, SAM2Config, get_config
from .device import DeviceLike, pick_device

if TYPE_CHECKING:  # pragma: no cover
    from .modeling.sam2 import SAM2Model
    from .predictors.video import SAM2VideoPredictor

__all__ = ["build_sam2", "build_sam2_video_predictor", "load_checkpoint", "guess_model_name"]


def _make_config(name_or_cfg: Union[str, SAM2Config], apply_postprocessing: bool) -> SAM2Config:
    cfg = name_or_cfg if isinstance(name_or_cfg, SAM2Config) else get_config(name_or_cfg)
    if not apply_postprocessing:
        cfg = replace(cfg, decoder=replace(cfg.decoder, dynamic_multimask_via_stability=False))
    return cfg


def build_sam2(
    name: Union[str, SAM2Config] = "sam2.1_hiera_tiny",
    checkpoint: Optional[PathLike] = None,
    device: DeviceLike = None,
    mode: str = "eval",
    *,
    apply_postprocessing: bool = True,
    progress: Union[bool, ProgressFn] = True,
) -> "SAM2Model":
    """Build a SAM 2 / 2.1 model.

    Args:
        name: a model name from :func:`sam2_plugins.configs.list_models` (``"sam2.1_hiera_tiny"``,
            short ``"tiny"``, an upstream yaml stem such as ``"sam2.1_hiera_t"``), or a config.
        checkpoint: ``None`` (random init), a path to an official ``{"model": state_dict}`` file
            (or safetensors / Lightning checkpoint), ``"download"`` (official weights, cached), or
            ``"demo"`` (the weights shipped for the demo model).
        device: ``None`` picks cuda > mps > cpu.
        mode: ``"eval"`` (default) or ``"train"``.
        apply_postprocessing: as upstream: dynamic multimask via stability for single-mask requests.
        progress: show a download progress bar (or a callback ``fn(done_bytes, total_bytes)``).

    Returns:
        The model on ``device`` in the requested mode.
    """
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    cfg = _make_config(name, apply_postprocessing)
    dev = pick_device(device)
    from .modeling.sam2 import SAM2Model

    model = SAM2Model(cfg)
    path = resolve_checkpoint(cfg.name, checkpoint, progress=progress)
    if path is not None:
        load_checkpoint(model, path)
    model = model.to(dev)
    return model.train() if mode == "train" else model.eval()


def build_sam2_video_predictor(
    name: Union[str, SAM2Config] = "sam2.1_hiera_tiny",
    checkpoint: Optional[PathLike] = None,
    device: DeviceLike = None,
    *,
    apply_postprocessing: bool = True,
    **predictor_kwargs: object,
) -> "SAM2VideoPredictor":
    """Build a model and wrap it in a :class:`SAM2VideoPredictor` (upstream's builder, our way)."""
    from .predictors.video import SAM2VideoPredictor

    model = build_sam2(name, checkpoint, device, apply_postprocessing=apply_postprocessing)
    return SAM2VideoPredictor(model, apply_postprocessing=apply_postprocessing, **predictor_kwargs)


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
