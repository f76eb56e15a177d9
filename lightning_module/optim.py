"""Parameter groups (layer-wise LR decay, no weight decay on biases / norms) and the schedule.

Upstream's recipe: AdamW; the image encoder has its own (lower) learning rate; inside the
Hiera trunk, block ``i`` of ``L`` gets ``decay ** (L + 1 - (i + 1))`` of it (patch and position
embeddings the smallest factor, position embeddings exempted); biases and LayerNorm
parameters get no weight decay; the rate follows a cosine from its start value to a tenth.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["param_groups", "trunk_layer_scale", "cosine_lambda", "CosineSchedule", "GroupSchedule",
           "freeze_prefixes"]

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
                 layer_decay: float, prefix: str = "", only: Sequence[str] = ()) -> List[Dict]:
    """AdamW parameter groups of the trainable parameters of ``model``.

    Args:
        model: the SAM 2 model (names as in the state dict).
        lr: base rate (everything but the image encoder).
        vision_lr: rate of ``image_encoder.*`` (None: ``lr``).
        weight_decay: for weights; biases and norm parameters get 0.
        layer_decay: per-block factor inside the trunk (1: off).
        only: when given, only parameters whose names start with one of these prefixes (e.g.
            the image encoder's, when a callback unfreezes it mid-run).

    Returns:
        A list of ``{"params", "lr", "weight_decay", "name"}`` dicts (one per distinct pair).
    """
    trunk = getattr(getattr(model, "image_encoder", None), "trunk", None)
    num_blocks = len(trunk.blocks) if trunk is not None and hasattr(trunk, "blocks") else 0
    no_decay = _no_decay_names(model)
    groups: Dict[Tuple[float, float], Dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad or (only and not name.startswith(tuple(only))):
            continue
        base = vision_lr if (vision_lr is not None and name.startswith("image_encoder.")) else lr
        rate = base * trunk_layer_scale(name, num_blocks, layer_decay)
        wd = 0.0 if name in no_decay else weight_decay
        key = (rate, wd)
        if key not in groups:
            groups[key] = {"params": [], "lr": rate, "initial_lr": rate, "weight_decay": wd,
                           "name": f"{prefix}lr{rate:.3g}_wd{wd:g}"}
        groups[key]["params"].append(p)
    if not groups and not only:
        raise RuntimeError("the model has no trainable parameter (everything is frozen)")
    return list(groups.values())


class CosineSchedule:
    """Multiplier of the initial LR at a step: linear warm-up, then cosine to ``min_ratio``.

    With a ``clock`` (a function giving the fraction of a time budget spent, 0..1), the cosine
    follows whichever is further along, the steps or the clock, so a run stopped by its time
    limit still ends at the low rate.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.1,
                 clock: Optional[Callable[[], float]] = None) -> None:
        self.total = max(int(total_steps), 1)
        self.warmup_steps, self.min_ratio = int(warmup_steps), float(min_ratio)
        self.clock = clock

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / max(self.warmup_steps, 1)
        t = min((step - self.warmup_steps) / max(self.total - self.warmup_steps, 1), 1.0)
        if self.clock is not None:
            t = max(t, min(float(self.clock()), 1.0))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def cosine_lambda(total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.1
                  ) -> CosineSchedule:
    """The :class:`CosineSchedule` multiplier (kept under its old name)."""
    return CosineSchedule(total_steps, warmup_steps, min_ratio)


class GroupSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Every parameter group's rate is its ``initial_lr`` × ``factor(step)``.

    Unlike ``LambdaLR``, whose list of lambdas is fixed when it is built, this covers groups
    added to the optimizer later (a callback unfreezing the image encoder mid-run): a new
    group takes its ``lr`` at the time it is added as its ``initial_lr``, and follows the
    same schedule from the current step on.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float],
                 last_epoch: int = -1) -> None:
        self.factor = factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:  # type: ignore[override]
        f = float(self.factor(max(self.last_epoch, 0)))
        out = []
        for g in self.optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
            out.append(g["initial_lr"] * f)
        return out

    def state_dict(self) -> Dict[str, Any]:
        # the factor is code, rebuilt by configure_optimizers; only the counters are state
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "factor")}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "factor"})


def _names_under(model: nn.Module, prefixes: Sequence[str], what: str) -> set:
    """Names of the parameters that start with one of ``prefixes``. A prefix that matches
    nothing is an error (a typo would otherwise silently train or freeze everything)."""
    names = [n for n, _ in model.named_parameters()]
    out = set()
    for pre in (p.strip() for p in prefixes if p.strip()):
        hits = [n for n in names if n.startswith(pre)]
        if not hits:
            top = sorted({n.split(".", 1)[0] for n in names})
            raise ValueError(f"{what}: no parameter name starts with {pre!r}; "
                             f"top-level modules: {top}")
        out.update(hits)
    return out


def freeze_prefixes(model: nn.Module, freeze: Sequence[str] = (),
                    train_only: Optional[Sequence[str]] = None,
                    names: Tuple[str, str] = ("freeze", "train_only")) -> int:
    """Turn off gradients of the parameters under ``freeze`` and, with ``train_only``, of
    every parameter not under it; returns how many parameters were frozen.

    Prefixes are parameter-name prefixes (``image_encoder``, ``sam_mask_decoder``,
    ``memory_attention``, ...); one that matches nothing raises ``ValueError``.
    """
    frozen = _names_under(model, freeze, names[0])
    if train_only:
        keep = _names_under(model, train_only, names[1])
        frozen |= {n for n, _ in model.named_parameters() if n not in keep}
    for n, p in model.named_parameters():
        if n in frozen:
            p.requires_grad_(False)
    return len(frozen)
