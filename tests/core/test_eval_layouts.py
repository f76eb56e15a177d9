"""VOS inference on the SA-V and YouTube-VOS / MOSE / LVOS layouts with oracle predictors: what is
written, where, and how it is scored."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2_plugins.evaluation.folders import evaluate_sav_folders
from sam2_plugins.evaluation.layouts import read_sav_layout, run_vos_sav, run_vos_submission
from sam2_plugins.evaluation.readers import read_index_png, read_vos_folder, write_index_png
from tests.core.eval_oracles import OracleVideoPredictor


def _frames(folder: Path, n: int, h: int = 24, w: int = 32) -> None:
    folder.mkdir(parents=True)
    for t in range(n):
        Image.fromarray(np.full((h, w, 3), 10 * t, np.uint8)).save(folder / f"{t:05d}.jpg")


def _sav_root(tmp_path: Path) -> tuple:
    """One SA-V-layout video: 9 frames at 24 fps, 3 annotated (0, 4, 8); object 0 from frame 0,
    object 1 (overlapping object 0) first seen on frame 4."""
    root = tmp_path / "sav"
    _frames(root / "JPEGImages_24fps" / "vid", 9)
    gt = np.zeros((9, 2, 24, 32), bool)
    for t in range(9):
        gt[t, 0, 4:12, 4 + t:12 + t] = True
        if t >= 4:
            gt[t, 1, 8:20, 10:22] = True
    for t in (0, 4, 8):
        for k in (0, 1):
            write_index_png(root / "Annotations_6fps" / "vid" / f"{k:03d}" / f"{t:05d}.png", gt[t, k].astype(np.uint8))
    return root, gt


class _PerObjectOracle(OracleVideoPredictor):
    """GT per object where objects overlap (a label map cannot hold them)."""

    def __init__(self, gt: np.ndarray) -> None:
        super().__init__(np.zeros(gt.shape[:1] + gt.shape[2:], np.uint8))
        self.obj_gt = gt

    def _mask(self, state, k, t):  # noqa: ANN001
        return self.obj_gt[t, k]

    def add_new_mask(self, state, frame_idx, obj_id, mask):  # noqa: ANN001
        assert np.array_equal(np.asarray(mask, bool), self.obj_gt[frame_idx, obj_id])
        state["prompted"].setdefault(obj_id, set()).add(frame_idx)
        return (frame_idx, *self._logits(state, frame_idx))


def test_sav_layout_writes_every_frame_per_object_and_scores_like_evaluate(tmp_path: Path) -> None:
    root, gt = _sav_root(tmp_path)
    (v,) = read_sav_layout(root)
    assert {k: t for k, (t, _) in v.prompts().items()} == {0: 0, 1: 4}
    oracle = _PerObjectOracle(gt)
    out = tmp_path / "pred"
    res = run_vos_sav(oracle, root, out)
    assert oracle.starts == [0, 4] and oracle.resets == 1  # object 1 is its own video from frame 4
    for k in (0, 1):
        files = sorted((out / "vid" / f"{k:03d}").glob("*.png"))
        assert [f.stem for f in files] == [f"{t:05d}" for t in range(9)]  # every 24 fps frame
        for t, f in enumerate(files):
            np.testing.assert_array_equal(read_index_png(f) > 0, gt[t, k])  # overlaps kept
    assert res["J&F-Mean"] == 1.0 and res["frames"] == 9
    assert res["per_object"].keys() == {"vid_0", "vid_1"}
    ref = evaluate_sav_folders(root / "Annotations_6fps", out, workers=1)
    assert {k: ref[k] for k in ("J&F-Mean", "per_object")} == {k: res[k] for k in ("J&F-Mean", "per_object")}


def test_sav_layout_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JPEGImages_24fps"):
        read_sav_layout(tmp_path)
    root, _ = _sav_root(tmp_path)
    (root / "JPEGImages_24fps" / "vid" / "00004.jpg").unlink()
    (v,) = read_sav_layout(root)
    with pytest.raises(ValueError, match="00004"):
        v.prompts()


def _vos_root(tmp_path: Path) -> Path:
    """YouTube-VOS-like: 6 frames; annotations on frame 0 (object 1) and frame 3 (object 2 enters)."""
    root = tmp_path / "yt"
    _frames(root / "JPEGImages" / "clip", 6)
    lab0 = np.zeros((24, 32), np.uint8)
    lab0[2:8, 2:8] = 1
    lab3 = np.zeros((24, 32), np.uint8)
    lab3[12:20, 12:20] = 2
    write_index_png(root / "Annotations" / "clip" / "00000.png", lab0)
    write_index_png(root / "Annotations" / "clip" / "00003.png", lab3)
    return root


@pytest.mark.parametrize("layout, inner", [("youtube", "Annotations/clip/{}.png"), ("mose", "clip/{}.png"),
                                           ("lvos", "clip/{}.png")])
def test_submission_folder_and_zip(tmp_path: Path, layout: str, inner: str) -> None:
    root = _vos_root(tmp_path)
    (seq,) = read_vos_folder(root)
    gt = np.zeros((6, 24, 32), np.uint8)
    gt[:, 2:8, 2:8] = 1
    gt[3:, 12:20, 12:20] = 2
    oracle = OracleVideoPredictor(gt)
    res = run_vos_submission(oracle, [seq], layout, tmp_path / "out")
    names = [inner.format(f"{t:05d}") for t in range(6)]
    with zipfile.ZipFile(res["zip"]) as z:
        assert sorted(z.namelist()) == sorted(names)
    for t, rel in enumerate(names):
        np.testing.assert_array_equal(read_index_png(Path(res["submission"]) / rel), gt[t])
    # the GT holds only the prompts (the server keeps the rest): nothing to score here, and it says so
    assert res["n_objects"] == 0 and "server" in res["note"]
    assert sorted(res["unscored_objects"]) == ["clip_1", "clip_2"]
    with pytest.raises(ValueError, match="layout"):
        run_vos_submission(oracle, [seq], "davis", tmp_path / "x")
