"""napari plugin speed: click -> Labels-updated latency, and propagation overhead.

``python -m benchmarks napari-speed [--model sam2.1_hiera_tiny] [--clicks 15] [--threads N]
[--dtypes fp32,bf16] [--cases rgb1024,u16_2048] [--masks model,disc] [--no-propagation] [--tag after]
[--json benchmarks/results/cpu_napari_click_latency.json]``

* **click latency**: a real napari viewer (shown; under Xvfb when there is no display) with
  the SAM 2 dock widget, a model with random weights (timing only: the decoder costs the same
  whatever the weights) and the clicked frame's embedding cached. Each click is added to the
  ``SAM2 points`` layer the way a user's click is, and timed until the viewer has processed
  its events (Labels written, canvas redrawn). The median is split into

  - ``model_ms``: the engine's prediction (prompt encoder, mask decoder, upsampling of the
    chosen mask to the image size, thresholding);
  - ``plugin_ms``: the rest of the widget's reaction (prompt diff, Labels write of the
    object's bounding box, partial redraw, undo record);
  - ``napari_ms``: what napari does around it (the Points layer's own add, event handling,
    drawing), i.e. the total minus the two above.

  Random weights give masks of any size (often most of the image), unlike a user's object,
  and the size-dependent part of a click (mask upsampling, Labels write, redraw) follows the
  mask: ``--masks model`` keeps the model's masks, ``--masks disc`` still runs the model but
  writes a disc of radius 8 % of the shorter side around the click (about 2 % of the image).

  Cases: ``rgb1024`` (a 1024x1024 uint8 RGB image, the issue's goal: <= 100 ms on CPU for
  tiny including the Labels update) and ``u16_2048`` (a 2048x2048 uint16 microscopy-like
  grey image with contrast limits, as users have).
* **propagation overhead**: seconds for the core video predictor alone, the plugin's engine
  path (generator + Labels writes), and the whole widget (thread worker, signals, Labels
  writes with partial redraws, progress bar) on the same frames (2 objects clicked on frame
  0, both directions, every frame encoded), best of ``--prop-repeats`` interleaved runs;
  goal: within 10 % of the core. The widget runs once with the dock's progress bar only and
  once also in napari's activity panel, whose animated spinner redraws the window many times a
  second: with software OpenGL (Xvfb here) each redraw is slow and holds the interpreter.

A display is needed (napari draws with OpenGL): if ``DISPLAY`` is unset, an Xvfb server is
started through ``pyvirtualdisplay`` (installed with pytest-xvfb); without it, run the
command under ``xvfb-run -a -s "-screen 0 1600x1000x24"``. Nothing is asserted: figures are
printed and, with ``--json``, merged into that file under ``runs[<tag>]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

DEFAULT_JSON = "benchmarks/results/cpu_napari_click_latency.json"
CASES = ("rgb1024", "u16_2048")


@contextlib.contextmanager
def virtual_display() -> Iterator[str]:
    """An X display for Qt/OpenGL: the current one, or a temporary Xvfb (pyvirtualdisplay)."""
    if os.environ.get("DISPLAY"):
        yield f"existing DISPLAY={os.environ['DISPLAY']}"
        return
    try:
        from pyvirtualdisplay import Display
    except ImportError as exc:
        raise RuntimeError("no DISPLAY and pyvirtualdisplay is not installed: run this under "
                           "xvfb-run -a -s '-screen 0 1600x1000x24'") from exc
    disp = Display(visible=False, size=(1600, 1000), color_depth=24)
    disp.start()
    try:
        yield "Xvfb via pyvirtualdisplay"
    finally:
        disp.stop()


def make_image(case: str, seed: int = 0) -> Dict[str, Any]:
    """The image of a case and the ``add_image`` keywords for it.

    ``rgb1024``: (1024, 1024, 3) uint8 smooth colour blobs. ``u16_2048``: (2048, 2048)
    uint16 grey, bright nuclei-like discs on a dim noisy background (12-bit range), with
    contrast limits as a user would set them.
    """
    rng = np.random.default_rng(seed)
    if case == "rgb1024":
        n = 1024
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
        img = np.stack([np.sin(6 * xx + 2 * c) * np.cos(5 * yy - c) for c in range(3)], -1)
        img = ((img + 1) * 127.5).astype(np.uint8)
        return {"data": img, "kwargs": {"rgb": True}}
    if case == "u16_2048":
        n = 2048
        img = rng.normal(300, 40, (n, n)).clip(0, 4095)
        yy, xx = np.ogrid[0:n, 0:n]
        for _ in range(60):
            cy, cx, r = rng.integers(100, n - 100), rng.integers(100, n - 100), rng.integers(25, 70)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += rng.uniform(1500, 3000)
        return {"data": img.clip(0, 4095).astype(np.uint16), "kwargs": {"contrast_limits": (200, 3500)}}
    raise ValueError(f"case must be one of {CASES}, got {case!r}")


def _disc_engine(engine: Any, radius_fraction: float) -> Any:
    """``engine`` whose masks are replaced by a disc around the last positive click.

    Random weights give masks of arbitrary size (often most of the image), which makes the
    size-dependent part of a click (the mask upsampling, the Labels write, the redraw)
    unlike a user's object. The model still runs in full (its time is real); only its mask
    is swapped for a disc of ``radius_fraction`` of the shorter side.
    """
    from napari_sam2._region import RegionMask

    predict = engine.predict_region

    def predict_region(fp: Any) -> Any:
        region, iou = predict(fp)
        h, w = region.shape
        pos = fp.points[np.asarray(fp.labels) == 1]
        x, y = (pos[-1] if len(pos) else (w / 2, h / 2))
        r = max(1.0, radius_fraction * min(h, w))
        y0, y1 = max(0, int(y - r)), min(h, int(y + r) + 1)
        x0, x1 = max(0, int(x - r)), min(w, int(x + r) + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        return RegionMask((yy - y) ** 2 + (xx - x) ** 2 <= r * r, (y0, x0), (h, w)).tight(), iou

    engine.predict_region = predict_region
    return engine


def click_case(viewer: Any, widget: Any, case: str, model: Any, model_name: str, dtype: str,
               clicks: int, masks: str = "model") -> Dict[str, Any]:
    """Median click latency on one image (the widget's previous session is replaced).

    ``masks``: "model" (the random-weights model's own masks) or "disc" (see :func:`_disc_engine`).
    """
    from napari_sam2._bench import click_latency, napari_click_floor
    from napari_sam2._engine import SAM2Engine

    im = make_image(case)
    for ly in list(viewer.layers):
        viewer.layers.remove(ly)
    viewer.add_image(im["data"], name=case, **im["kwargs"])
    widget.ui.image_combo.setCurrentText(case)
    widget.engine = SAM2Engine(model, model_name, widget.cache)
    widget.engine.image_predictor.dtype = dtype
    if masks == "disc":
        _disc_engine(widget.engine, 0.08)
    t0 = time.perf_counter()
    res = click_latency(widget, clicks=clicks)
    res["napari_floor"] = napari_click_floor(widget, clicks=clicks)
    res["wall_s"] = time.perf_counter() - t0
    res["image"] = {"shape": list(im["data"].shape), "dtype": str(im["data"].dtype)}
    res["plugin_median_ms"] = res["update_median_ms"] - res["model_median_ms"]
    res["napari_median_ms"] = res["handled_median_ms"] - res["update_median_ms"]
    lab = widget._outputs["instances"].data
    res["mask_fraction"] = float((lab > 0).mean())
    return res


def _wait_idle(widget: Any, timeout_s: float = 600.0) -> None:
    """Run a Qt event loop until the widget's worker is done. The loop sleeps while there is
    nothing to do, as the app's does (polling here would steal CPU from the worker)."""
    from qtpy.QtCore import QEventLoop, QTimer

    t0 = time.perf_counter()
    while widget.worker is not None:
        loop = QEventLoop()
        widget.worker.finished.connect(loop.quit)
        QTimer.singleShot(200, loop.quit)  # re-check: a finished worker may hand over to the next
        if widget.worker is not None:
            loop.exec()
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError(f"the widget's worker still runs after {timeout_s:.0f} s")


def widget_propagation(viewer: Any, widget: Any, model: Any, model_name: str, frames: np.ndarray,
                       clicks: Dict[int, Any], activity: bool = True) -> float:
    """Seconds for the widget's own propagation (thread worker, signals, Labels writes and
    partial redraws, progress) of ``clicks`` (obj id -> (y, x) on frame 0) through ``frames``
    (N, H, W, 3) uint8, both ways, every frame encoded (empty embedding cache). ``activity``:
    also show the task in napari's activity panel (its animated spinner)."""
    from napari_sam2._engine import SAM2Engine

    widget.ui.activity_progress.setChecked(activity)

    for ly in list(viewer.layers):
        viewer.layers.remove(ly)
    viewer.add_image(frames, name="clip", rgb=True)
    widget.ui.image_combo.setCurrentText("clip")
    widget.ui.mode_combo.setCurrentText("T")
    widget.ui.axis_combo.setCurrentText("T")
    widget.ui.direction_combo.setCurrentText("both")
    widget.threaded = True
    widget.ui.auto_repropagate.setChecked(False)
    widget.engine = SAM2Engine(model, model_name, widget.cache)
    viewer.dims.set_current_step(0, 0)
    for oid, (y, x) in clicks.items():
        widget.add_click((0, y, x), positive=True, obj_id=oid)
        _wait_idle(widget)
    # a fresh engine installs widget.cache on the model again (the core-alone pass removes
    # it); emptied, so that every frame is encoded as in the core pass
    widget.engine = SAM2Engine(model, model_name, widget.cache)
    widget.cache.clear()
    t0 = time.perf_counter()
    widget.propagate()
    _wait_idle(widget)
    took = time.perf_counter() - t0
    if widget.last_propagation.get("frames") != len(frames):
        raise RuntimeError(f"the widget propagated {widget.last_propagation} (expected {len(frames)} "
                           f"frames): {widget.last_message}")
    return took


def propagation_case(viewer: Any, widget: Any, model: Any, model_name: str, frames: int, size: int,
                     repeats: int, activity: bool = True) -> Dict[str, Any]:
    """Core video predictor alone vs the plugin's engine path vs the whole widget (worker;
    without, and with ``activity``, napari's activity panel too), interleaved, best of
    ``repeats`` each; 2 objects clicked on frame 0, both directions."""
    from sam2_plugins.evaluation.synthetic import make_video

    from napari_sam2._bench import propagation_overhead
    from napari_sam2._prompts import FramePrompt

    vid, gt = make_video(frames, size, size, num_objects=2, seed=1)
    clicks: Dict[int, Any] = {}
    for oid in (1, 2):
        ys, xs = np.nonzero(gt[0] == oid)
        if len(ys):
            i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # a pixel of the object
            clicks[oid] = (int(ys[i]), int(xs[i]))
    prompts = {0: {oid: FramePrompt(np.array([[x, y]], np.float32), np.array([1], np.int32))
                   for oid, (y, x) in clicks.items()}}
    best = {"core_s": float("inf"), "plugin_s": float("inf"), "widget_s": float("inf"),
            "widget_activity_s": float("inf")}
    for _ in range(repeats):
        r = propagation_overhead(model, vid, prompts, repeats=1)
        best["core_s"] = min(best["core_s"], r["core_s"])
        best["plugin_s"] = min(best["plugin_s"], r["plugin_s"])
        best["widget_s"] = min(best["widget_s"], widget_propagation(viewer, widget, model, model_name, vid,
                                                                    clicks, activity=False))
        if activity:
            best["widget_activity_s"] = min(best["widget_activity_s"], widget_propagation(
                viewer, widget, model, model_name, vid, clicks, activity=True))
    out = dict(best, frames=frames, size=size, objects=len(clicks), model=model_name, repeats=repeats,
               engine_overhead=best["plugin_s"] / best["core_s"] - 1.0,
               widget_overhead=best["widget_s"] / best["core_s"] - 1.0)
    if activity:
        out["widget_activity_overhead"] = best["widget_activity_s"] / best["core_s"] - 1.0
    else:
        out.pop("widget_activity_s")
    return out


def _commit() -> Optional[str]:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - not a checkout
        return None


def _load_avg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks napari-speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--clicks", type=int, default=15, help="timed clicks per case (after one encoding click)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {CASES}")
    ap.add_argument("--dtypes", default="fp32,bf16", help="autocast of the click path: fp32, bf16")
    ap.add_argument("--masks", default="model,disc",
                    help="model: the random-weights model's masks (any size); disc: the model runs, "
                         "its mask is replaced by a disc of radius 8%% of the shorter side (an object)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--no-propagation", action="store_true")
    ap.add_argument("--prop-model", default="sam2.1_hiera_tiny")
    ap.add_argument("--prop-frames", type=int, default=8)
    ap.add_argument("--prop-size", type=int, default=256)
    ap.add_argument("--prop-repeats", type=int, default=2)
    ap.add_argument("--no-activity", action="store_true",
                    help="skip the widget run that also shows napari's activity panel")
    ap.add_argument("--tag", default="latest", help="key of this run in the JSON file")
    ap.add_argument("--json", default=None, help=f"merge the figures into this file (e.g. {DEFAULT_JSON})")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            raise ValueError(f"--cases: {c!r} is not one of {CASES}")
    mask_kinds = [m for m in args.masks.split(",") if m]
    for m in mask_kinds:
        if m not in ("model", "disc"):
            raise ValueError(f"--masks: {m!r} is not model or disc")
    dtypes = [d for d in args.dtypes.split(",") if d]
    for d in dtypes:
        if d not in ("fp32", "bf16"):
            raise ValueError(f"--dtypes: {d!r} is not fp32 or bf16")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    run: Dict[str, Any] = {
        "model": args.model, "device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(), "commit": _commit(), "load_avg_before": _load_avg(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "clicks": {},
    }
    from sam2_plugins import build_sam2

    torch.manual_seed(0)  # the same random weights (so the same masks) in every run
    model = build_sam2(args.model, checkpoint=None, device="cpu")
    with virtual_display() as how:
        run["display"] = how
        import napari

        from napari_sam2._widget import SAM2Widget

        viewer = napari.Viewer(show=True)
        try:
            widget = SAM2Widget(viewer, threaded=False)
            viewer.window.add_dock_widget(widget, area="right", name="SAM 2")
            viewer.window._qt_window.resize(1500, 950)
            for case in cases:
                widget.cache.clear()  # the first click of each case encodes its image (not timed)
                for dt, masks in [(d, m) for d in dtypes for m in mask_kinds]:
                    res = click_case(viewer, widget, case, model, args.model, dt, args.clicks, masks)
                    res["masks"] = masks
                    run["clicks"][f"{case}/{dt}/{masks}"] = res
                    print(f"{args.model} {case} {dt} {masks} masks: click -> Labels updated {res['handled_median_ms']:.1f} ms "
                          f"median = model {res['model_median_ms']:.1f} + plugin {res['plugin_median_ms']:.1f} "
                          f"+ napari points {res['napari_median_ms']:.1f}; then redraw "
                          f"{res['draw_median_ms']:.1f} (total {res['median_ms']:.1f}, max {res['max_ms']:.1f}); "
                          f"mask covers {100 * res['mask_fraction']:.1f} %; napari alone (muted widget): point "
                          f"{res['napari_floor']['add_median_ms']:.1f} + redraw {res['napari_floor']['draw_median_ms']:.1f}",
                          flush=True)
            if not args.no_propagation:
                pmodel = model if args.prop_model == args.model else build_sam2(args.prop_model, checkpoint=None,
                                                                              device="cpu")
                res = propagation_case(viewer, widget, pmodel, args.prop_model, args.prop_frames,
                                       args.prop_size, args.prop_repeats, activity=not args.no_activity)
                run["propagation"] = res
                act = (f", with napari's activity panel {res['widget_activity_s']:.2f} s "
                       f"({100 * res['widget_activity_overhead']:+.1f} %)" if "widget_activity_s" in res else "")
                print(f"propagation {args.prop_model} {args.prop_frames} frames of {args.prop_size}^2, "
                      f"{res['objects']} objects, both ways: core alone {res['core_s']:.2f} s, plugin engine "
                      f"{res['plugin_s']:.2f} s ({100 * res['engine_overhead']:+.1f} %), widget with worker "
                      f"{res['widget_s']:.2f} s ({100 * res['widget_overhead']:+.1f} %){act}", flush=True)
        finally:
            viewer.close()
    run["load_avg_after"] = _load_avg()
    if args.json:
        path = Path(args.json)
        doc = json.loads(path.read_text()) if path.exists() else {}
        doc.setdefault("benchmark", "python -m benchmarks napari-speed")
        doc.setdefault("runs", {})[args.tag] = run
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path} (runs[{args.tag!r}])")
    return 0


if __name__ == "__main__":
    sys.exit(main())
