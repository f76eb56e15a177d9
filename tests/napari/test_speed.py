"""Click latency (cached embedding, Labels update included) and propagation overhead."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._bench import click_latency, propagation_overhead


def _latency(sam2_widget, model_name: str, size: int):
    from napari_sam2._engine import SAM2Engine
    from sam2_plugins import build_sam2

    viewer, w = sam2_widget(show=True)
    img = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    viewer.add_image(img, name="img", rgb=True)
    w.engine = SAM2Engine(build_sam2(model_name, checkpoint=None, device="cpu"), model_name, w.cache)
    res = click_latency(w, clicks=8)
    print(f"click latency {model_name} at {size}^2 on CPU: {res}")
    assert len(w.points_layer.data) == 9 and w.engine.cache.misses == 1
    return res


@pytest.mark.gui
def test_click_latency_nano(sam2_widget):
    res = _latency(sam2_widget, "sam2.1_hiera_nano", 256)
    assert res["update_median_ms"] - res["model_median_ms"] < 40, "the plugin adds little to the model"
    assert res["median_ms"] < 1000


@pytest.mark.gui
@pytest.mark.slow
def test_click_latency_tiny_1024(sam2_widget):
    """The issue's goal is <= 100 ms on CPU for tiny at 1024². The model part depends on
    the CPU (printed); what the plugin adds to it (prompt diff, mask write, partial Labels
    redraw of a 1024² layer) is asserted."""
    res = _latency(sam2_widget, "sam2.1_hiera_tiny", 1024)
    assert res["update_median_ms"] - res["model_median_ms"] < 60


@pytest.mark.slow
def test_propagation_overhead_is_small():
    from sam2_plugins import build_sam2
    from sam2_plugins.evaluation.synthetic import make_video

    from napari_sam2._prompts import FramePrompt

    model = build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")
    frames, _ = make_video(8, 128, 128, num_objects=2, seed=1)
    pr = {0: {1: FramePrompt(np.array([[64, 64]], np.float32), np.array([1], np.int32))}}
    res = propagation_overhead(model, frames, pr, repeats=3)
    print(f"propagation: {res}")
    assert res["frames"] == 8 and res["overhead"] < 0.25  # noisy on shared CPUs; GPU check in the report


@pytest.mark.gui
@pytest.mark.slow
def test_widget_propagation_throughput(sam2_widget, qtbot):
    """The threaded widget path (worker, signals, Labels writes) against the core alone."""
    import time

    from sam2_plugins import build_sam2
    from sam2_plugins.evaluation.synthetic import make_video

    from napari_sam2._bench import propagation_overhead
    from napari_sam2._engine import SAM2Engine
    from napari_sam2._prompts import FramePrompt
    from tests.napari.conftest import wait_idle

    frames, _ = make_video(12, 128, 128, num_objects=2, seed=1)
    model = build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")
    viewer, w = sam2_widget(threaded=True)
    viewer.add_image(frames, name="clip", rgb=True)
    # napari's activity panel animates a spinner: under Xvfb's software OpenGL each frame of
    # it is a slow full-window redraw holding the GIL (benchmarks/napari_speed.py measures it)
    w.ui.activity_progress.setChecked(False)
    w.ui.mode_combo.setCurrentText("T")
    w.ui.axis_combo.setCurrentText("T")
    w.engine = SAM2Engine(model, "nano", w.cache)
    w.add_click((0, 64, 64))
    wait_idle(qtbot, w)
    best = float("inf")
    for _ in range(2):
        w.cache.clear()
        t0 = time.perf_counter()
        w.propagate()
        wait_idle(qtbot, w)
        best = min(best, time.perf_counter() - t0)
    pr = {0: {1: FramePrompt(np.array([[64, 64]], np.float32), np.array([1], np.int32))}}
    core = propagation_overhead(model, frames, pr, repeats=2)["core_s"]
    print(f"widget propagation {best:.3f}s vs core {core:.3f}s ({100 * (best / core - 1):+.1f}%)")
    assert best < 1.5 * core  # shared 2-core CI: loose; see the report for GPU numbers
