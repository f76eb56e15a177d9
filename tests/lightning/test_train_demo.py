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
