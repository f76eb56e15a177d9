"""Speed measurements of the plugin (used by ``tests/napari`` and callable from benchmarks).

* :func:`click_latency`: time from a click to the updated Labels layer, with the frame's
  embedding cached (decoder, mask upsampling, Labels write and refresh).
* :func:`napari_click_floor`: the same click with the plugin muted (napari's point handling
  and redraw alone), to tell the plugin's cost from the display's;
* :func:`propagation_overhead`: frames per second of the core video predictor alone
  versus the plugin's propagation path (engine generator, Labels writes) on the same frames.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Mapping, Optional

import numpy as np

__all__ = ["click_latency", "napari_click_floor", "propagation_overhead"]


def click_latency(widget: Any, clicks: int = 10, seed: int = 0) -> Dict[str, float]:
    """Milliseconds per click on the widget's current frame, with the embedding cached.

    Each click is added to the ``SAM2 points`` layer (as napari's add mode does) and timed
    until the viewer has processed its events (the canvas redrawn). Returns medians:

    * ``median_ms`` / ``max_ms``: the whole click, redraw included;
    * ``handled_median_ms``: until the Labels layer holds the new mask and has queued its
      partial redraw (the redraw itself, ``draw_median_ms``, depends on the display: slow
      under Xvfb's software OpenGL);
    * ``update_median_ms``: the plugin's reaction (prompts collected, model, Labels write,
      undo record), inside the above;
    * ``model_median_ms``: the engine's prediction (prompt encoder, mask decoder, the chosen
      mask upsampled inside its box) inside the above.

    ``handled - update`` is napari's own handling of the point (the Points layer's add and
    its events). The widget must have an image and a loaded model; it is switched to
    synchronous mode for the measurement. The first click (which encodes the frame) is not
    counted.
    """
    rng = np.random.default_rng(seed)
    threaded, widget.threaded = widget.threaded, False
    engine = widget.engine
    name = "predict_region" if hasattr(engine, "predict_region") else "predict"
    try:
        key = widget.current_key()
        h, w = widget._session[2][-2:]
        widget.add_click(tuple(key) + (h // 2, w // 2))  # encodes the frame
        _process_events()
        times, handled, draw, model_ms, update_ms = [], [], [], [], []
        predict, update = getattr(engine, name), widget.update_predictions

        def timed(fp):
            t = time.perf_counter()
            out = predict(fp)
            model_ms.append(1000 * (time.perf_counter() - t))
            return out

        def timed_update(*a, **k):
            t = time.perf_counter()
            update(*a, **k)
            update_ms.append(1000 * (time.perf_counter() - t))
        setattr(engine, name, timed)
        widget.update_predictions = timed_update
        for _ in range(clicks):
            y, x = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))
            t0 = time.perf_counter()
            widget.add_click(tuple(key) + (y, x))
            t1 = time.perf_counter()
            _process_events()
            t2 = time.perf_counter()
            times.append(1000 * (t2 - t0))
            handled.append(1000 * (t1 - t0))
            draw.append(1000 * (t2 - t1))
    finally:
        widget.threaded = threaded
        vars(engine).pop(name, None)
        vars(widget).pop("update_predictions", None)
    med = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
    return {"median_ms": med(times), "max_ms": float(np.max(times)), "handled_median_ms": med(handled),
            "draw_median_ms": med(draw), "update_median_ms": med(update_ms),
            "model_median_ms": med(model_ms), "clicks": clicks}


def napari_click_floor(widget: Any, clicks: int = 10, seed: int = 1) -> Dict[str, float]:
    """What a click costs napari alone on this display: a point added to the ``SAM2 points``
    layer with the widget muted (no prediction, no Labels write), then the redraw.

    Returns ``add_median_ms`` (the Points layer's add and its events), ``draw_median_ms``
    (processing the viewer's events: the redraw) and ``median_ms`` (both). The points are
    removed afterwards.
    """
    rng = np.random.default_rng(seed)
    key = widget.current_key()
    h, w = widget._session[2][-2:]
    layer = widget.points_layer
    n0 = len(layer.data)
    add, draw = [], []
    widget._muted = True
    try:
        _process_events()
        for _ in range(clicks):
            y, x = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))
            t0 = time.perf_counter()
            layer.add(np.asarray(tuple(key) + (y, x), dtype=float)[None])
            t1 = time.perf_counter()
            _process_events()
            t2 = time.perf_counter()
            add.append(1000 * (t1 - t0))
            draw.append(1000 * (t2 - t1))
        layer.selected_data = set(range(n0, len(layer.data)))
        layer.remove_selected()
        _process_events()
    finally:
        widget._muted = False
    return {"add_median_ms": float(np.median(add)), "draw_median_ms": float(np.median(draw)),
            "median_ms": float(np.median(np.add(add, draw))), "clicks": clicks}


def _process_events() -> None:
    try:
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            app.processEvents()
    except ImportError:  # pragma: no cover
        pass


def propagation_overhead(model: Any, frames: np.ndarray, prompts: Mapping[int, Mapping[int, Any]],
                         engine: Optional[Any] = None, repeats: int = 1) -> Dict[str, float]:
    """Seconds for the core video predictor alone and for the plugin path, on ``frames``.

    Args:
        model: a SAM2Model.
        frames: (N, H, W, 3) uint8.
        prompts: index -> obj id -> :class:`FramePrompt` (as the plugin collects them).
        engine: the plugin engine to time (a fresh one without disk cache if None). Its
            embedding cache is cleared first, so both paths encode every frame.
    """
    import torch
    from sam2_plugins import SAM2VideoPredictor

    from ._embedding_cache import install_forward_cache, uninstall_forward_cache
    from ._engine import SAM2Engine
    from ._history import write_mask

    eng = engine or SAM2Engine(model, "bench")
    labels = np.zeros(frames.shape[:3], np.int32)

    def core() -> int:
        uninstall_forward_cache(model)  # the core alone: no plugin code on the path
        vp = SAM2VideoPredictor(model, apply_postprocessing=True)
        with torch.inference_mode():
            st = vp.init_state(frames)
            for idx in sorted(prompts):
                for oid, fp in prompts[idx].items():
                    vp.add_new_points_or_box(st, frame_idx=idx, obj_id=oid, points=fp.points,
                                             labels=fp.labels, box=fp.box)
            n = 0
            for _, _, lg in vp.propagate_in_video(st, start_frame_idx=min(prompts), direction="both"):
                (lg > 0).cpu().numpy()
                n += 1
        install_forward_cache(model, eng.cache, eng.model_key)
        return n

    def plugin() -> int:
        n = 0
        for res in eng.propagate_sequence(frames, prompts, "both"):
            for oid, m in res.masks.items():
                write_mask(labels, (res.index,), oid, m)
            n += 1
        return n

    out: Dict[str, float] = {"core_s": float("inf"), "plugin_s": float("inf")}
    for _ in range(repeats):  # interleaved, best of each: fair on a busy machine
        for name, fn in (("core_s", core), ("plugin_s", plugin)):
            eng.cache.clear()
            t0 = time.perf_counter()
            n = fn()
            out[name] = min(out[name], time.perf_counter() - t0)
            out["frames"] = float(n)
    out["overhead"] = out["plugin_s"] / out["core_s"] - 1.0
    return out
