"""Video mask outputs (resize, non-overlap, RLE, DAVIS / SA-V PNG writers) and quality signals."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sam2_plugins.modeling.rules import apply_non_overlapping_constraints as apply_non_overlap
from sam2_plugins.predictors.video.outputs import (
    binarize,
    combine_objects,
    davis_palette,
    masks_to_rles,
    read_palette_png,
    to_video_res,
    write_davis_png,
    write_sav_pngs,
)
from sam2_plugins.predictors.video.quality import FrameQuality, QualityTracker, suggest_correction_frames


def test_to_video_res_and_binarize() -> None:
    low = torch.full((2, 1, 8, 8), -5.0)
    low[0, 0, 2:6, 2:6] = 5.0
    out = to_video_res(low, 16, 24)
    assert out.shape == (2, 1, 16, 24)
    b = binarize(out)
    assert b.dtype == np.bool_ and b.shape == (2, 16, 24) and b[0].sum() > 0 and b[1].sum() == 0
    assert to_video_res(out, 16, 24) is out
    with pytest.raises(ValueError):
        to_video_res(low[0], 4, 4)


def test_non_overlap_keeps_top_object() -> None:
    m = torch.tensor([[[[1.0, 3.0]]], [[[2.0, -1.0]]]])
    o = apply_non_overlap(m)
    assert o[0, 0, 0, 0] == -10.0 and o[1, 0, 0, 0] == 2.0 and o[0, 0, 0, 1] == 3.0
    assert (o > 0).sum(0).max() <= 1


def test_rle_round_trip() -> None:
    from sam2_plugins.rle import decode_coco_rle, rle_to_mask

    rng = np.random.default_rng(0)
    masks = rng.random((3, 10, 7)) > 0.6
    for compressed, dec in ((True, decode_coco_rle), (False, rle_to_mask)):
        rles = masks_to_rles(masks, compressed=compressed)
        assert len(rles) == 3 and rles[0]["size"] == [10, 7]
        for r, m in zip(rles, masks):
            assert np.array_equal(dec(r), m)
    logits = torch.where(torch.from_numpy(masks), 3.0, -3.0)[:, None]
    assert [r["counts"] for r in masks_to_rles(logits)] == [r["counts"] for r in masks_to_rles(masks)]


def test_davis_png_round_trip(tmp_path: Path) -> None:
    masks = np.zeros((2, 6, 8), bool)
    masks[0, :3] = True
    masks[1, 2:] = True  # overlaps object 1 on row 2: the smaller id wins
    p = write_davis_png(tmp_path, 3, masks, obj_ids=[1, 2])
    assert p.name == "00003.png"
    idx = read_palette_png(p)
    assert idx.dtype == np.uint8 and idx[0, 0] == 1 and idx[2, 0] == 1 and idx[5, 0] == 2
    from PIL import Image

    with Image.open(p) as im:
        assert im.mode == "P" and bytes(im.getpalette()[:6]) == davis_palette()[:6]
    assert davis_palette()[3:6] == bytes([128, 0, 0])  # DAVIS colour 1 is dark red
    with pytest.raises(ValueError, match="1..255"):
        combine_objects(masks, obj_ids=[0, 300])


def test_sav_pngs(tmp_path: Path) -> None:
    masks = np.zeros((2, 5, 5), bool)
    masks[0, 1:3, 1:3] = True
    paths = write_sav_pngs(tmp_path, "00010", masks, obj_ids=[4, 12])
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["004/00010.png", "012/00010.png"]
    assert read_palette_png(paths[0]).sum() == 4 and read_palette_png(paths[1]).sum() == 0
    with pytest.raises(ValueError, match="object ids"):
        write_sav_pngs(tmp_path, 0, masks, obj_ids=[1])


def _out(score: float, iou: float, area: int = 10, prompted: bool = False) -> SimpleNamespace:
    m = torch.full((1, 1, 8, 8), -1.0)
    m.view(-1)[:area] = 1.0
    return SimpleNamespace(object_score_logits=torch.tensor([[score]]), iou=torch.tensor([iou]),
                           pred_masks=m, mask_from_points=prompted)


def test_quality_flags_and_suggestions() -> None:
    q = QualityTracker(iou_threshold=0.5, score_margin=1.0)
    seq = [(5, 0.9, True), (6, 0.9, False), (-3, 0.9, False), (-4, 0.9, False), (4, 0.3, False),
           (0.5, 0.95, False), (7, 0.95, False)]
    recs = [q.record(1, i, _out(s, iou, prompted=pr), reverse=False) for i, (s, iou, pr) in enumerate(seq)]
    assert [r.lost for r in recs] == [False, False, True, False, False, False, False]
    assert [r.reappeared for r in recs] == [False, False, False, False, True, False, False]
    assert [r.low_confidence for r in recs] == [False, False, False, False, True, True, False]
    assert recs[0].prompted and recs[2].visible is False and recs[0].area == 10
    sug = suggest_correction_frames(q.all(), k=3, min_gap=1)
    assert [s[0] for s in sug][:2] == [2, 4] and sug[0][3] == "lost"
    spaced = q.suggest(k=5, min_gap=3)
    frames = [s[0] for s in spaced]
    assert all(abs(a - b) >= 3 for i, a in enumerate(frames) for b in frames[i + 1:])
    assert q.frame(4)[1].reappeared and q.get(1, 99) is None
    # reverse passes compare with the next frame
    r = QualityTracker()
    r.record(2, 5, _out(3, 0.9), reverse=True)
    assert r.record(2, 4, _out(-3, 0.9), reverse=True).lost
    w = QualityTracker(window=2)
    for i in range(5):
        w.record(1, i, _out(1, 0.9), reverse=False)
    assert sorted(w.records[1]) == [3, 4]
    with pytest.raises(ValueError):
        suggest_correction_frames([], k=-1)
    assert isinstance(recs[0], FrameQuality) and recs[0].as_dict()["frame_idx"] == 0


def test_fill_holes_small_background_components_only() -> None:
    from sam2_plugins.predictors.image.postprocess import fill_holes_in_mask_scores

    low = torch.full((2, 1, 8, 8), 5.0)
    low[0, 0, 3, 3] = -1.0          # a 1-pixel hole: filled with 0.1
    low[0, 0, :, 0] = -1.0          # an 8-pixel background strip: kept
    out = fill_holes_in_mask_scores(low, 4)
    assert abs(float(out[0, 0, 3, 3]) - 0.1) < 1e-6 and float(out[0, 0, 0, 0]) == -1.0
    assert torch.equal(out[1], low[1])
