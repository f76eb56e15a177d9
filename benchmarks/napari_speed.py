"""napari plugin speed: click -> Labels-updated latency, and propagation overhead.

``python -m benchmarks napari-speed [--model sam2.1_hiera_tiny] [--clicks 15] [--threads N]
[--dtypes fp32,bf16] [--cases rgb1024,u16_2048] [--masks model,disc] [--no-propagation] [--tag after]
[--json benchmarks/results/cpu_napari_click_latency.json]``

Only public doors of the plugin are used: the dock is opened through its npe2 manifest
(``viewer.window.add_plugin_dock_widget("sam2-plugins", "SAM 2")``) and driven through its
controller (``widget.controller``, :class:`napari_sam2.controller.SAM2Controller`).

* **click latency**: a real napari viewer (shown; under Xvfb when there is no display) with
  the dock, a model with random weights (timing only: the decoder costs the same whatever the
  weights) and the clicked frame's embedding cached. Each click goes through
  ``controller.add_click`` and is timed until the viewer has processed its events (the points
  layer updated, Labels written, canvas redrawn). The median is split into ``model_ms`` (the
  engine's prediction: prompt encoder, mask decoder, upsampling of the chosen mask),
  ``plugin_ms`` (the rest of the controller's reaction: prompt diff, Labels write, undo record)
  and ``napari_ms`` (the view: the points layer's update and the partial Labels redraw
  request), then the redraw. ``napari alone`` adds a point to a plain Points layer (no plugin)
  and redraws: napari's own floor on this display.

  Random weights give masks of any size (often most of the image), unlike a user's object:
  ``--masks disc`` still runs the model but writes a disc of radius 8 % of the shorter side.
  Cases: ``rgb1024`` (1024² uint8 RGB) and ``u16_2048`` (2048² uint16 grey with contrast limits).
* **propagation overhead**: seconds for the core video predictor alone, the controller without a
  viewer (its inline runner, Labels writes, undo record) and the dock with its thread worker
  (Labels writes with partial redraws, progress), on the same frames (2 objects clicked on
  frame 0, both directions, every frame encoded), best of ``--prop-repeats`` interleaved runs.
  The dock runs once with its own progress bar only and once also in napari's activity panel,
  whose spinner redraws the window many times a second (slow with software OpenGL).

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
    """The image of a case and the ``add_image`` keywords for it."""
    rng = np.random.default_rng(seed)
    if case == "rgb1024":
        n = 1024
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
        img = np.stack([np.sin(6 * xx + 2 * c) * np.cos(5 * yy - c) for c in range(3)], -1)
        return {"data": ((img + 1) * 127.5).astype(np.uint8), "kwargs": {"rgb": True}}
    if case == "u16_2048":
        n = 2048
        img = rng.normal(300, 40, (n, n)).clip(0, 4095)
        yy, xx = np.ogrid[0:n, 0:n]
        for _ in range(60):
            cy, cx, r = rng.integers(100, n - 100), rng.integers(100, n - 100), rng.integers(25, 70)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += rng.uniform(1500, 3000)
        return {"data": img.clip(0, 4095).astype(np.uint16), "kwargs": {"contrast_limits": (200, 3500)}}
    raise ValueError(f"case must be one of {CASES}, got {case!r}")


def process_events() -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.processEvents()


def disc_masks(controller: Any, radius_fraction: float = 0.08) -> None:
    """Replace the engine's masks by a disc around the last positive click (the model still
    runs: its time is real); undone by ``del controller.engine.predict_region``."""
    from napari_sam2.controller import RegionMask

    predict = controller.engine.predict_region

    def predict_region(fp: Any) -> Any:
        region, iou = predict(fp)
        h, w = region.shape
        pos = fp.points[np.asarray(fp.labels) == 1]
        x, y = pos[-1] if len(pos) else (w / 2, h / 2)
        r = max(1.0, radius_fraction * min(h, w))
        y0, y1 = max(0, int(y - r)), min(h, int(y + r) + 1)
        x0, x1 = max(0, int(x - r)), min(w, int(x + r) + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        return RegionMask((yy - y) ** 2 + (xx - x) ** 2 <= r * r, (y0, x0), (h, w)).tight(), iou

    controller.engine.predict_region = predict_region


def click_latency(controller: Any, clicks: int = 10, seed: int = 0) -> Dict[str, float]:
    """Milliseconds per click through ``controller.add_click`` on the current frame of its
    active image, the embedding cached (the first click encodes and is not counted)."""
    rng = np.random.default_rng(seed)
    s = controller.session
    h, w = s.hw
    key = tuple(controller.current_key)
    controller.add_click(key + (h // 2, w // 2))
    process_events()
    engine = controller.engine
    predict, update = engine.predict_region, controller.update_predictions
    model_ms: List[float] = []
    update_ms: List[float] = []

    def timed(fp: Any) -> Any:
        t = time.perf_counter()
        out = predict(fp)
        model_ms.append(1000 * (time.perf_counter() - t))
        return out

    def timed_update(*a: Any, **k: Any) -> None:
        t = time.perf_counter()
        update(*a, **k)
        update_ms.append(1000 * (time.perf_counter() - t))
    engine.predict_region, controller.update_predictions = timed, timed_update
    times, handled, draw = [], [], []
    try:
        for _ in range(clicks):
            y, x = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))
            t0 = time.perf_counter()
            controller.add_click(key + (y, x))
            t1 = time.perf_counter()
            process_events()
            t2 = time.perf_counter()
            times.append(1000 * (t2 - t0))
            handled.append(1000 * (t1 - t0))
            draw.append(1000 * (t2 - t1))
    finally:
        engine.predict_region = predict
        del controller.update_predictions
    med = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
    return {"median_ms": med(times), "max_ms": float(np.max(times)), "handled_median_ms": med(handled),
            "draw_median_ms": med(draw), "update_median_ms": med(update_ms), "model_median_ms": med(model_ms),
            "clicks": clicks}


def napari_click_floor(viewer: Any, shape: Sequence[int], clicks: int = 10, seed: int = 1) -> Dict[str, float]:
    """A point added to a plain Points layer (no plugin involved), then the redraw."""
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    layer = viewer.add_points(np.zeros((0, len(shape))), ndim=len(shape), name="napari floor")
    add, draw = [], []
    try:
        process_events()
        for _ in range(clicks):
            yx = [int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))]
            pos = [0] * (len(shape) - 2) + yx
            t0 = time.perf_counter()
            layer.add(np.asarray(pos, float)[None])
            t1 = time.perf_counter()
            process_events()
            add.append(1000 * (t1 - t0))
            draw.append(1000 * (time.perf_counter() - t1))
    finally:
        viewer.layers.remove(layer)
    return {"add_median_ms": float(np.median(add)), "draw_median_ms": float(np.median(draw)),
            "median_ms": float(np.median(np.add(add, draw))), "clicks": clicks}


def open_dock(viewer: Any) -> Any:
    """The SAM 2 dock through its manifest, as *Plugins > SAM 2* makes it."""
    _dock, widget = viewer.window.add_plugin_dock_widget("sam2-plugins", "SAM 2")
    return widget


def click_case(viewer: Any, widget: Any, case: str, model: Any, model_name: str, dtype: str,
               clicks: int, masks: str = "model") -> Dict[str, Any]:
    """Median click latency on one image (a fresh image; earlier ones stay, untouched)."""
    im = make_image(case)
    ctl = widget.controller
    name = f"{case} {dtype} {masks}"
    viewer.add_image(im["data"], name=name, **im["kwargs"])
    widget.ui.image_combo.setCurrentText(name)
    ctl.set_model(model, model_name)
    ctl.engine.image_predictor.dtype = dtype
    if masks == "disc":
        disc_masks(ctl)
    t0 = time.perf_counter()
    res: Dict[str, Any] = click_latency(ctl, clicks=clicks)
    res["napari_floor"] = napari_click_floor(viewer, ctl.session.lshape, clicks=clicks)
    res["wall_s"] = time.perf_counter() - t0
    res["image"] = {"shape": list(im["data"].shape), "dtype": str(im["data"].dtype)}
    res["plugin_median_ms"] = res["update_median_ms"] - res["model_median_ms"]
    res["napari_median_ms"] = res["handled_median_ms"] - res["update_median_ms"]
    res["mask_fraction"] = float((ctl.session.outputs["instances"] > 0).mean())
    return res


def wait_idle(controller: Any, timeout_s: float = 600.0) -> None:
    """Run a Qt event loop until the controller's job is done (sleeping while idle, as the
    app does: polling would steal CPU from the worker)."""
    from qtpy.QtCore import QEventLoop, QTimer

    t0 = time.perf_counter()
    while controller.busy:
        loop = QEventLoop()
        controller.events.busy.connect(lambda b, loop=loop: loop.quit())
        QTimer.singleShot(200, loop.quit)
        loop.exec()
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError(f"the job still runs after {timeout_s:.0f} s")


def _clicks(gt0: np.ndarray) -> Dict[int, Any]:
    out = {}
    for oid in (1, 2):
        ys, xs = np.nonzero(gt0 == oid)
        if len(ys):
            i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # a pixel of the object
            out[oid] = (int(ys[i]), int(xs[i]))
    return out


def core_alone(model: Any, frames: np.ndarray, clicks: Dict[int, Any]) -> float:
    """Seconds of the core video predictor alone (no plugin code on the path)."""
    import torch

    from sam2_plugins import SAM2VideoPredictor

    vars(model).pop("forward_image", None)  # the plugin's embedding cache wraps this method
    vp = SAM2VideoPredictor(model, apply_postprocessing=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        st = vp.init_state(frames)
        for oid, (y, x) in clicks.items():
            vp.add_new_points_or_box(st, frame_idx=0, obj_id=oid, points=np.array([[x, y]], np.float32),
                                     labels=np.array([1], np.int32))
        for _, _, lg in vp.propagate_in_video(st, start_frame_idx=0, direction="both"):
            (lg > 0).cpu().numpy()
    return time.perf_counter() - t0


def controller_alone(model: Any, name: str, frames: np.ndarray, clicks: Dict[int, Any]) -> float:
    """Seconds of the controller's propagation without a viewer (inline runner)."""
    from napari_sam2.controller import SAM2Controller

    ctl = SAM2Controller()
    ctl.set_model(model, name)
    ctl.open_image(frames, "clip", mode="T", rgb=True)
    ctl.auto_repropagate = False
    for oid, (y, x) in clicks.items():
        ctl.add_click((0, y, x), obj_id=oid)
    ctl.cache.clear()  # every frame encoded, as in the core pass
    t0 = time.perf_counter()
    ctl.propagate()
    took = time.perf_counter() - t0
    if ctl.last_propagation.frames != len(frames):
        raise RuntimeError(f"the controller propagated {ctl.last_propagation}")
    return took


