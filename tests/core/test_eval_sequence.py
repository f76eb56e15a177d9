"""Sequence-level J&F rules (object count, lifetime, void, skipping) and clear errors on bad input."""

from __future__ import annotations

import sys
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


def _strip(res: dict) -> dict:
    return {k: v for k, v in res.items() if k not in ("seconds", "workers")}


def test_workers_share_frames_and_give_identical_numbers(tmp_path: Path) -> None:
    """Frames of unequal sequences are cut into per-worker shares; every number (per frame
    too) equals the one-process result, for any number of workers and both lifetime rules."""
    gt_root = tmp_path / "gt" / "Annotations" / "480p"
    pred_root = tmp_path / "pred"
    for i, (t, h, w, n) in enumerate(((9, 40, 56, 2), (5, 30, 70, 1), (13, 44, 50, 3))):
        _, masks = make_video(t, h, w, n, seed=20 + i, late_objects=1 if i == 2 else 0)
        _write_seq(gt_root, f"s{i}", masks)
        pred = np.roll(masks, i + 1, axis=1)
        pred[t // 2] = 0
        pred[pred > n - (i == 2)] = 0  # the late object: not an object under the DAVIS rule
        _write_seq(pred_root, f"s{i}", pred)
    for lifetime in ("davis", "first_appearance"):
        ref = evaluate_folders(tmp_path / "gt", pred_root, workers=1, per_frame=True, lifetime=lifetime)
        assert ref["workers"] == 1
        for workers in (2, 3, 5):
            res = evaluate_folders(tmp_path / "gt", pred_root, workers=workers, per_frame=True, lifetime=lifetime)
            assert res["workers"] > 1
            assert _strip(res) == _strip(ref), (lifetime, workers)
    with_bar = evaluate_folders(tmp_path / "gt", pred_root, workers=2, per_frame=True, progress=True)
    assert _strip(with_bar) == _strip(evaluate_folders(tmp_path / "gt", pred_root, workers=1, per_frame=True))


def test_process_pool_fallback_gives_the_same_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where workers cannot be forked (macOS, Windows) the shares go to a process pool: the
    work objects pickle and the numbers are the same."""
    from sam2_plugins.evaluation import folders

    gt_root = tmp_path / "gt"
    for i in range(2):
        _, masks = make_video(9, 30, 40, 2, seed=40 + i)
        _write_seq(gt_root, f"s{i}", masks)
        _write_seq(tmp_path / "pred", f"s{i}", np.roll(masks, 2, axis=2))
    ref = evaluate_folders(gt_root, tmp_path / "pred", workers=1)
    monkeypatch.setattr(folders, "_can_fork", lambda: False)
    res = evaluate_folders(gt_root, tmp_path / "pred", workers=2)
    assert res["workers"] == 2 and _strip(res) == _strip(ref)


def test_share_plans_cover_every_frame_once() -> None:
    from sam2_plugins.evaluation.folders import _split_frames, _split_sequences

    lengths, costs = [50, 40, 49, 3, 7], [410, 410, 410, 1000, 10]
    for n in (1, 2, 3, 4, 7):
        shares = _split_frames(lengths, costs, n)
        assert 1 <= len(shares) <= n
        flat = [p for s in shares for p in s]
        assert flat == sorted(flat)  # contiguous, in sequence and frame order
        for i, length in enumerate(lengths):
            frames = [t for (j, a, b) in flat if j == i for t in range(a, b)]
            assert frames == list(range(length))
        loads = [sum((b - a) * costs[j] for j, a, b in s) for s in shares]
        assert max(loads) - min(loads) <= 2 * max(costs), (n, loads)  # balanced within a frame or two
        whole = _split_sequences(lengths, costs, n)
        assert sorted(p for s in whole for p in s) == [(i, 0, L) for i, L in enumerate(lengths)]


def test_first_error_in_order_whatever_the_workers(tmp_path: Path) -> None:
    gt_root = tmp_path / "gt"
    pred_root = tmp_path / "pred"
    for i in range(3):
        _, masks = make_video(8, 30, 40, 1, seed=i)
        _write_seq(gt_root, f"s{i}", masks)
        _write_seq(pred_root, f"s{i}", masks)
    write_index_png(pred_root / "s2" / "00005.png", np.zeros((20, 40), np.uint8))  # wrong size
    write_index_png(pred_root / "s1" / "00006.png", np.full((30, 40), 3, np.uint8))  # too many objects
    for workers in (1, 2, 3):  # s2's error is found first by another process, s1's is reported
        with pytest.raises(ValueError, match="sequence s1: the prediction holds object id 3"):
            evaluate_folders(gt_root, pred_root, workers=workers)
    with pytest.raises(ValueError, match="sequence s2, frame 00005: prediction has size 20x40"):
        evaluate_folders(gt_root, pred_root, ["s2"], workers=2)  # raised in a worker process


def _die_or_fail(piece: tuple) -> tuple:
    import os

    if piece[0] == 1:
        os._exit(3)  # a worker killed mid-way (OOM killer, segfault): no result comes back
    if piece[0] == 2:
        raise ValueError(f"bad piece {piece}")
    return piece


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers are Linux-only")
def test_forked_workers_report_errors_and_deaths() -> None:
    from sam2_plugins.evaluation.folders import _run_shares

    done = _run_shares(_die_or_fail, [[(0, 0, 1)], [(2, 0, 1), (3, 0, 1)], [(4, 0, 1)]])
    assert done[(0, 0, 1)] == ("ok", (0, 0, 1)) and done[(4, 0, 1)] == ("ok", (4, 0, 1))
    status, err = done[(2, 0, 1)]
    assert status == "error" and isinstance(err, ValueError) and "bad piece" in str(err)
    assert (3, 0, 1) not in done  # after the first error of a share, nothing more is needed
    with pytest.raises(RuntimeError, match="ended without a result"):
        _run_shares(_die_or_fail, [[(0, 0, 1)], [(1, 0, 1)]])


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
