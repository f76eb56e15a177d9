"""The large-image figures of the issue, at test scale (benchmarks/napari_large.py prints them
at full scale: 4096², >= 300 nuclei, and a 16k² lazy image): tiled against untiled with the
shipped demo model on small nuclei with exact ground truth, and peak memory of a lazy image."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from benchmarks import napari_large as bench

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo():
    from sam2_plugins import build_sam2
    from sam2_plugins.checkpoints import demo_checkpoint_path

    if not demo_checkpoint_path().exists():
        pytest.skip("the demo checkpoint is not shipped in this tree")
    return build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu")


def _args(**kw) -> argparse.Namespace:
    base = dict(tile=128, overlap=32, points_per_side=6, iou=0.5, stability=0.6, cache_size=256)
    base.update(kw)
    return argparse.Namespace(**base)


def test_tiled_automatic_and_clicks_beat_untiled_on_small_nuclei(demo):
    from napari_sam2.sample_data import make_nuclei_2d

    img, gt = make_nuclei_2d(1024, 60, seed=3)
    args = _args()
    lab_t, info_t = bench.automatic(demo, img, True, args, 6, 0.5, 0.6)
    r_t = bench.recall(lab_t, gt)
    r_u = max(bench.recall(bench.automatic(demo, img, False, args, 16, iou, st)[0], gt)
              for iou, st in ((0.5, 0.6), (0.0, 0.0)))
    print(f"1024², 60 nuclei: automatic recall at IoU 0.5 tiled {r_t:.3f} ({info_t['tiles']} tiles) "
          f"vs untiled {r_u:.3f}")
    assert r_t >= 0.5 and r_t >= 2 * r_u
    ids = np.arange(1, 11)
    ct = bench.click_ious(demo, img, gt, ids, True, args)
    cu = bench.click_ious(demo, img, gt, ids, False, args)
    print(f"click IoU over 10 nuclei: tiled {ct['mean_iou']:.3f} vs untiled {cu['mean_iou']:.3f}")
    assert ct["mean_iou"] >= 0.5 and ct["mean_iou"] > cu["mean_iou"]


def test_tile_cache_second_run_encodes_nothing(demo):
    from napari_sam2.sample_data import make_nuclei_2d

    img, _ = make_nuclei_2d(256, 6, seed=1)
    c = bench.cache_check(demo, img, _args())
    assert c["first"]["encoded"] == c["first"]["tiles"] == 9 and c["second"]["encoded"] == 0


def test_peak_memory_of_a_16k_lazy_image():
    pytest.importorskip("dask.array")
    m = bench.memory_check(16384, 1024, 128, run_automatic=False, pps=6)
    print(f"16384² uint16 read lazily, 4 tiled clicks: peak resident memory {m['peak_rss_gb']:.2f} GB")
    assert m["peak_rss_gb"] < 4.0