def dock_propagation(viewer: Any, widget: Any, model: Any, name: str, frames: np.ndarray, clicks: Dict[int, Any],
                     activity: bool, tag: str) -> float:
    """Seconds of the dock's propagation (thread worker, partial redraws, progress)."""
    ctl = widget.controller
    widget.ui.activity_progress.setChecked(activity)
    widget.ui.auto_repropagate.setChecked(False)
    viewer.add_image(frames, name=f"clip {tag}", rgb=True)
    widget.ui.image_combo.setCurrentText(f"clip {tag}")
    widget.ui.mode_combo.setCurrentText("T")
    widget.ui.direction_combo.setCurrentText("both")
    ctl.set_model(model, name)
    viewer.dims.set_current_step(0, 0)
    for oid, (y, x) in clicks.items():
        ctl.add_click((0, y, x), obj_id=oid)
        wait_idle(ctl)
    ctl.set_cache(ctl.cache)  # (re)install the cache on the model (the core pass removes it) ...
    ctl.cache.clear()  # ... emptied: every frame encoded, as in the core pass
    t0 = time.perf_counter()
    ctl.propagate()
    wait_idle(ctl)
    took = time.perf_counter() - t0
    if ctl.last_propagation.frames != len(frames):
        raise RuntimeError(f"the dock propagated {ctl.last_propagation}: {widget.last_message}")
    return took


