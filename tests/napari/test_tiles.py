"""Tiled mode through the controller: the grid, clicks decoded in their tile, boxes and masks
spanning tiles, automatic mode per tile with de-duplication and stitching across seams, lazy
(dask) images read one tile at a time, tile embeddings cached on disk. A stub engine gives
exact expectations; the demo model's figures are in test_large_images.py."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._tiles import TileGrid, crop_prompt, prompt_extent
from napari_sam2.controller import AutoParams, FramePrompt, SAM2Controller, TileSettings
from tests.napari.conftest import StubEngine


class BlobEngine(StubEngine):
    """The stub, plus a record of the frames it was given and an automatic mode that returns
    every bright connected component of a frame."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes = []

    def set_frame(self, rgb, token) -> bool:
        super().set_frame(rgb, token)
        self.shapes.append(self.frame.shape[:2])
        return False

    def automatic_records(self, rgb, **kw) -> list:
        from scipy.ndimage import label

        lab, n = label(rgb[..., 0] > 128)
        return [{"segmentation": lab == i, "predicted_iou": 0.9, "stability_score": 0.95, "area": int((lab == i).sum())}
                for i in range(1, n + 1)]


def test_grid_tiles_cover_the_plane_with_overlap():
    g = TileGrid((300, 520), 128, 32)
    assert g.ys == [0, 96, 172] and g.xs == [0, 96, 192, 288, 384, 392]
    cover = np.zeros((300, 520), int)
    for y0, y1, x0, x1 in g:
        assert (y1 - y0, x1 - x0) == (128, 128)
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    assert g.window_for((40, 60, 40, 60)) == (0, 128, 0, 128)
    assert g.window_for((100, 120, 120, 140)) == (0, 128, 96, 224), "the tile with the widest margin"
    assert g.window_for((10, 200, 10, 20)) is None
    assert g.overlapping((10, 200, 10, 20)) == [(0, 128, 0, 128), (96, 224, 0, 128), (172, 300, 0, 128)]
    assert TileGrid((100, 90), 128, 32).ys == [0] and len(TileGrid((100, 90), 128, 32)) == 1
    with pytest.raises(ValueError, match="overlap"):
        TileSettings(True, 64, 64).grid((500, 500), 1024)


def test_prompt_crop_and_extent():
    fp = FramePrompt(np.array([[10, 20], [200, 30]], np.float32), np.array([1, 0], np.int32),
                     np.array([5, 5, 150, 60], np.float32))
    assert prompt_extent(fp, (100, 300)) == (3, 63, 3, 203)
    local = crop_prompt(fp, (0, 64, 100, 228))
    assert local.points.tolist() == [[100.0, 30.0]] and local.labels.tolist() == [0]
    assert local.box.tolist() == [0.0, 5.0, 50.0, 60.0]


def _tiled(data, engine=None, size=128, overlap=32, **kw):
    ctl = SAM2Controller()
    ctl.engine = engine or BlobEngine()
    ctl.tiles = TileSettings(True, size, overlap)
    s = ctl.open_image(data, "big", **kw)
    return ctl, s


def test_click_is_decoded_in_its_tile():
    ctl, s = _tiled(np.zeros((600, 700), np.uint8))
    ctl.add_click((300, 450))
    assert ctl.engine.shapes == [(128, 128)], "one tile read and encoded, not the plane"
    lab = s.outputs["instances"]
    yy, xx = np.nonzero(lab == 1)
    assert len(yy) == 81 and (yy.mean(), xx.mean()) == (300, 450), "the disc lands where the click is"
    ctl.add_click((302, 452), positive=False)  # same tile: refines the same object
    assert lab[300, 450] == 0 and lab[300, 445] == 1


