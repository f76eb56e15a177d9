"""The demo-model training command runs end to end (tiny settings) and writes its card."""

from __future__ import annotations

import json

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
