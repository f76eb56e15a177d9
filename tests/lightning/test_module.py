"""A real Trainer on CPU: images and video clips (memory path), validation, export, LoRA."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_module.callbacks import ImageEncoderFreeze
from lightning_module.datamodules import SAM2DataModule
from lightning_module.module import SAM2FineTuner
from lightning_module.tracking import ClipBatch

from .helpers import synthetic_spec, trainer_kwargs


class GradProbe(Callback):
    """Records, after every backward, the gradient norm of each top-level submodule."""

    def __init__(self) -> None:
        self.norms = []

    def on_after_backward(self, trainer, pl_module) -> None:
        norms = {}
        for name, p in pl_module.model.named_parameters():
            if p.grad is not None:
                top = name.split(".")[0]
                norms[top] = norms.get(top, 0.0) + float(p.grad.detach().float().norm()) ** 2
        self.norms.append(norms)


def _fit(num_frames: int, steps: int = 2, prompts=None, **module_kw):
    dm = SAM2DataModule(train_sources=[synthetic_spec(num_frames)], batch_size=2,
                        train_batches=steps, augment=True)
    module = SAM2FineTuner(lr=1e-3, vision_lr=1e-3,
                           prompts=prompts or {"num_correction_clicks": 1}, **module_kw)
    before = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    probe = GradProbe()
    trainer = pl.Trainer(max_steps=steps, callbacks=[probe], **trainer_kwargs())
    trainer.fit(module, datamodule=dm)
    return module, trainer, probe, before


def test_video_clips_train_through_memory():
    # point prompts on 1 cond frame: the other frames can only be segmented from memory
    module, trainer, probe, before = _fit(
        3, prompts={"prob_points": 1.0, "max_init_cond_frames": 1, "max_frames_to_correct": 1,
                    "num_correction_clicks": 1})
    assert trainer.global_step == 2
    loss = trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss) and float(loss) > 0
    for norms in probe.norms:
        # (obj_ptr_proj / no_obj_* depend on whether the untrained model scores the object
        # present, a hard gate as upstream, so they are not checked)
        for part in ("memory_attention", "memory_encoder", "image_encoder", "sam_mask_decoder",
                     "maskmem_tpos_enc"):
            assert norms.get(part, 0.0) > 0, f"{part} got no gradient: {norms}"
    after = module.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("memory_attention.") for k in changed)
    assert any(k.startswith("memory_encoder.") for k in changed)


def test_images_train_as_one_frame_clips():
    module, trainer, probe, _ = _fit(1)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    for norms in probe.norms:
        assert norms.get("sam_mask_decoder", 0.0) > 0
        assert norms.get("image_encoder", 0.0) > 0
        # a single image has no memory to read
        assert norms.get("memory_attention", 0.0) == 0.0


def test_validation_reports_jf_and_click_miou():
    dm = SAM2DataModule(train_sources=[synthetic_spec(3)],
                        val_sources=[synthetic_spec(4, length=2, seed=10 ** 6)],
                        val_batch_size=2, val_batches=1)
    module = SAM2FineTuner()
    res = pl.Trainer(**trainer_kwargs()).validate(module, datamodule=dm, verbose=False)[0]
    for k in ("val/J&F", "val/J", "val/F", "val/mIoU_1click", "val/mIoU_1click_best_of_masks"):
        assert 0.0 <= res[k] <= 1.0, (k, res)
    # the returned mask is one of the candidates, so the best candidate scores at least as well
    assert res["val/mIoU_1click_best_of_masks"] >= res["val/mIoU_1click"] - 1e-6
    assert res["val/J&F"] == pytest.approx((res["val/J"] + res["val/F"]) / 2, abs=1e-5)
    assert torch.isfinite(torch.tensor(res["val/loss"]))


def test_all_cond_mask_frames_give_zero_gradient_not_error():
    # 1-frame... 2-frame clips whose both frames are mask-prompted predict nothing
    module = SAM2FineTuner(prompts={"prob_points": 0.0, "max_init_cond_frames": 2,
                                    "rand_init_cond_frames": False, "max_frames_to_correct": 2})
    module.train()
    S = module.model.image_size
    masks = torch.zeros(2, 1, S, S, dtype=torch.bool)
    masks[:, 0, 10:50, 20:60] = True
    batch = ClipBatch(torch.randn(2, 1, 3, S, S), masks, torch.zeros(1, dtype=torch.long))
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in module.model.parameters() if p.grad is not None]
    assert grads and all(float(g.abs().sum()) == 0 for g in grads)


def test_freeze_callback_and_flag_keep_encoder_fixed():
    dm = SAM2DataModule(train_sources=[synthetic_spec(1)], batch_size=1, train_batches=2)
    module = SAM2FineTuner(lr=1e-3, vision_lr=1e-3)
    enc_before = {k: v.clone() for k, v in module.model.image_encoder.state_dict().items()}
    dec_before = {k: v.clone() for k, v in module.model.sam_mask_decoder.state_dict().items()}
    pl.Trainer(max_steps=2, callbacks=[ImageEncoderFreeze()], **trainer_kwargs()).fit(
        module, datamodule=dm)
    for k, v in module.model.image_encoder.state_dict().items():
        assert torch.equal(v, enc_before[k]), k
    assert any(not torch.equal(v, dec_before[k])
               for k, v in module.model.sam_mask_decoder.state_dict().items())
    flagged = SAM2FineTuner(freeze_image_encoder=True)
    assert not any(p.requires_grad for p in flagged.model.image_encoder.parameters())


def test_layer_decay_groups_and_schedule():
    module = SAM2FineTuner(lr=1e-3, vision_lr=5e-4, layer_decay=0.5, warmup_steps=2,
                           min_lr_ratio=0.1)
    trainer = pl.Trainer(max_steps=10, **trainer_kwargs())
    module.trainer = trainer  # configure_optimizers reads the step estimate
    conf = module.configure_optimizers()
    opt = conf["optimizer"]
    name_of = {id(p): n for n, p in module.model.named_parameters()}
    lrs = {name_of[id(p)]: (g["initial_lr"], g["weight_decay"]) for g in opt.param_groups
           for p in g["params"]}
    nb = len(module.model.image_encoder.trunk.blocks)
    last = f"image_encoder.trunk.blocks.{nb - 1}.mlp.layers.0.weight"
    first = "image_encoder.trunk.blocks.0.mlp.layers.0.weight"
    assert lrs[last][0] == pytest.approx(5e-4 * 0.5)
    assert lrs[first][0] == pytest.approx(5e-4 * 0.5 ** nb)
    assert lrs["image_encoder.trunk.patch_embed.proj.weight"][0] == pytest.approx(5e-4 * 0.5 ** (nb + 1))
    assert lrs["image_encoder.trunk.pos_embed"][0] == pytest.approx(5e-4)
    assert lrs["sam_mask_decoder.iou_token.weight"] == (pytest.approx(1e-3), 0.1)
    assert lrs["sam_mask_decoder.transformer.layers.0.mlp.layers.0.bias"][1] == 0.0
    sched = conf["lr_scheduler"]["scheduler"]
    factors = [sched.factor(s) for s in range(11)]
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(0.1) and all(a >= b for a, b in zip(factors[1:], factors[2:]))


def test_export_round_trip_with_build_sam2(tmp_path):
    from sam2_plugins.build import build_sam2

    module, _, _, _ = _fit(2, steps=2)
    path = module.export(tmp_path / "nano.pt")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert list(sd) == ["model"]
    reloaded = build_sam2("sam2.1_hiera_nano", checkpoint=path, device="cpu")
    ours = module.model.eval()
    x = torch.randn(1, 3, ours.image_size, ours.image_size)
    with torch.no_grad():
        a, b = ours.forward_image(x), reloaded.forward_image(x)
    torch.testing.assert_close(a["vision_features"], b["vision_features"], rtol=0, atol=0)
    for k, v in ours.state_dict().items():
        assert torch.equal(v.float(), reloaded.state_dict()[k].float()), k


def test_lora_trains_adapters_only_and_merges_exactly(tmp_path):
    from sam2_plugins.build import build_sam2

    module, trainer, _, before = _fit(1, steps=2, lora_rank=4, lora_alpha=8.0)
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) or n.startswith("sam_mask_decoder.")
                             for n in trainable)
    trunk_w = "image_encoder.trunk.blocks.0.attn.qkv.weight"
    orig = trunk_w.replace("weight", "parametrizations.weight.original")
    sd = module.model.state_dict()
    assert torch.equal(sd[orig], before[orig])  # the base weight is frozen
    # every adapter used by 1-frame clips (all but the memory attention's) moved off zero
    lora_b = {k: v for k, v in sd.items()
              if k.endswith("lora_B") and not k.startswith("memory_attention.")}
    assert any(k.startswith("image_encoder.trunk.") for k in lora_b)
    assert all(float(v.abs().sum()) > 0 for v in lora_b.values()), [
        k for k, v in lora_b.items() if float(v.abs().sum()) == 0]
    path = module.export(tmp_path / "lora.pt")
    reloaded = build_sam2("sam2.1_hiera_nano", checkpoint=path, device="cpu")
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        a = module.model.eval().forward_image(x)["vision_features"]
        b = reloaded.forward_image(x)["vision_features"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.equal(reloaded.state_dict()[trunk_w], before[orig])  # merged


def test_training_after_inference_mode_validation():
    # Lightning validates under torch.inference_mode; lazily built tables (RoPE) from that
    # pass must not break the next training step
    dm = SAM2DataModule(train_sources=[synthetic_spec(2)],
                        val_sources=[synthetic_spec(2, length=1, seed=7)], batch_size=1,
                        val_batch_size=1, train_batches=1, val_batches=1)
    module = SAM2FineTuner(prompts={"prob_points": 1.0, "max_init_cond_frames": 1,
                                    "max_frames_to_correct": 1, "num_correction_clicks": 1})
    trainer = pl.Trainer(max_steps=1, **trainer_kwargs())
    trainer.validate(module, datamodule=dm, verbose=False)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 1


def test_lora_merge_in_place_keeps_outputs_and_official_keys():
    from lightning_module.lora import add_lora, has_lora, merge_lora

    module = SAM2FineTuner()
    model = module.model.eval()
    keys = list(model.state_dict())
    names = add_lora(model, rank=2, alpha=2.0, targets=("*attn.qkv",))
    assert names and has_lora(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("lora_B"):
                p.normal_(0, 0.1)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        adapted = model.forward_image(x)["vision_features"]
        assert merge_lora(model) == len(names)
        merged = model.forward_image(x)["vision_features"]
    assert not has_lora(model) and sorted(model.state_dict()) == sorted(keys)
    torch.testing.assert_close(adapted, merged, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no nn.Linear"):
        add_lora(model, targets=("nothing*",))


def test_training_after_validation_in_one_process():
    """Lightning validates under ``torch.inference_mode`` (the sanity check, the CLI's baseline)
    and then trains: nothing computed while validating may be reused in training (an inference
    tensor cannot be saved for backward)."""
    dm = SAM2DataModule(train_sources=[synthetic_spec(3)], batch_size=2, train_batches=2,
                        val_sources=[synthetic_spec(3, length=2, seed=10 ** 6)], val_batch_size=2, val_batches=1)
    module = SAM2FineTuner(lr=1e-3, vision_lr=1e-3,
                           prompts={"prob_points": 1.0, "max_init_cond_frames": 1, "num_correction_clicks": 1})
    trainer = pl.Trainer(max_steps=2, **trainer_kwargs(num_sanity_val_steps=1, inference_mode=True))
    trainer.validate(module, datamodule=dm, verbose=False)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
