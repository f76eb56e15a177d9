"""Paper-style tracking FPS beside the end-to-end figure, both labelled.

**Paper-style** (upstream's ``sam2/benchmark.py``, behind the FPS column of upstream's README
and the SAM 2 paper): one object, one click on frame 0, then ``propagate_in_video`` over the
whole video several times; only the propagation is timed, after untimed warm-up runs; bf16
autocast on CUDA. Upstream also compiles the model (``vos_optimized=True``), which is not done
here. FPS = timed frames / timed seconds.

**End to end** (what a user waits for, and what ``vos`` reports as ``fps_end_to_end``): opening
the video (``init_state``), the click, and one propagation, from a cold state, on the same
video with the same single object.

``python -m benchmarks.paper_fps [--model sam2.1_hiera_tiny] [--video PATH] [--frames 32]
[--runs 3] [--warmup 1] [--device cuda] [--image-size 1024] [--json out.json]``; it is also a
section of ``python -m benchmarks video-speed`` (``--paper-fps-runs``). Weights do not change
the speed: without ``--checkpoint`` the model has random weights. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any, Dict, Optional, Sequence

import numpy as np

__all__ = ["paper_style_fps", "end_to_end_fps", "measure", "main"]


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def _click(height: int, width: int) -> list:
    # upstream's benchmark clicks (210, 350) on its 960x540 bedroom video; same place, scaled
    return [[210.0 * width / 960.0, 350.0 * height / 540.0]]


def _autocast(device: Any) -> Any:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def paper_style_fps(predictor: Any, video: Any, runs: int = 3, warmup: int = 1) -> Dict[str, Any]:
    """Upstream's ``benchmark.py`` measurement (see the module docstring)."""
    import torch

    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got {runs}, {warmup}")
    dev = predictor.device
    with torch.inference_mode(), _autocast(dev):
        state = predictor.init_state(video)
        h, w = state.video_height, state.video_width
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=_click(h, w), labels=[1])
        total, frames = 0.0, 0
        for i in range(warmup + runs):
            _sync(dev)
            t0 = time.perf_counter()
            n = sum(1 for _ in predictor.propagate_in_video(state))
            _sync(dev)
            if i >= warmup:
                total += time.perf_counter() - t0
                frames += n
    return {"fps": frames / total, "timed_frames": frames, "timed_seconds": total, "runs": runs,
            "warmup_runs": warmup, "objects": 1,
            "label": "paper-style FPS: propagate_in_video only, 1 object, after warm-up runs"
                     + (", bf16 autocast" if getattr(dev, "type", "") == "cuda" else ", fp32 on CPU")
                     + ", not compiled"}


def end_to_end_fps(predictor: Any, video: Any) -> Dict[str, Any]:
    """init_state + one click + one propagation, from a cold state."""
    import torch

    dev = predictor.device
    with torch.inference_mode(), _autocast(dev):
        _sync(dev)
        t0 = time.perf_counter()
        state = predictor.init_state(video)
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1,
                                        points=_click(state.video_height, state.video_width), labels=[1])
        n = sum(1 for _ in predictor.propagate_in_video(state))
        _sync(dev)
        dt = time.perf_counter() - t0
    return {"fps": n / dt, "frames": n, "seconds": dt, "objects": 1,
            "label": "end-to-end FPS: init_state (video opened) + 1 click + 1 propagation, 1 object"}


def _video(path: Optional[str], frames: int, folder: str) -> str:
    """``path`` (its first ``frames`` frames, as JPEGs) or a synthetic 640x480 JPEG folder."""
    from PIL import Image

    out = os.path.join(folder, "frames")
    os.makedirs(out)
    if path:
        from sam2_plugins.io import open_frames

        src = open_frames(path)
        n = min(frames, src.num_frames or frames)
        for i in range(n):
            Image.fromarray(np.asarray(src.get(i))).convert("RGB").save(os.path.join(out, f"{i:05d}.jpg"), quality=95)
    else:
        from .video_speed import write_video

        write_video(out, frames, objects=3)
    return out


def default_video() -> Optional[str]:
    """The shared sample (upstream's benchmark video, bedroom) when present."""
    for root in (os.environ.get("SAM2_PLUGINS_SHARED_DATA"), os.path.join("..", "shared", "data")):
        if root and os.path.isfile(os.path.join(root, "videos", "bedroom.mp4")):
            return os.path.join(root, "videos", "bedroom.mp4")
    return None


def measure(net: Any, video: Optional[str] = None, frames: int = 32, runs: int = 3, warmup: int = 1
            ) -> Dict[str, Any]:
    """Both figures for a built model on the same video (a temporary JPEG folder)."""
    from sam2_plugins import SAM2VideoPredictor

    dev = next(net.parameters()).device
    dtype = "bf16" if dev.type == "cuda" else None
    with tempfile.TemporaryDirectory() as d:
        folder = _video(video, frames, d)
        pred = SAM2VideoPredictor(net, apply_postprocessing=False, fill_hole_area=0, dtype=dtype)
        e2e = end_to_end_fps(pred, folder)  # first: a cold start is part of what a user waits for
        paper = paper_style_fps(pred, folder, runs, warmup)
    return {"paper_style": paper, "end_to_end": e2e, "video": os.path.basename(video) if video else "synthetic",
            "frames": e2e["frames"], "device": str(dev), "dtype": "bf16" if dtype else "fp32",
            "ratio_paper_over_end_to_end": paper["fps"] / e2e["fps"]}


def _build(name: str, image_size: int, device: str, checkpoint: Optional[str]) -> Any:
    import torch

    from sam2_plugins import build_sam2
    from sam2_plugins.configs import get_config

    torch.manual_seed(0)
    cfg = get_config(name)
    if image_size != cfg.image_size:
        cfg = replace(cfg, image_size=image_size)
    return build_sam2(cfg, checkpoint=checkpoint, device=device, apply_postprocessing=False)


def print_report(r: Dict[str, Any]) -> None:
    print(f"{r['video']} ({r['frames']} frames) on {r['device']}, {r['dtype']}:")
    for key in ("paper_style", "end_to_end"):
        print(f"  {r[key]['fps']:8.2f} fps  {r[key]['label']}")
    print(f"  ratio paper-style / end-to-end: {r['ratio_paper_over_end_to_end']:.2f}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.paper_fps", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--checkpoint", default=None, help="weights (speed does not depend on them; default random)")
    ap.add_argument("--video", default="default", help="video file or folder ('default': the shared bedroom.mp4 if "
                    "present, 'synthetic': generated)")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.frames < 1 or a.runs < 1 or a.warmup < 0:
        ap.error("need --frames >= 1, --runs >= 1, --warmup >= 0")
    video = default_video() if a.video == "default" else (None if a.video == "synthetic" else a.video)
    net = _build(a.model, a.image_size, a.device or ("cuda" if _cuda() else "cpu"), a.checkpoint)
    r = measure(net, video, a.frames, a.runs, a.warmup)
    r["model"], r["image_size"] = a.model, a.image_size
    print_report(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
