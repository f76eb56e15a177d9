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
    On unfreezing, the encoder's parameters join the optimizer as a new group with
    ``lr_factor`` × the first group's initial rate (the layer-wise decay of the trunk does not
    apply to that group).

    Args:
        unfreeze_at_epoch: epoch at which to start training the encoder (None: never).
        lr_factor: its learning rate relative to the base rate.
        train_bn: whether norm layers stay trainable while frozen.
    """

    def __init__(self, unfreeze_at_epoch: Optional[int] = None, lr_factor: float = 0.6,
                 train_bn: bool = False) -> None:
        super().__init__()
        if unfreeze_at_epoch is not None and unfreeze_at_epoch < 0:
            raise ValueError(f"unfreeze_at_epoch must be >= 0 or None, got {unfreeze_at_epoch}")
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
        base = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
        self.unfreeze_and_add_param_group(self._encoder(pl_module), optimizer,
                                          lr=base * self.lr_factor, train_bn=True,
                                          initial_denom_lr=1.0)


class ExportOnFitEnd(Callback):
    """Write the official ``{"model": state_dict}`` file when ``fit`` ends (rank 0 only)."""

    def __init__(self, path: Union[str, Path]) -> None:
        super().__init__()
        self.path = Path(path)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            from .export import export_checkpoint

            export_checkpoint(pl_module, self.path)
