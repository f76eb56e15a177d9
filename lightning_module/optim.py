"""Parameter groups (layer-wise LR decay, no weight decay on biases / norms) and the schedule.

Upstream's recipe: AdamW; the image encoder has its own (lower) learning rate; inside the
Hiera trunk, block ``i`` of ``L`` gets ``decay ** (L + 1 - (i + 1))`` of it (patch and position
embeddings the smallest factor, position embeddings exempted); biases and LayerNorm
parameters get no weight decay; the rate follows a cosine from its start value to a tenth.
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

__all__ = ["param_groups", "trunk_layer_scale", "cosine_lambda"]

_BLOCK = re.compile(r"image_encoder\.trunk\.blocks\.(\d+)\.")


def trunk_layer_scale(name: str, num_blocks: int, decay: float) -> float:
    """LR factor of a parameter under layer-wise decay (1 outside the trunk).

    Layer ids as BEiT / upstream Hiera: patch embedding 0, block i -> i + 1, anything else in
    the trunk -> num_blocks + 1 (factor 1); position embeddings are exempt (factor 1).
    """
    if decay >= 1.0 or not name.startswith("image_encoder.trunk."):
        return 1.0
    if "pos_embed" in name:
        return 1.0
    top = num_blocks + 1
    if "patch_embed" in name:
        layer = 0
    else:
        m = _BLOCK.match(name)
        layer = int(m.group(1)) + 1 if m else top
    return decay ** (top - layer)


def _no_decay_names(model: nn.Module) -> set:
    out = set()
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if pname == "bias" or isinstance(mod, (nn.LayerNorm, nn.GroupNorm)):
                out.add(full)
    return out


def param_groups(model: nn.Module, lr: float, vision_lr: Optional[float], weight_decay: float,
                 layer_decay: float, prefix: str = "") -> List[Dict]:
    """AdamW parameter groups of the trainable parameters of ``model``.

    Args:
        model: the SAM 2 model (names as in the state dict).
        lr: base rate (everything but the image encoder).
        vision_lr: rate of ``image_encoder.*`` (None: ``lr``).
        weight_decay: for weights; biases and norm parameters get 0.
        layer_decay: per-block factor inside the trunk (1: off).

    Returns:
        A list of ``{"params", "lr", "weight_decay", "name"}`` dicts (one per distinct pair).
    """
    trunk = getattr(getattr(model, "image_encoder", None), "trunk", None)
    num_blocks = len(trunk.blocks) if trunk is not None and hasattr(trunk, "blocks") else 0
    no_decay = _no_decay_names(model)
    groups: Dict[Tuple[float, float], Dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        base = vision_lr if (vision_lr is not None and name.startswith("image_encoder.")) else lr
        rate = base * trunk_layer_scale(name, num_blocks, layer_decay)
        wd = 0.0 if name in no_decay else weight_decay
        key = (rate, wd)
        if key not in groups:
            groups[key] = {"params": [], "lr": rate, "weight_decay": wd,
                           "name": f"{prefix}lr{rate:.3g}_wd{wd:g}"}
        groups[key]["params"].append(p)
    if not groups:
        raise RuntimeError("the model has no trainable parameter (everything is frozen)")
    return list(groups.values())


def cosine_lambda(total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.1):
    """Multiplier of the initial LR at a step: linear warm-up, then cosine to ``min_ratio``."""
    total = max(int(total_steps), 1)

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        t = min((step - warmup_steps) / max(total - warmup_steps, 1), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f
