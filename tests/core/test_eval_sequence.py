"""Sequence-level J&F rules (object count, lifetime, void, skipping) and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2_plugins.evaluation.folders import evaluate_folders
from sam2_plugins.evaluation.readers import write_index_png
from sam2_plugins.evaluation.sequence import evaluate_sequence, summarize
from sam2_plugins.evaluation.synthetic import make_video


def _square(h: int, w: int, y: int, x: int, s: int, k: int = 1) -> np.ndarray:
    a = np.zeros((h, w), np.uint8)
    a[y : y + s, x : x + s] = k
    return a


def test_davis_object_count_and_every_frame_scored() -> None:
    gt = [_square(20, 20, 2, 2, 5, 1) + _square(20, 20, 10, 10, 4, 3) for _ in range(5)]
    gt[2] = gt[2] + _square(20, 20, 15, 0, 3, 2)  # id 2 appears later: still an object (max of frame 0 is 3)
    pred = [g.copy() for g in gt]
    s = evaluate_sequence(gt, pred, name="s")
    assert s.object_ids == [1, 2, 3]
    assert s.frames[2] == [1, 2, 3]  # first and last skipped, object 2 scored in every frame
    assert np.all(s.J[2] == 1.0)  # both empty counts as 1 (and frame 2 is perfect)
    late = [np.where(g == 3, 0, g) for g in gt]
    s2 = evaluate_sequence(late, [np.where(g == 2, 0, g) for g in late], name="late")
    assert s2.object_ids == [1]  # ids above frame 0's max are not objects
    with pytest.raises(ValueError, match="more predicted objects"):
        evaluate_sequence(late, late)  # ...and predicting them is an error, as in the reference


def test_first_appearance_rule() -> None:
    h = w = 16
    gt = [np.zeros((h, w), np.uint8) for _ in range(6)]
    for t in range(6):
        gt[t] += _square(h, w, 1, 1, 4, 1)
    for t in (3, 4):
        gt[t] += _square(h, w, 9, 9, 4, 2)  # object 2 enters at frame 3
    pred = [g.copy() for g in gt]
    pred[4] = np.where(pred[4] == 2, 0, pred[4])  # object 2 lost in frame 4
    pred[2] = pred[2] + _square(h, w, 12, 0, 2, 7)  # a prediction-only id is never reported
    with pytest.raises(ValueError, match="more predicted objects"):
        evaluate_sequence(gt, pred, name="v")  # DAVIS: ids above frame 0's count are errors
    davis = evaluate_sequence(gt, [np.where(p == 1, 1, 0) for p in pred], name="v")
    first = evaluate_sequence(gt, pred, name="v", lifetime="first_appearance")
    assert davis.object_ids == [1]
    assert first.object_ids == [1, 2]
    assert first.frames[2] == [3, 4]  # scored from its first appearance (frames 1..4 scored)
    np.testing.assert_allclose(first.J[2], [1.0, 0.0])
    out = summarize([first])
    assert out["per_object"]["v_2"]["J-Mean"] == pytest.approx(0.5)
    # an object seen first in the prediction starts its lifetime there
    pred2 = [g.copy() for g in gt]
    pred2[2] = pred2[2] + _square(h, w, 9, 9, 2, 2)
    s = evaluate_sequence(gt, pred2, lifetime="first_appearance")
    assert s.frames[2] == [2, 3, 4] and s.J[2][0] == 0.0


def test_void_and_skip_options() -> None:
    g = _square(20, 20, 5, 5, 6, 1)
    g[0:2, :] = 255
    p = _square(20, 20, 5, 5, 6, 1)
    p[0:2, :] = 1  # prediction inside void
    gt, pred = [g] * 3, [p] * 3
    bg = evaluate_sequence(gt, pred, skip_first_last=False)
    ign = evaluate_sequence(gt, pred, skip_first_last=False, void_mode="ignore")
    assert len(bg.J[1]) == 3
    assert bg.J[1][0] < 1.0 and ign.J[1][0] == 1.0
    with pytest.raises(ValueError, match="lifetime"):
        evaluate_sequence(gt, pred, lifetime="nope")


def test_sequence_errors() -> None:
    g = [_square(10, 10, 1, 1, 3)] * 4
    with pytest.raises(ValueError, match="4 GT frames but 3 predicted"):
        evaluate_sequence(g, g[:3])
    with pytest.raises(ValueError, match="more predicted objects than GT"):
        evaluate_sequence(g, [x * 2 for x in g])  # id 2 but one GT object
    with pytest.raises(ValueError, match="size"):
        evaluate_sequence(g, [np.zeros((10, 11), np.uint8)] * 4)
    with pytest.raises(ValueError, match="colour"):
        evaluate_sequence(g, [np.zeros((10, 10, 3), np.uint8)] * 4)
    with pytest.raises(ValueError, match="non-integer"):
        evaluate_sequence(g, [np.full((10, 10), 0.5)] * 4)
    with pytest.raises(ValueError, match="no object"):
        evaluate_sequence([np.zeros((10, 10), np.uint8)] * 3, [np.zeros((10, 10), np.uint8)] * 3)


def _write_seq(root: Path, name: str, labels: np.ndarray) -> None:
    for t, lab in enumerate(labels):
        write_index_png(root / name / f"{t:05d}.png", lab)


def test_folder_evaluation_and_errors(tmp_path: Path) -> None:
    gt_root = tmp_path / "gt" / "Annotations" / "480p"
    pred_root = tmp_path / "pred"
    for i in range(2):
        _, masks = make_video(6, 40, 56, 2, seed=i)
        _write_seq(gt_root, f"seq{i}", masks)
        pred = np.roll(masks, 2, axis=2)
        _write_seq(pred_root, f"seq{i}", pred)
    res = evaluate_folders(tmp_path / "gt", pred_root, workers=2)
    res1 = evaluate_folders(tmp_path / "gt", pred_root, workers=1)
    assert res["J&F-Mean"] == res1["J&F-Mean"] and 0 < res["J&F-Mean"] < 1
    assert set(res["per_object"]) == {"seq0_1", "seq0_2", "seq1_1", "seq1_2"}
    only = evaluate_folders(tmp_path / "gt", pred_root, ["seq1"], workers=1)
    assert set(only["per_object"]) == {"seq1_1", "seq1_2"}

    with pytest.raises(ValueError, match="no prediction folder"):
        evaluate_folders(tmp_path / "gt", tmp_path / "gt", ["seq0"])
    with pytest.raises(ValueError, match="not found in the GT"):
        evaluate_folders(tmp_path / "gt", pred_root, ["nope"])
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_folders(tmp_path / "missing", pred_root)
    (pred_root / "seq0" / "00003.png").unlink()  # mismatched frame count
    with pytest.raises(ValueError, match="have no prediction"):
        evaluate_folders(tmp_path / "gt", pred_root, ["seq0"], workers=1)
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(pred_root / "seq0" / "00003.png")  # RGB
    with pytest.raises(ValueError, match="palette"):
        evaluate_folders(tmp_path / "gt", pred_root, ["seq0"], workers=1)
    write_index_png(pred_root / "seq0" / "00003.png", np.full((40, 56), 5, np.uint8))
    with pytest.raises(ValueError, match="more predicted objects"):
        evaluate_folders(tmp_path / "gt", pred_root, ["seq0"], workers=1)
    write_index_png(pred_root / "seq0" / "00003.png", np.zeros((30, 56), np.uint8))
    with pytest.raises(ValueError, match="size"):
        evaluate_folders(tmp_path / "gt", pred_root, ["seq0"], workers=1)


def test_davis2016_binary_gt(tmp_path: Path) -> None:
    root = tmp_path / "Annotations" / "480p" / "bin"
    root.mkdir(parents=True)
    pred = tmp_path / "pred" / "bin"
    for t in range(4):
        m = _square(24, 24, 4 + t, 4, 8, 255)
        Image.fromarray(m, mode="L").save(root / f"{t:05d}.png")
        write_index_png(pred / f"{t:05d}.png", (m > 0).astype(np.uint8))
    with pytest.raises(ValueError, match="binary-gt"):
        evaluate_folders(tmp_path, tmp_path / "pred", workers=1)
    res = evaluate_folders(tmp_path, tmp_path / "pred", workers=1, binary_gt=True)
    assert res["J&F-Mean"] == 1.0


def test_cross_check_with_vos_benchmark() -> None:
    """Where vos-benchmark (PyPI, MIT; needs OpenCV and scikit-image) is installed, its
    per-object J and F equal ours under the first-appearance rule (255 an ordinary id)."""
    vb = pytest.importorskip("vos_benchmark.evaluator")
    for seed in range(3):
        _, gt = make_video(9, 50, 70, 3, seed=seed, late_objects=1)
        pred = np.roll(gt, seed + 1, axis=1).astype(np.uint8)
        pred[4][pred[4] == 2] = 0  # lost for a frame
        pred[2][10:14, 10:14] = 4  # an id only the prediction has
        gt = gt.astype(np.uint8)
        gt[5][0:3, :] = 255  # 255 is an object for vos-benchmark
        ev = vb.Evaluator(name="s")
        for t in range(1, 8):
            ev.feed_frame(pred[t], gt[t])
        their_j, their_f = ev.conclude()
        ours = evaluate_sequence(list(gt), list(pred), lifetime="first_appearance", void_label=None)
        assert sorted(their_j) == ours.object_ids
        for k in ours.object_ids:
            assert abs(their_j[k] - 100 * ours.J[k].mean()) < 1e-9
            assert abs(their_f[k] - 100 * ours.F[k].mean()) < 1e-9


def test_sav_layout_per_object_folders(tmp_path: Path) -> None:
    from sam2_plugins.evaluation.folders import evaluate_sav_folders

    rng = np.random.default_rng(0)
    _, lab = make_video(6, 30, 40, 2, seed=2)
    objs = {0: lab == 1, 1: (lab == 2) | (lab == 1)}  # object 1 overlaps object 0
    objs[2] = np.zeros_like(objs[0])
    objs[2][3:, 5:12, 5:12] = True  # enters late
    for k, m in objs.items():
        pred = np.roll(m, int(rng.integers(1, 4)), axis=2)
        for t in range(6):
            write_index_png(tmp_path / "gt" / "vid" / f"{k:03d}" / f"{t * 4:05d}.png", m[t].astype(np.uint8) * 255)
            write_index_png(tmp_path / "pred" / "vid" / f"{k:03d}" / f"{t * 4:05d}.png", pred[t].astype(np.uint8))
    res = evaluate_sav_folders(tmp_path / "gt", tmp_path / "pred", workers=1)
    assert set(res["per_object"]) == {"vid_0", "vid_1", "vid_2"}
    for k, m in objs.items():  # each folder is one binary object with its own lifetime
        pred = [_read_binary(tmp_path / "pred" / "vid" / f"{k:03d}" / f"{t * 4:05d}.png") for t in range(6)]
        ref = evaluate_sequence(list(m.astype(np.uint8)), pred, lifetime="first_appearance", void_label=None)
        assert res["per_object"][f"vid_{k}"]["J-Mean"] == pytest.approx(float(ref.J[1].mean()), abs=1e-12)
    assert len(evaluate_sequence(list(objs[2].astype(np.uint8)), list(objs[2].astype(np.uint8)),
                                 lifetime="first_appearance").J[1]) == 2  # scored from frame 3 (of 1..4)


def _read_binary(path: Path) -> np.ndarray:
    from sam2_plugins.evaluation.readers import read_index_png

    return (read_index_png(path) > 0).astype(np.uint8)
