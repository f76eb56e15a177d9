"""Export a fine-tuned model as an official ``{"model": state_dict}`` checkpoint.

The file loads with ``strict=True`` into our :class:`~sam2_plugins.modeling.sam2.SAM2Model`
(``build_sam2(name, checkpoint=path)``) and, for the official sizes, into upstream's
``build_sam2``: LoRA adapters are merged, the Lightning ``model.`` prefix is stripped, tensors
are detached, contiguous, on the CPU and (by default) float32.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn
from torch.nn.utils import parametrize

from .lora import has_lora, is_lora_param, merge_lora_state_dict

__all__ = ["official_state_dict", "export_checkpoint", "convert_lightning_checkpoint"]

PathLike = Union[str, os.PathLike]


def official_state_dict(model: nn.Module, dtype: Optional[torch.dtype] = torch.float32
                        ) -> Dict[str, torch.Tensor]:
    """The model's weights with adapters merged (the model itself is left untouched).

    An adapted layer's ``parametrizations.weight.original`` / ``lora_A`` / ``lora_B`` entries
    are replaced, in place in the key order, by ``weight`` = the adapted weight it computes.
    """
    merged: Dict[str, torch.Tensor] = {}
    if has_lora(model):
        with torch.no_grad():
            for name, mod in model.named_modules():
                if isinstance(mod, nn.Linear) and parametrize.is_parametrized(mod, "weight"):
                    merged[f"{name}.parametrizations.weight.original"] = mod.weight
    out = {}
    for k, v in model.state_dict().items():
        if is_lora_param(k):
            continue
        if k in merged:
            k, v = k.replace(".parametrizations.weight.original", ".weight"), merged[k]
        v = v.detach().to("cpu").contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.clone()
    return out


def _atomic_save(obj: object, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def export_checkpoint(model: nn.Module, path: PathLike,
                      dtype: Optional[torch.dtype] = torch.float32) -> Path:
    """Write ``{"model": state_dict}`` (atomically: temp file, then rename).

    Args:
        model: a SAM 2 model, or a :class:`~lightning_module.module.SAM2FineTuner` (its
            ``.model`` is exported).
        dtype: cast floating tensors to this (``torch.bfloat16`` halves the file); None keeps.
    """
    inner = getattr(model, "model", model)
    if not isinstance(inner, nn.Module):
        raise TypeError(f"expected a model or a SAM2FineTuner, got {type(model).__name__}")
    return _atomic_save({"model": official_state_dict(inner, dtype)}, Path(path))


def convert_lightning_checkpoint(ckpt_path: PathLike, out_path: PathLike,
                                 dtype: Optional[torch.dtype] = torch.float32) -> Path:
    """Turn a Lightning ``.ckpt`` of a :class:`SAM2FineTuner` into an official file.

    Keys under ``model.`` are kept (prefix stripped); LoRA adapters, if any, are merged with
    the scale stored in the checkpoint's hyper-parameters (``lora_alpha / lora_rank``).
    """
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if "state_dict" not in ckpt:
        raise ValueError(f"{ckpt_path} is not a Lightning checkpoint (no 'state_dict')")
    sd = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if not sd:
        raise ValueError(f"{ckpt_path} holds no 'model.*' weights")
    hp = ckpt.get("hyper_parameters", {})
    if any(is_lora_param(k) for k in sd):
        rank, alpha = int(hp.get("lora_rank", 0)), float(hp.get("lora_alpha", 0.0))
        if rank < 1:
            raise ValueError(f"{ckpt_path} has LoRA weights but no lora_rank hyper-parameter")
        sd = merge_lora_state_dict(sd, alpha / rank)
    out = {}
    for k, v in sd.items():
        v = v.detach().contiguous()
        out[k] = v.to(dtype) if (dtype is not None and v.is_floating_point()) else v
    return _atomic_save({"model": out}, Path(out_path))

