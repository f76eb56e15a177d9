"""Callbacks: freeze the image encoder and unfreeze it later; export at the end of fit."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BaseFinetuning, Callback
from torch.optim import Optimizer

__all__ = ["ImageEncoderFreeze", "ExportOnFitEnd"]


class ImageEncoderFreeze(BaseFinetuning):
    """Keep ``model.image_encoder`` frozen, optionally unfreezing it at an epoch.

    Frozen modules also run in eval mode (BatchNorm / dropout off), as BaseFinetuning does.
    On unfreezing, the encoder's parameters join the optimizer with the module's own rules
    for them (``vision_lr``, layer-wise decay in the trunk, no weight decay on biases and
    norms), times ``lr_factor``. The module's scheduler
    (:class:`~lightning_module.optim.GroupSchedule`) covers groups added later, so the new
    groups follow the same warm-up / cosine from the step they join.

    Args:
        unfreeze_at_epoch: epoch at which to start training the encoder (None: never).
        lr_factor: multiplier of the encoder's rates once unfrozen.
        train_bn: whether norm layers stay trainable while frozen.
    """

    def __init__(self, unfreeze_at_epoch: Optional[int] = None, lr_factor: float = 1.0,
                 train_bn: bool = False) -> None:
        super().__init__()
        if unfreeze_at_epoch is not None and unfreeze_at_epoch < 0:
            raise ValueError(f"unfreeze_at_epoch must be >= 0 or None, got {unfreeze_at_epoch}")
        if not lr_factor > 0:
            raise ValueError(f"lr_factor must be > 0, got {lr_factor}")
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.lr_factor = lr_factor
        self.train_bn = train_bn

    @staticmethod
    def _encoder(pl_module: pl.LightningModule):
        model = getattr(pl_module, "model", pl_module)
        enc = getattr(model, "image_encoder", None)
        if enc is None:
            raise RuntimeError("ImageEncoderFreeze needs a module with .model.image_encoder")
        return enc

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(self._encoder(pl_module), train_bn=self.train_bn)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int,
                          optimizer: Optimizer) -> None:
        if self.unfreeze_at_epoch is None or epoch != self.unfreeze_at_epoch:
            return
        from .optim import param_groups

        enc = self._encoder(pl_module)
        self.make_trainable(enc)
        enc.train()
        model = getattr(pl_module, "model", pl_module)
        hp = getattr(pl_module, "hparams", {})
        lr = float(hp.get("lr", optimizer.param_groups[0].get("initial_lr",
                                                              optimizer.param_groups[0]["lr"])))
        vision_lr = hp.get("vision_lr", lr)
        have = {id(p) for g in optimizer.param_groups for p in g["params"]}
        groups = param_groups(model, lr, vision_lr, float(hp.get("weight_decay", 0.0)),
                              float(hp.get("layer_decay", 1.0)), prefix="unfrozen_",
                              only=("image_encoder.",))
        # the current point of the schedule, so the new groups join at the same place
        ref = optimizer.param_groups[0]
        factor = ref["lr"] / ref["initial_lr"] if ref.get("initial_lr") else 1.0
        for g in groups:
            g["params"] = [p for p in g["params"] if id(p) not in have]
            if g["params"]:
                g["initial_lr"] = g["lr"] * self.lr_factor
                g["lr"] = g["initial_lr"] * factor
                optimizer.add_param_group(g)


class ExportOnFitEnd(Callback):
    """Write the official ``{"model": state_dict}`` file when ``fit`` ends (rank 0 only)."""

    def __init__(self, path: Union[str, Path]) -> None:
        super().__init__()
        self.path = Path(path)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            from .export import export_checkpoint

            export_checkpoint(pl_module, self.path)
