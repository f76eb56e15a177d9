"""Protocols against oracle predictors (exact expected scores) and, end to end, the real nano model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sam2_plugins.evaluation.folders import evaluate_folders
from sam2_plugins.evaluation.image_readers import ImageSample, labels_to_masks
from sam2_plugins.evaluation.protocols import run_interactive_image, run_vos, synthetic_sequences
from sam2_plugins.evaluation.synthetic import make_image
from tests.core.eval_oracles import OracleImagePredictor, OracleVideoPredictor


def test_vos_with_oracle_is_perfect_for_every_prompt(tmp_path: Path) -> None:
    (seq,) = synthetic_sequences(1, 6, 40, 48, 2, seed=5)
    gt = np.stack(seq.masks)
    for prompt in ("mask", "box", "click1", "click3"):
        oracle = OracleVideoPredictor(gt)
        run = run_vos(oracle, [seq], prompt=prompt, out_dir=tmp_path / prompt)
        assert run.summary["J&F-Mean"] == 1.0, prompt
        assert run.frames == 6 and run.fps > 0
    assert "points3" in oracle.calls  # three clicks were sent, accumulated
    # the written PNGs score the same with the folder evaluator
    gt_root = tmp_path / "gt"
    from sam2_plugins.evaluation.readers import write_index_png

    for t, lab in enumerate(seq.masks):
        write_index_png(gt_root / seq.name / f"{t:05d}.png", lab)
    res = evaluate_folders(gt_root, tmp_path / "mask", workers=1)
    assert res["J&F-Mean"] == 1.0
    with pytest.raises(ValueError, match="prompt"):
        run_vos(OracleVideoPredictor(gt), [seq], prompt="lasso")


def test_vos_drifting_oracle_and_late_objects() -> None:
    (seq,) = synthetic_sequences(1, 8, 40, 48, 2, seed=6, late_objects=1)
    gt = np.stack(seq.masks)
    late = OracleVideoPredictor(gt)
    run = run_vos(late, [seq], prompt="mask", lifetime="first_appearance")
    assert run.summary["J&F-Mean"] == 1.0  # the late object is prompted where it appears
    assert set(run.summary["per_object"]) == {f"{seq.name}_1", f"{seq.name}_2"}
    drift = run_vos(OracleVideoPredictor(gt, reach=2), [seq], prompt="mask", lifetime="first_appearance")
    assert drift.summary["J&F-Mean"] < 1.0


def test_interactive_image_with_oracle() -> None:
    img, lab = make_image(48, 64, 2, seed=2)
    masks, ids = labels_to_masks(lab)
    res = run_interactive_image(OracleImagePredictor(lab), [ImageSample("im", img, masks, ids)], max_clicks=8)
    s = res.summary()
    assert s["n_instances"] == 2 and len(s["mIoU_curve"]) == 8
    assert all(b >= a - 1e-12 for a, b in zip(s["mIoU_curve"], s["mIoU_curve"][1:]))
    assert s["mIoU@1"] == s["mIoU_curve"][0] and 1 <= s["NoC@85"] <= 8
    assert s["NoF@90"] == sum(1 for c in res.ious.values() if max(c) < 0.9)


def test_real_nano_model_end_to_end() -> None:
    torch = pytest.importorskip("torch")
    from sam2_plugins import SAM2ImagePredictor, SAM2VideoPredictor, build_sam2

    torch.manual_seed(0)
    model = build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")
    (seq,) = synthetic_sequences(1, 4, 48, 64, 2, seed=1)
    run = run_vos(SAM2VideoPredictor(model), [seq], prompt="click1")
    assert run.summary["lifetime"] == "own_video" and run.summary["unscored_objects"] == []
    assert 0.0 <= run.summary["J&F-Mean"] <= 1.0 and run.frames == 4
    img, lab = make_image(48, 64, 1, seed=3)
    masks, ids = labels_to_masks(lab)
    res = run_interactive_image(SAM2ImagePredictor(model), [ImageSample("im", img, masks, ids)], max_clicks=2)
    assert len(res.ious["im_1"]) == 2
