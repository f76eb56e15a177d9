"""The demo-model training command runs end to end (tiny settings) and writes its card."""

from __future__ import annotations

import json

import pytest
import torch

from lightning_module.model_card import render_model_card
from lightning_module.train_demo import main


def test_train_demo_end_to_end(tmp_path):
    out = tmp_path / "demo.pt"
    card = tmp_path / "MODEL_CARD.md"
    summary = main(["--out", str(out), "--card", str(card), "--max-steps", "2",
                    "--batch-size", "1", "--num-frames", "2", "--num-workers", "0",
                    "--val-clips", "1", "--corrections", "1", "--accelerator", "cpu",
                    "--warmup-steps", "1", "--log-every", "1"])
    assert summary["steps"] == 2
    for k in ("J&F", "mIoU_1click"):
        assert 0.0 <= summary["baseline"][k] <= 1.0 and 0.0 <= summary["trained"][k] <= 1.0
    sd = torch.load(out, weights_only=True)["model"]
    assert out.stat().st_size < 20 * 2 ** 20 and all(v.dtype != torch.float64 for v in sd.values())
    saved = json.loads((tmp_path / "demo.pt.json").read_text())
    assert saved["command"].startswith("python -m lightning_module.train_demo")
    text = card.read_text()
    assert "J&F" in text and "train_demo" in text and f"{saved['steps']} steps" in text
    assert render_model_card(tmp_path / "demo.pt.json") == text

    # a second stage from the first one's checkpoint: the card gives both commands, the total
    # steps and the untrained baseline of stage 1 (not the --init checkpoint's scores)
    out2, card2 = tmp_path / "demo2.pt", tmp_path / "MODEL_CARD2.md"
    s2 = main(["--out", str(out2), "--card", str(card2), "--init", str(out), "--max-steps", "1",
               "--freeze", "image_encoder,sam_mask_decoder",
               "--batch-size", "1", "--num-frames", "2", "--num-workers", "0", "--val-clips", "1",
               "--corrections", "1", "--accelerator", "cpu", "--warmup-steps", "1"])
    assert s2["init_summary"]["steps"] == 2 and s2["baseline_is"] == "the --init checkpoint"
    text2 = card2.read_text()
    assert "3 steps" in text2 and "stage 1: 2 steps" in text2 and "stage 2: 1 steps" in text2
    commands = [ln for ln in text2.splitlines() if ln.startswith("python -m lightning_module")]
    assert len(commands) == 2 and "--init" in commands[1] and "--init" not in commands[0]
    base_row = next(ln for ln in text2.splitlines() if ln.startswith("| 1-click mIoU"))
    assert f"{summary['baseline']['mIoU_1click']:.3f}" in base_row
    # --freeze: the frozen parts are bit-identical after the stage, the memory path is not
    a, b = torch.load(out, weights_only=True)["model"], torch.load(out2, weights_only=True)["model"]
    changed = {k.split(".", 1)[0] for k in a if not torch.equal(a[k], b[k])}
    assert changed and not changed & {"image_encoder", "sam_mask_decoder"}, changed
    assert "--freeze image_encoder,sam_mask_decoder" in commands[1]


def test_train_demo_freeze_unknown_prefix_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no parameter name starts with 'image_encodr'"):
        main(["--out", str(tmp_path / "x.pt"), "--freeze", "image_encodr", "--max-steps", "1",
              "--val-clips", "1", "--num-workers", "0", "--accelerator", "cpu"])


def _tiny(out, *extra: str):
    return main(["--out", str(out), "--batch-size", "1", "--num-frames", "2", "--num-workers", "0",
                 "--val-clips", "1", "--corrections", "1", "--accelerator", "cpu",
                 "--warmup-steps", "1", "--log-every", "100", "--seed", "3", "--lr", "1e-2", *extra])


def _fresh_nano(seed: int) -> dict:
    """The untrained model main() builds for ``--seed seed``."""
    import lightning.pytorch as pl

    from lightning_module.module import SAM2FineTuner

    pl.seed_everything(seed, workers=True)
    return SAM2FineTuner(model_name="sam2.1_hiera_nano").model.state_dict()


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_train_demo_ema_exports_the_averaged_weights(tmp_path):
    # Same seed and steps (so the same batches): a decay of ~0 averages nothing away and must
    # export the last step's weights; a decay of ~1 keeps the first update's copy (the weights
    # after step 1), which is neither the untrained nor the last weights.
    _tiny(tmp_path / "last.pt", "--max-steps", "3")
    _tiny(tmp_path / "ema0.pt", "--max-steps", "3", "--ema", "1e-9")
    s = _tiny(tmp_path / "ema1.pt", "--max-steps", "3", "--ema", "0.999999")
    assert s["steps"] == 3 and s["args"]["ema"] == 0.999999
    last, ema0, ema1 = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["model"]
                        for n in ("last", "ema0", "ema1"))
    init = _fresh_nano(3)
    moved = _max_diff(last, init)
    assert moved > 1e-3, "3 steps changed nothing"
    # separate runs agree only to float32 reduction-order noise (~1e-5 here), so the bounds
    # are relative to how far 3 steps moved the weights
    assert _max_diff(ema0, last) < 0.02 * moved
    assert _max_diff(ema1, last) > 0.1 * moved and _max_diff(ema1, init) > 0.1 * moved
    assert "moving average of the weights (decay 0.999999)" in render_model_card(
        tmp_path / "ema1.pt.json")


def test_train_demo_vision_lr_and_bad_ema(tmp_path):
    _tiny(tmp_path / "a.pt", "--max-steps", "2", "--vision-lr", "0")
    a = torch.load(tmp_path / "a.pt", weights_only=True)["model"]
    fresh = _fresh_nano(3)
    enc = [k for k in a if k.startswith("image_encoder.")]
    rest = [k for k in a if not k.startswith("image_encoder.") and a[k].is_floating_point()]
    assert enc and all(torch.equal(a[k], fresh[k]) for k in enc)
    assert any(not torch.equal(a[k], fresh[k]) for k in rest)
    with pytest.raises(ValueError, match=r"--ema must be a decay in \(0, 1\), got 1.5"):
        _tiny(tmp_path / "b.pt", "--max-steps", "1", "--ema", "1.5")


def test_freeze_prefixes_train_only_keeps_just_those_parameters():
    from lightning_module.train_demo import freeze_prefixes

    model = _fresh_nano_model()
    keep = "sam_mask_decoder.iou_prediction_head"
    n = freeze_prefixes(model, ["image_encoder"], [keep])
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(k.startswith(keep) for k in trainable)
    assert n == sum(1 for _ in model.parameters()) - len(trainable)
    with pytest.raises(ValueError, match="--train-only: no parameter name starts with 'nope'"):
        freeze_prefixes(model, [], ["nope"])


def _fresh_nano_model():
    from lightning_module.module import SAM2FineTuner

    return SAM2FineTuner(model_name="sam2.1_hiera_nano").model
