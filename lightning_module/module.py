"""``SAM2FineTuner``: the LightningModule that trains SAM 2 on images and video clips.

Images are 1-frame clips; clips go through the memory path exactly as upstream trains
(:mod:`lightning_module.tracking`), with simulated prompts (:mod:`lightning_module.prompts`)
and the paper's loss (:mod:`lightning_module.losses`). Validation tracks each clip from a
first-frame ground-truth mask (DAVIS J&F) and segments frame 0 from one centre click (mIoU).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from .export import export_checkpoint
from .lora import DEFAULT_LORA_TARGETS, add_lora, is_lora_param
from .losses import LossWeights, SAM2Loss
from .metrics import JandF, MaskIoU, best_candidate
from .optim import CosineSchedule, GroupSchedule, freeze_prefixes, param_groups
from .prompts import PromptConfig, plan_prompts, sample_center_points
from .tracking import ClipBatch, forward_clip, predict_first_click

__all__ = ["SAM2FineTuner", "build_trainable_model"]


def build_trainable_model(name: str, checkpoint: Optional[str] = None,
                drop_path_rate: Optional[float] = None,
                attention_dropout: Optional[float] = None) -> nn.Module:
    """A core SAM 2 model in train mode (random init, or weights from ``checkpoint``).

    ``drop_path_rate`` (Hiera stochastic depth) and ``attention_dropout`` (memory attention,
    0.1 upstream) override the config; neither changes the parameters, so checkpoints stay
    interchangeable.
    """
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    cfg = get_config(name)
    if drop_path_rate is not None:
        cfg = replace(cfg, hiera=replace(cfg.hiera, drop_path_rate=drop_path_rate))
    if attention_dropout is not None:
        cfg = replace(cfg, memory=replace(cfg.memory, attention_dropout=attention_dropout))
    model = SAM2Model(cfg)
    if checkpoint is not None:
        from sam2_plugins.build import load_checkpoint
        from sam2_plugins.checkpoints import resolve_checkpoint

        path = resolve_checkpoint(cfg.name, checkpoint)
        if path is not None:
            load_checkpoint(model, path)
    return model.train()


class SAM2FineTuner(pl.LightningModule):
    """Fine-tune (or train) a SAM 2 model.

    Args:
        model: a built core model (:class:`SAM2Model` or upstream ``SAM2Base``). When None,
            one is built from ``model_name`` / ``checkpoint`` (what LightningCLI and
            ``load_from_checkpoint`` use).
        model_name, checkpoint, drop_path_rate, attention_dropout: how to build it in that case
            (``checkpoint``: a path, ``"download"``, ``"demo"`` or None for random init).
        lr: AdamW rate of everything but the image encoder (upstream fine-tune: 5e-6).
        vision_lr: rate of the image encoder (upstream 3e-6; None: ``lr``).
        weight_decay: AdamW decay of weights (biases / norms: 0).
        layer_decay: layer-wise LR decay inside the Hiera trunk (1: off).
        min_lr_ratio, warmup_steps: cosine schedule to ``min_lr_ratio`` × the start rate after a
            linear warm-up, stepped every optimizer step over the trainer's estimated steps;
            with a trainer ``max_time`` (one process) it follows whichever of steps and time is
            further on.
        freeze_image_encoder: do not train the image encoder at all (see also
            :class:`~lightning_module.callbacks.ImageEncoderFreeze` to unfreeze it mid-run).
        freeze: parameter-name prefixes not to train (e.g. ``["image_encoder",
            "sam_prompt_encoder"]``); a prefix that matches nothing is an error.
        train_only: the opposite: train only parameters under these prefixes (e.g.
            ``["sam_mask_decoder"]``). Both apply after LoRA's own choice.
        lora_rank: > 0 adds LoRA adapters (:mod:`lightning_module.lora`) and trains only them
            plus the parameters matching ``lora_trainable`` (default: the mask decoder).
        lora_alpha, lora_targets, lora_trainable: adapter scale, target layers and extras.
        prompts: overrides of :class:`~lightning_module.prompts.PromptConfig` fields.
        loss_weights: overrides of :class:`~lightning_module.losses.LossWeights` (mask, dice,
            iou, cls).
        prompt_seed: seed of the clip-level prompt decisions (equal on all DDP ranks).
        val_click_miou: also score a one-click segmentation of frame 0 in validation.
    """

    def __init__(self, model: Optional[nn.Module] = None, model_name: str = "sam2.1_hiera_nano",
                 checkpoint: Optional[str] = None, drop_path_rate: Optional[float] = None,
                 attention_dropout: Optional[float] = None,
                 lr: float = 5e-6, vision_lr: Optional[float] = 3e-6, weight_decay: float = 0.1,
                 layer_decay: float = 0.9, min_lr_ratio: float = 0.1, warmup_steps: int = 0,
                 freeze_image_encoder: bool = False, freeze: Sequence[str] = (),
                 train_only: Sequence[str] = (), lora_rank: int = 0, lora_alpha: float = 16.0,
                 lora_targets: Sequence[str] = DEFAULT_LORA_TARGETS,
                 lora_trainable: Sequence[str] = ("sam_mask_decoder.",),
                 prompts: Optional[Dict[str, Any]] = None,
                 loss_weights: Optional[Dict[str, float]] = None, prompt_seed: int = 42,
                 val_click_miou: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        if model is None:
            model = build_trainable_model(model_name, checkpoint, drop_path_rate, attention_dropout)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        name = getattr(getattr(model, "config", None), "name", None)
        if name is not None:
            # record the real size, so that load_from_checkpoint rebuilds the right model
            self.hparams["model_name"] = name
        self.model = model
        self.prompt_cfg = PromptConfig(**(prompts or {}))
        self.loss_fn = SAM2Loss(LossWeights(**(loss_weights or {})))
        self.rng = np.random.default_rng(prompt_seed)
        if freeze_image_encoder:
            for p in self.model.image_encoder.parameters():
                p.requires_grad_(False)
        if lora_rank > 0:
            for p in self.model.parameters():
                p.requires_grad_(False)
            add_lora(self.model, lora_rank, lora_alpha, tuple(lora_targets))
            for name, p in self.model.named_parameters():
                if is_lora_param(name) or any(name.startswith(t) for t in lora_trainable):
                    p.requires_grad_(True)
        if freeze or train_only:
            freeze_prefixes(self.model, list(freeze), list(train_only) or None)
        self.val_jf = JandF()
        self.val_miou = MaskIoU()
        self.val_miou_best = MaskIoU()

    # ------------------------------------------------------------------ forward
    def forward(self, batch: ClipBatch) -> List[Dict[str, Any]]:
        """Per-frame outputs of a clip batch under this mode's prompt protocol."""
        self._check_batch(batch)
        plan = plan_prompts(batch.masks, self.prompt_cfg, self.rng, training=self.training)
        return forward_clip(self.model, batch, plan, self.prompt_cfg, self.rng)

    # ------------------------------------------------------------------ steps
    def _check_batch(self, batch: ClipBatch) -> None:
        size = getattr(self.model, "image_size", None)
        if size is not None and tuple(batch.images.shape[-2:]) != (size, size):
            name = getattr(getattr(self.model, "config", None), "name", "the model")
            raise ValueError(f"batch images are {tuple(batch.images.shape[-2:])} but {name} takes "
                             f"({size}, {size}) inputs: make the data at image_size {size}")

    def on_train_start(self) -> None:
        # With max_steps only, Lightning sets max_epochs = -1 and progress bars print
        # "Epoch 1/-2"; the run really lasts ceil(max_steps / steps per epoch) epochs.
        t = self.trainer
        per_epoch = t.num_training_batches / max(t.accumulate_grad_batches, 1)
        if t.max_epochs in (None, -1) and t.max_steps > 0 and np.isfinite(per_epoch) \
                and per_epoch > 0:
            t.fit_loop.max_epochs = int(np.ceil(t.max_steps / per_epoch))

    def training_step(self, batch: ClipBatch, batch_idx: int) -> torch.Tensor:
        outs = self(batch)
        losses = self.loss_fn(outs, batch.masks)
        loss = losses["core_loss"]
        if not loss.requires_grad:
            # Every frame was a mask-prompted conditioning frame (possible for clips of <= 2
            # frames): nothing was predicted, so the step is a zero-gradient no-op. The zero
            # term keeps autograd (and DDP's gradient hooks) working.
            loss = loss + sum(p.reshape(-1)[0] * 0.0 for p in self.model.parameters()
                              if p.requires_grad)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {float(loss)} at step {self.global_step} on clips "
                f"{batch.names}: {({k: float(v) for k, v in losses.items()})}")
        n = float(batch.images.shape[1])
        self.log("train/loss", loss, prog_bar=True, batch_size=int(n))
        self.log_dict({f"train/{k}": v for k, v in losses.items() if k != "core_loss"},
                      batch_size=int(n))
        return loss

    def validation_step(self, batch: ClipBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        outs = self(batch)
        gt = batch.masks
        if batch.num_frames > 1:
            pred = torch.stack([o["pred_masks_high_res"][:, 0] > 0 for o in outs])
            self.val_jf.update(pred, gt)
        losses = self.loss_fn(outs, gt)
        self.log("val/loss", losses["core_loss"], batch_size=int(batch.images.shape[1]),
                 sync_dist=True, add_dataloader_idx=False)
        if self.hparams.val_click_miou:
            coords, labels = sample_center_points(gt[0][:, None], None)
            logits, candidates, _ = predict_first_click(self.model, batch, coords, labels,
                                                        return_all=True)
            self.val_miou.update(logits[:, 0] > 0, gt[0])
            # Diagnostic: the best candidate by true IoU, i.e. what a perfect IoU head would
            # pick; the gap to mIoU_1click is the cost of the IoU head's ranking.
            self.val_miou_best.update(best_candidate(candidates > 0, gt[0]), gt[0])

    def on_validation_epoch_end(self) -> None:
        if self.val_jf.objects.sum() > 0 or self.trainer.world_size > 1:
            scores = self.val_jf.compute()
            self.log_dict({f"val/{k}": v for k, v in scores.items()}, prog_bar=True)
        if self.hparams.val_click_miou:
            self.log("val/mIoU_1click", self.val_miou.compute(), prog_bar=True)
            self.log("val/mIoU_1click_best_of_masks", self.val_miou_best.compute())
            # how many objects the scores cover (summed over processes by the metric)
            self.log("val/objects", self.val_miou.count.float())
        self.val_jf.reset()
        self.val_miou.reset()
        self.val_miou_best.reset()

    # ------------------------------------------------------------------ optimizer
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = param_groups(self.model, hp.lr, hp.vision_lr, hp.weight_decay, hp.layer_decay)
        opt = torch.optim.AdamW(groups)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        if not np.isfinite(total) or total <= 0:
            total = 1
        # GroupSchedule, not LambdaLR: groups added later (ImageEncoderFreeze unfreezing the
        # encoder) follow the same schedule instead of breaking the scheduler
        sched = GroupSchedule(opt, CosineSchedule(int(total), hp.warmup_steps, hp.min_lr_ratio,
                                                  clock=self._time_fraction))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _time_fraction(self) -> float:
        """Fraction of the trainer's ``max_time`` spent training (0 without a time limit)."""
        from lightning.pytorch.callbacks import Timer

        trainer = self._trainer
        if trainer is None or trainer.world_size > 1:
            return 0.0  # each process has its own clock: rates must stay equal across replicas
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is None:
            return 0.0
        left = timer.time_remaining("train")
        spent = timer.time_elapsed("train")
        if left is None or spent + left <= 0:
            return 0.0
        return spent / (spent + left)

    # ------------------------------------------------------------------ export
    def export(self, path: Union[str, Path], dtype: Optional[torch.dtype] = torch.float32) -> Path:
        """Write the official ``{"model": state_dict}`` file (adapters merged)."""
        return export_checkpoint(self.model, path, dtype)

    def describe(self) -> Dict[str, Any]:
        """Hyper-parameters and prompt settings, for model cards."""
        return {"hparams": dict(self.hparams), "prompts": asdict(self.prompt_cfg)}
