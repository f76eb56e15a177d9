"""The SAM 2 paper's interactive video protocols: per-object schedules, corrections that stick,
curves over N = 1..8, annotation time; oracle predictors for exact numbers, and the real
predictor (demo model) end to end."""

from __future__ import annotations

from typing import List

import numpy as np
import pytest

from sam2_plugins.evaluation.clicks import next_click
from sam2_plugins.evaluation.interactive_video import (
    annotation_seconds,
    interactive_video_predictor,
    object_videos,
    run_interactive_video,
)
from sam2_plugins.evaluation.readers import VOSSequence
from sam2_plugins.evaluation.vos_protocol import synthetic_sequences
from tests.conftest import requires_demo_tracking
from tests.core.eval_oracles import OracleVideoPredictor


def _squares(T: int = 8, size: int = 48, side: int = 12, late: int = 0) -> VOSSequence:
    """Two squares moving right (object 2 enters at frame ``late``); random frames."""
    from sam2_plugins.io import ArraySource

    masks = np.zeros((T, size, size), np.uint8)
    for t in range(T):
        masks[t, 4:4 + side, 2 + t:2 + t + side] = 1
        if t >= late:
            masks[t, 28:28 + side, 2 + 2 * t:2 + 2 * t + side] = 2
    frames = np.random.default_rng(0).integers(0, 255, (T, size, size, 3), dtype=np.uint8)
    return VOSSequence("squares", ArraySource(frames), list(masks), list(range(T)), [f"{t:05d}" for t in range(T)])


def test_objects_have_their_own_schedules_offline_and_online() -> None:
    seq = _squares()
    gt = np.stack(seq.masks)
    # object 1 is lost on frame 6, object 2 on frame 3: each must be corrected where it fails
    bad = {1: {6}, 2: {3}}
    off = run_interactive_video(OracleVideoPredictor(gt, bad=bad), [seq], mode="offline", max_frames=3)
    assert off["per_object"]["squares_1"]["interacted_frames"] == [0, 6]
    assert off["per_object"]["squares_2"]["interacted_frames"] == [0, 3]
    # one frame of 8 empty (J = F = 0 there), then perfect; the curve keeps its last value
    for k in ("squares_1", "squares_2"):
        assert off["per_object"][k]["curve"] == [0.875, 1.0, 1.0]
    assert off["curve"] == [0.875, 1.0, 1.0] and off["J&F-Mean"] == pytest.approx((0.875 + 2) / 3)
    # simulated time: (30 s * 8/300 + 1 s + 3 * 1.5 s) per round; no third round was needed
    assert off["per_object"]["squares_1"]["seconds"] == pytest.approx([6.3, 12.6, 12.6])
    on = run_interactive_video(OracleVideoPredictor(gt, bad=bad), [seq], mode="online", max_frames=3)
    assert on["per_object"]["squares_1"]["interacted_frames"] == [0, 6]
    assert on["per_object"]["squares_2"]["interacted_frames"] == [0, 3]
    assert on["curve"] == [0.875, 1.0, 1.0]
    assert on["per_object"]["squares_2"]["seconds"] == pytest.approx([6.3, 11.8, 11.8])  # 0.8 s + 5.5 s per frame


def test_first_frame_clicks_centre_then_error_centres() -> None:
    seq = _squares(side=20)  # larger than the oracle's click disks: one click is not enough
    gt = np.stack(seq.masks)
    oracle = OracleVideoPredictor(gt, click_radius=6)
    res = run_interactive_video(oracle, [seq], mode="offline", max_frames=1)
    first = [c for c in oracle.clicks if c[0] == 1 and c[1] == 0]
    assert len(first) == 3 and res["per_object"]["squares_1"]["clicks"] == [3]
    c = next_click(gt[0] == 1)  # the object's centre: its pixel deepest inside the mask
    assert first[0][2] == (c.x, c.y) and first[0][3] == 1
    assert oracle.resets == 2  # each object is run on its own
    assert len(res["curve"]) == 1


def test_late_object_is_its_own_video() -> None:
    seq = _squares(late=3)
    (o1, o2) = object_videos(seq)
    assert (o1.start, o1.length, o2.start, o2.length) == (0, 8, 3, 5)
    oracle = OracleVideoPredictor(np.stack(seq.masks))
    res = run_interactive_video(oracle, [seq], mode="offline", max_frames=2)
    assert oracle.starts[-1] == 3 and res["per_object"]["squares_2"]["interacted_frames"][0] == 3
    assert res["per_object"]["squares_2"]["video_length"] == 5


def test_online_shared_runs_equal_separate_runs() -> None:
    (seq,) = synthetic_sequences(1, 10, 32, 40, 1, seed=7)
    gt = np.stack(seq.masks)
    shared = run_interactive_video(OracleVideoPredictor(gt, reach=1), [seq], mode="online", max_frames=4)
    sep = run_interactive_video(OracleVideoPredictor(gt, reach=1), [seq], mode="online", max_frames=4,
                                separate_online_runs=True)
    assert shared["curve"] == sep["curve"] and len(shared["curve"]) == 4
    frames = shared["per_object"][f"{seq.name}_1"]["interacted_frames"]
    assert frames == sep["per_object"][f"{seq.name}_1"]["interacted_frames"]
    assert frames[0] == 0 and len(frames) == 4 and frames == sorted(frames)  # pauses move forward only
    assert shared["curve"][-1] > shared["curve"][0]


