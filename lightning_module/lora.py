"""Low-rank adapters (LoRA) on the attention projections, mergeable back into the weights.

An adapter is a ``torch.nn.utils.parametrize`` parametrization of the linear layer's
``weight``: reading ``layer.weight`` gives ``W + scale * B @ A``. Working on the weight (rather
than on the layer's output, with a hook) means that every code path that uses the layer
sees the adapted weight, including fused kernels that read ``layer.weight`` directly.

While adapters are attached the state dict holds ``<layer>.parametrizations.weight.original``
and ``...weight.0.lora_A`` / ``lora_B``; :func:`merge_lora` (used by the exporter) folds them
in and restores the plain ``<layer>.weight`` key, so the exported file is key-for-key an
official checkpoint.
"""

from __future__ import annotations

import fnmatch
import math
import re
from typing import Dict, List, Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["LoRA", "add_lora", "merge_lora", "has_lora", "is_lora_param",
           "merge_lora_state_dict", "DEFAULT_LORA_TARGETS"]

DEFAULT_LORA_TARGETS = ("*attn.qkv", "*q_proj", "*v_proj")
"""Linear layers adapted by default: the trunk's fused qkv, and q / v projections of the
two-way transformer and memory attention (the usual LoRA choice)."""

_PARAM_KEY = re.compile(r"^(.*)\.parametrizations\.weight\.(original|0\.lora_A|0\.lora_B)$")


class LoRA(nn.Module):
    """Weight parametrization ``W -> W + scale * B @ A``; B starts at zero (no change)."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.lora_B @ self.lora_A).to(weight.dtype) * self.scale


def is_lora_param(name: str) -> bool:
    """Whether a parameter name belongs to an adapter."""
    return name.endswith(".lora_A") or name.endswith(".lora_B")


def add_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0,
             targets: Sequence[str] = DEFAULT_LORA_TARGETS) -> List[str]:
    """Attach adapters to every ``nn.Linear`` whose qualified name matches a target pattern.

    Args:
        targets: fnmatch patterns on module names (e.g. ``"*attn.qkv"``).

    Returns:
        Names of the adapted linear layers.

    Raises:
        ValueError: when no layer matches (a misspelt pattern would otherwise train nothing).
    """
    chosen = [(n, m) for n, m in model.named_modules()
              if isinstance(m, nn.Linear) and not parametrize.is_parametrized(m, "weight")
              and any(fnmatch.fnmatchcase(n, p) for p in targets)]
    if not chosen:
        raise ValueError(f"no nn.Linear matches the LoRA targets {list(targets)}")
    for _, mod in chosen:
        w = mod.weight
        lora = LoRA(mod.in_features, mod.out_features, rank, alpha).to(w.device, w.dtype)
        parametrize.register_parametrization(mod, "weight", lora)
    return [n for n, _ in chosen]


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRA) for m in model.modules())


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its linear weight and remove it (in place).

    Returns:
        The number of merged adapters.
    """
    n = 0
    for mod in list(model.modules()):
        if isinstance(mod, nn.Linear) and parametrize.is_parametrized(mod, "weight"):
            if any(isinstance(p, LoRA) for p in mod.parametrizations["weight"]):
                parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
                n += 1
    return n


def merge_lora_state_dict(sd: Mapping[str, torch.Tensor], scale: float
                          ) -> Dict[str, torch.Tensor]:
    """Merge adapters inside a plain state dict (e.g. from a Lightning checkpoint).

    ``<l>.parametrizations.weight.original`` + ``scale * lora_B @ lora_A`` becomes
    ``<l>.weight``; other keys are kept.
    """
    parts: Dict[str, Dict[str, torch.Tensor]] = {}
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = _PARAM_KEY.match(k)
        if m:
            parts.setdefault(m.group(1), {})[m.group(2)] = v
        else:
            out[k] = v
    for base, p in parts.items():
        w = p["original"]
        if "0.lora_A" in p:
            delta = p["0.lora_B"].float() @ p["0.lora_A"].float() * scale
            w = (w.float() + delta).to(w.dtype)
        out[base + ".weight"] = w
    return out
