"""One prepared GPU run for the tracking engine: eager vs compiled step vs upstream, FPS.

Run on a CUDA machine from the repo root (upstream ``sam2`` + hydra importable, e.g. from a
carried site folder on ``PYTHONPATH``)::

    python tools/gpu_tracking.py --out OUTDIR [--frames 48] [--budget 420] [--sections video,encoder]

Measures, for ``sam2.1_hiera_tiny`` (random weights: upstream's, loaded strictly into ours) on a
synthetic 854x480 JPEG video, bf16 autocast:

* ``video``: ``propagate_in_video`` frames per second after a warm-up run (paper style: the
  propagation only), 1 and 10 objects, for upstream's predictor, ours eager, ours with
  ``compile=True`` (and ``compile_mode="reduce-overhead"``: CUDA graphs), and upstream's
  ``vos_optimized=True`` when time is left; compile warm-up seconds; the IoU of compiled
  against eager masks;
* ``encoder``: image-encoder throughput (images/s) at batch 1, 4 and 16, ours vs upstream, the
  stage that batched image labelling scales;
* ``syncs``: the eager tracking step (``TrackingStep.track``) runs under
  ``torch.cuda.set_sync_debug_mode("error")`` after a warm-up: any host-device synchronisation
  inside it raises.

Writes ``OUTDIR/gpu_tracking.json`` after every measurement, so a run cut short keeps what it
measured. Each section checks the time budget before starting an expensive configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS: Dict[str, Any] = {}
MASKS: Dict[str, List[torch.Tensor]] = {}
T0 = time.time()
NAME = "sam2.1_hiera_tiny"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _save(out: Path) -> None:
    RESULTS["elapsed_s"] = time.time() - T0
    (out / "gpu_tracking.json").write_text(json.dumps(RESULTS, indent=2, default=str))


def _video(frames: int) -> Tuple[Path, np.ndarray, List[List[float]]]:
    """854x480 frames: 10 coloured squares moving over noise; click positions of the squares."""
    from PIL import Image

    rng = np.random.default_rng(0)
    h, w = 480, 854
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    tmp = Path(tempfile.mkdtemp())
    arr = np.zeros((frames, h, w, 3), np.uint8)
    for t in range(frames):
        v = base.copy()
        for k in range(10):
            cx, cy = 60 + 70 * k + 2 * t, 100 + 25 * k
            v[cy - 20: cy + 20, cx - 20: cx + 20] = (40 * k % 255, 200, 255 - 20 * k)
        arr[t] = v
        Image.fromarray(v).save(tmp / f"{t:05d}.jpg", quality=95)
    clicks = [[60.0 + 70 * k, 100.0 + 25 * k] for k in range(10)]
    return tmp, arr, clicks


def _propagate(pred: Any, video: Any, clicks: List[List[float]], n_obj: int, upstream: bool) -> Tuple[float, List[torch.Tensor]]:
    """Seconds of ``propagate_in_video`` (after init and clicks), and the masks of object 1."""
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        st = pred.init_state(video)
        for k in range(n_obj):
            pts = np.array([clicks[k]], np.float32) if upstream else [clicks[k]]
            lab = np.array([1], np.int32) if upstream else [1]
            pred.add_new_points_or_box(st, frame_idx=0, obj_id=k + 1, points=pts, labels=lab)
        _sync()
        t0 = time.perf_counter()
        masks = [m[0].gt(0).clone() for _, _, m in pred.propagate_in_video(st)]
        _sync()
        return time.perf_counter() - t0, masks


def _iou(a: List[torch.Tensor], b: List[torch.Tensor]) -> float:
    inter = sum(float((x & y).sum()) for x, y in zip(a, b))
    union = sum(float((x | y).sum()) for x, y in zip(a, b))
    return inter / union if union else float("nan")


def video(out: Path, frames: int, budget: float) -> None:
    from sam2.build_sam import build_sam2_video_predictor

    from sam2_plugins import SAM2VideoPredictor
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model
    from tests.ref_utils import UPSTREAM_YAML, build_reference

    folder, arr, clicks = _video(frames)
    ref = build_reference(NAME, video=True).cuda()
    ref.fill_hole_area = 0
    ours = SAM2Model(get_config(NAME))
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours = ours.cuda().eval()
    res: Dict[str, Any] = RESULTS.setdefault("video_bf16_854x480", {"frames": frames, "model": NAME})

    def measure(key: str, make: Callable[[], Any], video_in: Any, upstream: bool, objects=(1, 10)) -> None:
        t0 = time.time()
        pred = make()
        row: Dict[str, Any] = res.setdefault(key, {})
        try:
            for n in objects:
                tw = time.time()
                _propagate(pred, video_in, clicks, n, upstream)  # warm-up (and compilation)
                row[f"warmup_s_{n}obj"] = time.time() - tw
                sec, masks = _propagate(pred, video_in, clicks, n, upstream)
                row[f"fps_{n}obj"] = (frames - 1) / sec
                if n == 1:
                    MASKS[key] = masks
                print(key, n, row, flush=True)
                _save(out)
        except Exception:
            row["error"] = traceback.format_exc()[-3000:]
            print(row["error"], flush=True)
        row["section_s"] = time.time() - t0
        _save(out)

    measure("upstream", lambda: ref, str(folder), True)
    measure("ours_eager", lambda: SAM2VideoPredictor(ours, fill_hole_area=0), arr, False)
    if time.time() - T0 < budget:
        measure("ours_compiled", lambda: SAM2VideoPredictor(ours, fill_hole_area=0, compile=True), arr, False)
    if time.time() - T0 < budget * 0.75:
        measure("ours_compiled_cudagraphs",
                lambda: SAM2VideoPredictor(ours, fill_hole_area=0, compile=True, compile_mode="reduce-overhead"),
                arr, False, objects=(1,))
    masks = MASKS
    for key in ("ours_compiled", "ours_compiled_cudagraphs", "upstream"):
        if key in masks and "ours_eager" in masks:
            res.setdefault("mask_iou_vs_ours_eager", {})[key] = _iou(masks["ours_eager"], masks[key])
    for key in ("ours_eager", "ours_compiled", "ours_compiled_cudagraphs"):
        for n in (1, 10):
            a, b = res.get(key, {}).get(f"fps_{n}obj"), res.get("upstream", {}).get(f"fps_{n}obj")
            if a and b:
                res.setdefault("fps_ratio_vs_upstream", {})[f"{key}_{n}obj"] = a / b
        a, b = res.get(key, {}).get("fps_1obj"), res.get(key, {}).get("fps_10obj")
        if a and b:
            res.setdefault("time_ratio_10obj_over_1obj", {})[key] = a / b
    _save(out)
    if time.time() - T0 < budget * 0.6:
        measure("upstream_vos_optimized",
                lambda: build_sam2_video_predictor(UPSTREAM_YAML[NAME], ckpt_path=None, device="cuda",
                                                   vos_optimized=True).eval(),
                str(folder), True, objects=(1,))
    else:
        res["upstream_vos_optimized"] = {"skipped": "time budget"}
    _save(out)


def syncs(out: Path, frames: int) -> None:
    from sam2_plugins import SAM2VideoPredictor, build_sam2

    _, arr, clicks = _video(min(frames, 24))
    pred = SAM2VideoPredictor(build_sam2(NAME, device="cuda"), fill_hole_area=0)
    engine = pred.engine
    orig = engine.track
    state = {"checked": 0, "frame": 0}

    def checked(*a: Any, **k: Any) -> Any:
        state["frame"] += 1
        if state["frame"] <= 18:  # warm-up: caches of pointer codes and index tensors fill
            return orig(*a, **k)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return orig(*a, **k)
        finally:
            torch.cuda.set_sync_debug_mode(0)
            state["checked"] += 1

    engine.track = checked  # type: ignore[method-assign]
    res: Dict[str, Any] = {}
    try:
        _propagate(pred, arr, clicks, 3, False)
        res["ok"] = True
    except Exception:
        res["ok"] = False
        res["error"] = traceback.format_exc()[-3000:]
    res["frames_checked"] = state["checked"]
    RESULTS["step_sync_free_cuda"] = res
    print("syncs", res, flush=True)
    _save(out)


def encoder(out: Path, budget: float) -> None:
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model
    from tests.ref_utils import build_reference

    ref = build_reference(NAME).cuda().eval()
    ours = SAM2Model(get_config(NAME))
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours = ours.cuda().eval()
    res: Dict[str, Any] = RESULTS.setdefault("image_encoder_bf16_images_per_s", {})
    for bs in (1, 4, 16):
        if time.time() - T0 > budget:
            break
        x = torch.randn(bs, 3, 1024, 1024, device="cuda")
        row = {}
        for key, m in (("ours", ours), ("upstream", ref)):
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                for _ in range(3):
                    m.forward_image(x)
                _sync()
                t0 = time.perf_counter()
                n = max(2, 32 // bs)
                for _ in range(n):
                    m.forward_image(x)
                _sync()
            row[key] = bs * n / (time.perf_counter() - t0)
        res[f"batch_{bs}"] = row
        print("encoder", bs, row, flush=True)
        _save(out)
    if "batch_1" in res and "batch_16" in res:
        res["ours_speedup_batch16_over_batch1"] = res["batch_16"]["ours"] / res["batch_1"]["ours"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/gpu")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which expensive parts are skipped")
    ap.add_argument("--sections", default="syncs,encoder,video")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    from tests.ref_utils import install_torchvision_shim

    try:
        import torchvision  # noqa: F401
    except Exception:
        install_torchvision_shim()
    RESULTS["env"] = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    for sec in a.sections.split(","):
        try:
            if sec == "video":
                video(out, a.frames, a.budget)
            elif sec == "encoder":
                encoder(out, a.budget)
            elif sec == "syncs":
                syncs(out, a.frames)
        except Exception:
            RESULTS.setdefault("errors", {})[sec] = traceback.format_exc()
            print(traceback.format_exc(), flush=True)
        _save(out)
    _save(out)


if __name__ == "__main__":
    main()
