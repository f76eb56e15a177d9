"""Every documented option works: unfreezing mid-run, freeze / train-only keys, Lightning
``.ckpt`` files in ``build_sam2`` (LoRA merged), the size check, the epoch display."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lightning_module.callbacks import ImageEncoderFreeze
from lightning_module.datamodules import SAM2DataModule
from lightning_module.module import SAM2FineTuner

from .helpers import synthetic_spec, trainer_kwargs


class LrProbe(Callback):
    """Per step: the number of parameter groups and the rate of each."""

    def __init__(self) -> None:
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        opt = trainer.optimizers[0]
        self.steps.append((trainer.current_epoch, [g["lr"] for g in opt.param_groups],
                           [g.get("initial_lr") for g in opt.param_groups]))


def test_unfreezing_mid_run_goes_through_the_scheduler_then_exports(tmp_path):
    from sam2_plugins.build import build_sam2

    dm = SAM2DataModule(train_sources=[synthetic_spec(1)], batch_size=1, train_batches=2,
                        image_size=256)
    module = SAM2FineTuner(lr=1e-3, vision_lr=5e-4, warmup_steps=0, min_lr_ratio=0.1,
                           prompts={"num_correction_clicks": 1})
    enc_before = {k: v.clone() for k, v in module.model.image_encoder.state_dict().items()}
    probe = LrProbe()
    trainer = pl.Trainer(max_epochs=3, callbacks=[ImageEncoderFreeze(unfreeze_at_epoch=1), probe],
                         **trainer_kwargs())
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 6
    n_groups = [len(lrs) for _, lrs, _ in probe.steps]
    assert n_groups[0] == n_groups[1] < n_groups[2] == n_groups[-1]  # groups added at epoch 1
    # the schedule drives the added groups too: their rate falls with everyone else's
    _, lrs2, init2 = probe.steps[2]
    _, lrs5, init5 = probe.steps[5]
    new = range(n_groups[0], n_groups[2])
    for g in new:
        assert init2[g] == pytest.approx(5e-4) or init2[g] < 5e-4  # vision_lr, layer-decayed
        assert lrs5[g] < lrs2[g]
        assert lrs5[g] / init5[g] == pytest.approx(lrs5[0] / init5[0])
    changed = [k for k, v in module.model.image_encoder.state_dict().items()
               if not torch.equal(v, enc_before[k])]
    assert changed, "the encoder did not train after unfreezing"
    path = module.export(tmp_path / "unfrozen.pt")
    reloaded = build_sam2("sam2.1_hiera_nano", checkpoint=path, device="cpu")
    for k, v in module.model.state_dict().items():
        assert torch.equal(v.float(), reloaded.state_dict()[k]), k


def test_freeze_and_train_only_keys():
    module = SAM2FineTuner(freeze=["image_encoder", "sam_prompt_encoder"])
    names = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert names and not any(n.startswith(("image_encoder", "sam_prompt_encoder")) for n in names)
    assert any(n.startswith("memory_attention") for n in names)
    only = SAM2FineTuner(train_only=["sam_mask_decoder.iou_prediction_head"])
    names = {n for n, p in only.model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith("sam_mask_decoder.iou_prediction_head") for n in names)
    with pytest.raises(ValueError, match="freeze: no parameter name starts with 'image_encodr'"):
        SAM2FineTuner(freeze=["image_encodr"])


@pytest.mark.parametrize("lora", [False, True])
def test_lightning_ckpt_loads_in_build_sam2(tmp_path, lora):
    from sam2_plugins import build_sam2

    dm = SAM2DataModule(train_sources=[synthetic_spec(1)], batch_size=1, train_batches=1,
                        image_size=256)
    kw = dict(lora_rank=4, lora_alpha=8.0) if lora else {}
    module = SAM2FineTuner(lr=1e-3, vision_lr=1e-3, prompts={"num_correction_clicks": 1}, **kw)
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="run")
    trainer = pl.Trainer(max_steps=1, **{**trainer_kwargs(), "enable_checkpointing": True},
                         callbacks=[ckpt])
    trainer.fit(module, datamodule=dm)
    path = tmp_path / "run.ckpt"
    assert path.is_file()
    direct = module.export(tmp_path / "direct.pt")
    reloaded = build_sam2("sam2.1_hiera_nano", checkpoint=path, device="cpu")
    official = build_sam2("sam2.1_hiera_nano", checkpoint=direct, device="cpu")
    for k, v in official.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    if lora:  # the merge changed the adapted weights (B moved off zero in the step)
        raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        orig = raw["model.image_encoder.trunk.blocks.0.attn.qkv.parametrizations.weight.original"]
        assert not torch.equal(reloaded.state_dict()["image_encoder.trunk.blocks.0.attn.qkv.weight"],
                               orig)


def test_lora_ckpt_without_rank_is_refused(tmp_path):
    from sam2_plugins.checkpoints import CheckpointError, load_state_dict_file

    module = SAM2FineTuner(lora_rank=2, lora_alpha=4.0)
    sd = {f"model.{k}": v for k, v in module.model.state_dict().items()}
    torch.save({"state_dict": sd, "hyper_parameters": {}}, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="LoRA adapters but its hyper_parameters give no"):
        load_state_dict_file(tmp_path / "bad.ckpt")


def test_image_size_mismatch_is_an_error_up_front_naming_both():
    dm = SAM2DataModule(train_sources=[synthetic_spec(1)], image_size=512, train_batches=1)
    module = SAM2FineTuner()
    with pytest.raises(ValueError, match=r"data.image_size is 512 but the model "
                                         r"sam2.1_hiera_nano takes 256x256"):
        pl.Trainer(max_steps=1, **trainer_kwargs()).fit(module, datamodule=dm)
    assert module.global_step == 0
    # left out, it follows the model
    dm = SAM2DataModule(train_sources=[synthetic_spec(1)], train_batches=1, batch_size=1)
    trainer = pl.Trainer(max_steps=1, **trainer_kwargs())
    trainer.fit(SAM2FineTuner(prompts={"num_correction_clicks": 1}), datamodule=dm)
    assert dm.image_size == 256 and trainer.global_step == 1


def test_epoch_display_counts_real_epochs():
    class Seen(Callback):
        def __init__(self) -> None:
            self.shown = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            # what the progress bar prints: "Epoch {current}/{max_epochs - 1}"
            self.shown.append(f"Epoch {trainer.current_epoch}/{trainer.max_epochs - 1}")

    dm = SAM2DataModule(train_sources=[synthetic_spec(1)], train_batches=2, batch_size=1)
    seen = Seen()
    trainer = pl.Trainer(max_steps=5, callbacks=[seen], **trainer_kwargs())
    trainer.fit(SAM2FineTuner(prompts={"num_correction_clicks": 1}), datamodule=dm)
    # 5 steps of 2-batch epochs: 3 epochs, not "Epoch 1/-2"
    assert seen.shown == ["Epoch 0/2", "Epoch 1/2", "Epoch 2/2"]
    assert trainer.global_step == 5  # (the CLI test checks the printed bar itself)
