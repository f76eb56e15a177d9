"""Protocols against oracle predictors (exact expected scores) and, end to end, the real nano model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from sam2_plugins.evaluation.folders import evaluate_folders
from sam2_plugins.evaluation.image_readers import ImageSample, labels_to_masks
from sam2_plugins.evaluation.protocols import (
    mask_to_box,
    run_interactive_image,
    run_interactive_video,
    run_vos,
    synthetic_sequences,
)
from sam2_plugins.evaluation.synthetic import make_image


class OracleVideoPredictor:
    """Upstream's video-predictor API, answering with the GT of each prompted object.

    ``reach``: frames farther than this from every prompted frame of an object come out empty
    (a tracker that drifts), so more interaction helps.
    """

    def __init__(self, gt: np.ndarray, reach: int = 10**6) -> None:
        self.gt = np.asarray(gt)
        self.reach = reach
        self.calls: List[str] = []

    def init_state(self, video: Any) -> Dict[str, Any]:
        assert video.num_frames == len(self.gt)
        return {"prompted": {}}

    def _logits(self, state: Dict[str, Any], t: int):
        ids = sorted(state["prompted"])
        out = np.full((len(ids), 1) + self.gt.shape[1:], -10.0, np.float32)
        for i, k in enumerate(ids):
            if min(abs(t - f) for f in state["prompted"][k]) <= self.reach:
                out[i, 0][self.gt[t] == k] = 10.0
        return ids, out

    def add_new_mask(self, state, frame_idx, obj_id, mask):  # noqa: ANN001
        assert np.array_equal(np.asarray(mask, bool), self.gt[frame_idx] == obj_id)
        self.calls.append("mask")
        state["prompted"].setdefault(obj_id, set()).add(frame_idx)
        return (frame_idx, *self._logits(state, frame_idx))

    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, clear_old_points=True, box=None):  # noqa: ANN001
        self.calls.append("box" if box is not None else f"points{len(points)}")
        if box is not None:
            np.testing.assert_array_equal(box, mask_to_box(self.gt[frame_idx] == obj_id))
        else:
            x, y = points[0]
            assert self.gt[frame_idx][int(y), int(x)] == obj_id  # the first click hits the object
        state["prompted"].setdefault(obj_id, set()).add(frame_idx)
        return (frame_idx, *self._logits(state, frame_idx))

    def propagate_in_video(self, state, start_frame_idx=None):  # noqa: ANN001
        start = min(min(v) for v in state["prompted"].values()) if start_frame_idx is None else start_frame_idx
        for t in range(start, len(self.gt)):
            yield (t, *self._logits(state, t))


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


def test_interactive_video_offline_and_online() -> None:
    (seq,) = synthetic_sequences(1, 10, 32, 40, 1, seed=7)
    gt = np.stack(seq.masks)
    res = run_interactive_video(OracleVideoPredictor(gt, reach=1), [seq], mode="offline", max_frames=4)
    curve = res["curve"]
    assert len(curve) == 4 and all(b >= a for a, b in zip(curve, curve[1:])) and curve[-1] > curve[0]
    frames = res["per_sequence"][seq.name]["interacted_frames"]
    assert frames[0] == 0 and len(set(frames)) == 4
    assert frames[1] >= 2  # the worst frame lies outside the reach of frame 0's prompt
    on = run_interactive_video(OracleVideoPredictor(gt, reach=1), [seq], mode="online", max_frames=3)
    on_frames = on["per_sequence"][seq.name]["interacted_frames"]
    assert on_frames == [0, 2, 4]  # pauses on the first frame out of reach, then resumes there
    assert len(on["curve"]) == 1 and 0 < on["J&F-Mean"] < 1
    with pytest.raises(ValueError):
        run_interactive_video(OracleVideoPredictor(gt), [seq], mode="sideways")


class OracleImagePredictor:
    """SAM image-predictor API: the GT instance under the clicks, grown from disks."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def set_image(self, image: Any) -> None:
        self.image = image

    def predict(self, point_coords=None, point_labels=None, mask_input=None, multimask_output=True):  # noqa: ANN001
        h, w = self.labels.shape
        yy, xx = np.mgrid[0:h, 0:w]
        x, y = point_coords[0]
        inst = self.labels == self.labels[int(y), int(x)]
        m = np.zeros((h, w), bool)
        for (px, py), lab in zip(point_coords, point_labels):
            if lab == 1:
                m |= (yy - py) ** 2 + (xx - px) ** 2 <= 36
        m &= inst
        n = 3 if multimask_output else 1
        masks = np.stack([m] * n).astype(np.float32)
        return masks, np.linspace(0.5, 0.9, n).astype(np.float32), np.zeros((n, 8, 8), np.float32)


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
    assert 0.0 <= run.summary["J&F-Mean"] <= 1.0 and run.frames == 4
    img, lab = make_image(48, 64, 1, seed=3)
    masks, ids = labels_to_masks(lab)
    res = run_interactive_image(SAM2ImagePredictor(model), [ImageSample("im", img, masks, ids)], max_clicks=2)
    assert len(res.ious["im_1"]) == 2