def test_offline_picks_the_lowest_iou_frame() -> None:
    (seq,) = synthetic_sequences(1, 10, 32, 40, 1, seed=7)
    res = run_interactive_video(OracleVideoPredictor(np.stack(seq.masks), reach=1), [seq], max_frames=4)
    curve = res["curve"]
    assert len(curve) == 4 and all(b >= a for a, b in zip(curve, curve[1:])) and curve[-1] > curve[0]
    frames = res["per_object"][f"{seq.name}_1"]["interacted_frames"]
    assert frames[0] == 0 and len(set(frames)) == 4 and frames[1] >= 2  # outside the reach of frame 0


def test_annotation_time_formula() -> None:
    assert annotation_seconds("offline", 2, 300) == pytest.approx((30 + 1 + 4.5) * 2)
    assert annotation_seconds("online", 2, 600) == pytest.approx(60 + (1 + 4.5) * 2)
    with pytest.raises(ValueError):
        annotation_seconds("sideways", 1, 10)


def test_bad_arguments_and_a_predictor_that_drops_corrections() -> None:
    seq = _squares()
    gt = np.stack(seq.masks)
    with pytest.raises(ValueError, match="mode"):
        run_interactive_video(OracleVideoPredictor(gt), [seq], mode="sideways")
    with pytest.raises(ValueError, match="max_frames"):
        run_interactive_video(OracleVideoPredictor(gt), [seq], max_frames=0)
    dropping = OracleVideoPredictor(gt)
    dropping.add_all_frames_to_correct_as_cond = False
    with pytest.raises(ValueError, match="add_all_frames_to_correct_as_cond=True"):
        run_interactive_video(dropping, [seq])


def _masks(gen) -> dict:  # noqa: ANN001
    return {t: (np.asarray(m[0, 0]) > 0) for t, _, m in gen}


def test_a_correction_changes_its_frame_and_survives_the_next_propagation() -> None:
    """The real predictor as the protocol builds it, on a tiny video (5 frames, one object)."""
    torch = pytest.importorskip("torch")
    from sam2_plugins import build_sam2
    from sam2_plugins.evaluation.synthetic import make_video

    torch.manual_seed(0)
    model = build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu")
    frames, gt = make_video(5, 64, 64, 1, seed=0)
    k = 3
    pred = interactive_video_predictor(model, dtype=None)
    assert pred.add_all_frames_to_correct_as_cond
    with torch.inference_mode():
        state = pred.init_state(frames)
        pred.add_new_points_or_box(state, 0, 1, points=[next_click(gt[0] == 1).xy], labels=[1])
        before = _masks(pred.propagate_in_video(state))
        click = next_click(gt[k] == 1, before[k])  # the protocol's correction: the error's centre
        _, ids, logits = pred.add_new_points_or_box(state, k, 1, points=[click.xy], labels=[click.label])
        corrected = np.asarray(logits[0, 0]) > 0
        after = _masks(pred.propagate_in_video(state))
    assert (corrected != before[k]).any(), "the correction did not change frame k"
    np.testing.assert_array_equal(after[k], corrected)  # kept as a conditioning frame, not re-tracked
    np.testing.assert_array_equal(after[0], before[0])


@pytest.mark.slow
@requires_demo_tracking
def test_demo_model_offline_curve_rises_and_online_curve_is_reported() -> None:
    torch = pytest.importorskip("torch")
    from sam2_plugins import build_sam2

    torch.manual_seed(0)
    model = build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu")
    pred = interactive_video_predictor(model, dtype=None, feature_cache_size=16)
    seqs = synthetic_sequences(6, 8, 64, 96, 1, seed=0)
    off = run_interactive_video(pred, seqs, mode="offline", max_frames=8)
    curve: List[float] = off["curve"]
    assert off["n_objects"] == 6 and len(curve) == 8
    assert curve[7] >= curve[0] + 0.05, curve
    assert all(b >= a - 1e-12 for a, b in zip(curve, curve[1:])), curve
    assert off["J&F-Mean"] == pytest.approx(float(np.mean(curve)))
    on = run_interactive_video(pred, seqs, mode="online", max_frames=8)
    assert len(on["curve"]) == 8 and all(0.0 <= v <= 1.0 for v in on["curve"])
    assert on["curve"][-1] >= on["curve"][0]
    assert len(on["seconds_curve"]) == 8 and on["seconds_curve"][0] > 0


@pytest.mark.slow
def test_online_shared_runs_equal_separate_runs_with_the_real_predictor() -> None:
    torch = pytest.importorskip("torch")
    from sam2_plugins import build_sam2

    torch.manual_seed(0)
    model = build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu")
    pred = interactive_video_predictor(model, dtype=None)
    seqs = synthetic_sequences(1, 6, 48, 64, 1, seed=3)
    a = run_interactive_video(pred, seqs, mode="online", max_frames=3, pause_iou=0.95)
    b = run_interactive_video(pred, seqs, mode="online", max_frames=3, pause_iou=0.95, separate_online_runs=True)
    assert a["per_object"] == b["per_object"]