def test_box_and_mask_spanning_tiles():
    ctl, s = _tiled(np.zeros((400, 600), np.uint8))
    ctl.add_box((50, 40), (300, 500))  # larger than a tile: decoded in every tile it touches
    lab = s.outputs["instances"]
    assert (lab[50:301, 40:501] == 1).all() and (lab == 1).sum() == 251 * 461
    assert len(ctl.engine.shapes) > 4 and set(ctl.engine.shapes) == {(128, 128)}
    m = np.zeros((400, 600), np.int32)
    m[100:350, 20:300] = 5
    oid = ctl.new_object()
    ctl.overwrite = True
    ctl.add_mask_prompt(m, 5, key=())
    assert (lab == oid).sum() == 250 * 280


def test_automatic_per_tile_merges_duplicates_and_stitches_seams():
    img = np.zeros((400, 520), np.uint8)
    gt = np.zeros((400, 520), np.int32)
    blobs = [(20, 30, 20, 34), (90, 110, 90, 112), (180, 196, 100, 120), (300, 330, 380, 400),
             (100, 124, 180, 200), (60, 340, 250, 290)]  # the last one crosses several seams
    for i, (y0, y1, x0, x1) in enumerate(blobs, start=1):
        img[y0:y1, x0:x1] = 255
        gt[y0:y1, x0:x1] = i
    ctl, s = _tiled(np.repeat(img[..., None], 3, -1), rgb=True)
    ctl.segment_everything((), AutoParams(pred_iou_thresh=0.5, stability_score_thresh=0.5))
    res = ctl.last_automatic
    out = s.outputs["automatic"]
    assert res.tiles == 4 * 6 and res.n_masks == len(blobs), res.message
    for i in range(1, len(blobs) + 1):
        ids = np.unique(out[gt == i])
        assert len(ids) == 1 and ids[0] > 0 and ((out == ids[0]) == (gt == i)).all(), f"blob {i}"


def test_lazy_image_is_read_one_tile_at_a_time():
    da = pytest.importorskip("dask.array")
    reads = []

    def block(block_info=None):
        loc = block_info[None]["array-location"]
        reads.append(tuple(loc))
        (y0, y1), (x0, x1) = loc
        return np.full((y1 - y0, x1 - x0), 1000, np.uint16)

    lazy = da.map_blocks(block, dtype=np.uint16, chunks=((256,) * 8, (256,) * 8))  # 2048² never held
    ctl, s = _tiled(lazy, size=256, overlap=32)
    ctl.add_click((1000, 1100))
    assert ctl.engine.shapes == [(256, 256)]
    assert 1 <= len(reads) <= 4 and all((y1 - y0) * (x1 - x0) == 256 * 256 for (y0, y1), (x0, x1) in reads)
    assert s.outputs["instances"][1000, 1100] == 1


def test_untiled_large_plane_points_to_tiled_mode():
    ctl = SAM2Controller()
    ctl.engine = StubEngine()
    ctl.open_image(np.broadcast_to(np.zeros((1, 1), np.uint8), (4200, 4100)), "huge")
    with pytest.raises(ValueError, match="turn on tiled mode"):
        ctl.add_click((5, 5))


def test_tile_embeddings_are_cached_on_disk_and_reused(tmp_path, monkeypatch):
    import torch

    from sam2_plugins import build_sam2

    monkeypatch.setenv("NAPARI_SAM2_CACHE_DIR", str(tmp_path / "emb"))
    torch.manual_seed(0)
    model = build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")
    img = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    runs = []
    for _ in range(2):  # a new controller, as after a restart of napari
        ctl = SAM2Controller()
        ctl.use_disk_cache(True)
        ctl.set_model(model, "nano|random")
        ctl.tiles = TileSettings(True, 128, 32)
        ctl.open_image(img, "rgb", rgb=True)
        ctl.segment_everything((), AutoParams(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0))
        runs.append((ctl.cache.misses, ctl.cache.disk_hits, ctl.last_automatic.tiles))
    (m1, _, tiles), (m2, d2, _) = runs
    assert tiles == 4 and m1 == 4, "every tile encoded once"
    assert m2 == 0 and d2 == 4 + 1, "the second run re-encodes nothing (4 tiles + the positional encodings)"
