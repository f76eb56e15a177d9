"""The speed benchmark's measurements (benchmarks/napari_speed.py) run on the real dock and
split a click consistently. Times are printed, never asserted (benchmarks report them)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import napari_speed as bench


@pytest.mark.gui
def test_click_latency_through_the_controller(sam2_widget):
    from sam2_plugins import build_sam2

    viewer, w = sam2_widget(show=True)
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8), name="img", rgb=True)
    w.controller.set_model(build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu"), "nano")
    res = bench.click_latency(w.controller, clicks=6)
    print(f"click latency nano at 256^2 on CPU: {res}")
    s = w.session
    assert len(s.points) == 7 and len(w.session_layers().points.data) == 7 and w.controller.engine.cache.misses == 1
    assert len(s.history.labels()[0]) == 7
    assert 0 < res["model_median_ms"] <= res["update_median_ms"] <= res["handled_median_ms"] <= res["median_ms"]
    floor = bench.napari_click_floor(viewer, s.lshape, clicks=3)
    assert floor["clicks"] == 3 and "napari floor" not in viewer.layers


@pytest.mark.gui
@pytest.mark.slow
def test_propagation_paths_all_cover_every_frame(sam2_widget):
    from sam2_plugins import build_sam2

    viewer, w = sam2_widget(threaded=True, show=True)
    model = build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")
    res = bench.propagation_case(viewer, w, model, "nano", frames=6, size=128, repeats=1, activity=False)
    print(f"propagation: {res}")
    assert res["frames"] == 6 and res["objects"] == 2 and res["core_s"] > 0 and res["widget_s"] > 0