def propagation_case(viewer: Any, widget: Any, model: Any, name: str, frames: int, size: int, repeats: int,
                     activity: bool = True) -> Dict[str, Any]:
    """Core alone vs controller vs dock (without / with napari's activity panel), interleaved,
    best of ``repeats`` each; 2 objects clicked on frame 0, both directions."""
    from sam2_plugins.evaluation.synthetic import make_video

    vid, gt = make_video(frames, size, size, num_objects=2, seed=1)
    clicks = _clicks(gt[0])
    best = {"core_s": float("inf"), "controller_s": float("inf"), "widget_s": float("inf"),
            "widget_activity_s": float("inf")}
    for r in range(repeats):
        best["core_s"] = min(best["core_s"], core_alone(model, vid, clicks))
        best["controller_s"] = min(best["controller_s"], controller_alone(model, name, vid, clicks))
        best["widget_s"] = min(best["widget_s"], dock_propagation(viewer, widget, model, name, vid, clicks, False,
                                                                  f"{r}"))
        if activity:
            best["widget_activity_s"] = min(best["widget_activity_s"], dock_propagation(
                viewer, widget, model, name, vid, clicks, True, f"{r} activity"))
    out = dict(best, frames=frames, size=size, objects=len(clicks), model=name, repeats=repeats,
               controller_overhead=best["controller_s"] / best["core_s"] - 1.0,
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


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks napari-speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--clicks", type=int, default=15, help="timed clicks per case (after one encoding click)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {CASES}")
    ap.add_argument("--dtypes", default="fp32,bf16", help="autocast of the click path: fp32, bf16")
    ap.add_argument("--masks", default="model,disc", help="model: the model's masks; disc: an object-sized disc")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--no-propagation", action="store_true")
    ap.add_argument("--prop-model", default="sam2.1_hiera_tiny")
    ap.add_argument("--prop-frames", type=int, default=8)
    ap.add_argument("--prop-size", type=int, default=256)
    ap.add_argument("--prop-repeats", type=int, default=2)
    ap.add_argument("--no-activity", action="store_true", help="skip the dock run with napari's activity panel")
    ap.add_argument("--tag", default="latest", help="key of this run in the JSON file")
    ap.add_argument("--json", default=None, help=f"merge the figures into this file (e.g. {DEFAULT_JSON})")
    args = ap.parse_args(argv)
    for value, allowed, what in ((args.cases, CASES, "--cases"), (args.masks, ("model", "disc"), "--masks"),
                                 (args.dtypes, ("fp32", "bf16"), "--dtypes")):
        for v in value.split(","):
            if v and v not in allowed:
                raise ValueError(f"{what}: {v!r} is not one of {allowed}")
    return args


def _print_click(label: str, res: Dict[str, Any]) -> None:
    f = res["napari_floor"]
    print(f"{label}: click -> Labels updated {res['handled_median_ms']:.1f} ms median = model "
          f"{res['model_median_ms']:.1f} + plugin {res['plugin_median_ms']:.1f} + view {res['napari_median_ms']:.1f}; "
          f"then redraw {res['draw_median_ms']:.1f} (total {res['median_ms']:.1f}, max {res['max_ms']:.1f}); "
          f"mask covers "
          f"{100 * res['mask_fraction']:.1f} %; napari alone: point {f['add_median_ms']:.1f} + redraw "
          f"{f['draw_median_ms']:.1f}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse(argv)
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

        viewer = napari.Viewer(show=True)
        try:
            from napari_sam2.controller import SAM2Controller

            widget = open_dock(viewer)
            threaded = widget.controller.runner  # the dock's own: jobs in Qt thread workers
            widget.controller.runner = SAM2Controller().runner  # clicks timed inline (a worker hides the time)
            viewer.window._qt_window.resize(1500, 950)
            for case in (c for c in args.cases.split(",") if c):
                widget.controller.cache.clear()  # the first click of each case encodes its image (not timed)
                for dt in (d for d in args.dtypes.split(",") if d):
                    for masks in (m for m in args.masks.split(",") if m):
                        res = click_case(viewer, widget, case, model, args.model, dt, args.clicks, masks)
                        res["masks"] = masks
                        run["clicks"][f"{case}/{dt}/{masks}"] = res
                        _print_click(f"{args.model} {case} {dt} {masks} masks", res)
            if not args.no_propagation:
                widget.controller.runner = threaded
                pmodel = model if args.prop_model == args.model else build_sam2(args.prop_model, checkpoint=None,
                                                                              device="cpu")
                res = propagation_case(viewer, widget, pmodel, args.prop_model, args.prop_frames, args.prop_size,
                                       args.prop_repeats, activity=not args.no_activity)
                run["propagation"] = res
                act = (f", with napari's activity panel {res['widget_activity_s']:.2f} s "
                       f"({100 * res['widget_activity_overhead']:+.1f} %)" if "widget_activity_s" in res else "")
                print(f"propagation {args.prop_model} {args.prop_frames} frames of {args.prop_size}^2, "
                      f"{res['objects']} objects, both ways: core alone {res['core_s']:.2f} s, controller "
                      f"{res['controller_s']:.2f} s ({100 * res['controller_overhead']:+.1f} %), dock with worker "
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
