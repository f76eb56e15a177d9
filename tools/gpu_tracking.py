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
* ``finetune``: training steps per second of the Lightning module's clip forward + loss +
  backward + AdamW (``SAM2FineTuner``, random-init tiny 2.1, 8-frame clips of 3 objects at
  1024², bf16 autocast as Lightning's ``bf16-mixed``) and the peak GPU memory;
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
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS: Dict[str, Any] = {}
CFG: Dict[str, Any] = {"device": "cuda", "size": 1024, "backend": "inductor", "objects": (1, 10), "batches": (1, 4, 16)}
MASKS: Dict[str, List[torch.Tensor]] = {}
T0 = time.time()
NAME = "sam2.1_hiera_tiny"


def _sync() -> None:
    if CFG["device"] == "cuda":
        torch.cuda.synchronize()


def _autocast() -> Any:
    return torch.autocast(CFG["device"], dtype=torch.bfloat16)


def _extra() -> tuple:
    return () if CFG["size"] == 1024 else (f"++model.image_size={CFG['size']}",)


def _our_model(ref: torch.nn.Module) -> torch.nn.Module:
    from dataclasses import replace

    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    ours = SAM2Model(replace(get_config(NAME), image_size=CFG["size"]))
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours.to(CFG["device"]).eval()


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


def _propagate(pred: Any, video: Any, clicks: List[List[float]], n_obj: int,
               upstream: bool) -> Tuple[float, List[torch.Tensor]]:
    """Seconds of ``propagate_in_video`` (after init and clicks), and the masks of object 1."""
    with torch.inference_mode(), _autocast():
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
    from tests.ref_utils import UPSTREAM_YAML, build_reference

    folder, arr, clicks = _video(frames)
    ref = build_reference(NAME, video=True, extra_overrides=_extra()).to(CFG["device"])
    ref.fill_hole_area = 0
    ours = _our_model(ref)
    res: Dict[str, Any] = RESULTS.setdefault("video_bf16_854x480", {"frames": frames, "model": NAME})

    def measure(key: str, make: Callable[[], Any], video_in: Any, upstream: bool, objects: Any = None) -> None:
        objects = CFG["objects"] if objects is None else objects
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

    want = CFG.get("video_configs")

    def on(key: str, budget_frac: float) -> bool:
        return key in want if want else time.time() - T0 < budget * budget_frac

    if on("upstream", 10):
        measure("upstream", lambda: ref, str(folder), True)
    if on("ours_eager", 10):
        measure("ours_eager", lambda: SAM2VideoPredictor(ours, fill_hole_area=0), arr, False)
    if on("ours_compiled", 1.0):
        measure("ours_compiled", lambda: SAM2VideoPredictor(ours, fill_hole_area=0, compile=True,
                                                            compile_backend=CFG["backend"]), arr, False)
    if on("ours_compiled_cudagraphs", 0.75):
        measure("ours_compiled_cudagraphs",
                lambda: SAM2VideoPredictor(ours, fill_hole_area=0, compile=True, compile_backend=CFG["backend"],
                                           compile_mode="reduce-overhead" if CFG["device"] == "cuda" else None),
                arr, False, objects=(1,))
    masks = MASKS
    for key in ("ours_compiled", "ours_compiled_cudagraphs", "upstream"):
        if key in masks and "ours_eager" in masks:
            res.setdefault("mask_iou_vs_ours_eager", {})[key] = _iou(masks["ours_eager"], masks[key])
    for key in ("ours_eager", "ours_compiled", "ours_compiled_cudagraphs"):
        for n in CFG["objects"]:
            a, b = res.get(key, {}).get(f"fps_{n}obj"), res.get("upstream", {}).get(f"fps_{n}obj")
            if a and b:
                res.setdefault("fps_ratio_vs_upstream", {})[f"{key}_{n}obj"] = a / b
        a, b = res.get(key, {}).get("fps_1obj"), res.get(key, {}).get(f"fps_{CFG['objects'][-1]}obj")
        if a and b:
            res.setdefault("time_ratio_10obj_over_1obj", {})[key] = a / b
    _save(out)
    if on("upstream_vos_optimized", 0.6):
        measure("upstream_vos_optimized",
                lambda: build_sam2_video_predictor(UPSTREAM_YAML[NAME], ckpt_path=None, device=CFG["device"],
                                                   vos_optimized=True, hydra_overrides_extra=list(_extra())).eval(),
                str(folder), True, objects=(1,))
    else:
        res["upstream_vos_optimized"] = {"skipped": "time budget"}
    _save(out)


def profile(out: Path, frames: int) -> None:
    """Where a frame of eager tracking goes: cProfile of one timed propagation (1 object), and
    the engine's per-stage seconds (each stage synchronised, so the total is slower)."""
    import cProfile
    import io
    import pstats

    from sam2_plugins import SAM2VideoPredictor
    from tests.ref_utils import build_reference

    _, arr, clicks = _video(frames)
    ours = _our_model(build_reference(NAME, extra_overrides=_extra()))
    pred = SAM2VideoPredictor(ours, fill_hole_area=0)
    _propagate(pred, arr, clicks, 1, False)
    prof = cProfile.Profile()
    prof.enable()
    sec, _ = _propagate(pred, arr, clicks, 1, False)
    prof.disable()
    res: Dict[str, Any] = {"fps_1obj": (frames - 1) / sec}
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(28)
        res[f"top_{key}"] = buf.getvalue()[-6000:]
    pred.engine.timed, pred.engine.stats = True, {}
    sec, _ = _propagate(pred, arr, clicks, 1, False)
    res["stages_s_synchronised"] = dict(pred.engine.stats)
    res["fps_1obj_stages_synchronised"] = (frames - 1) / sec
    RESULTS["profile_eager_1obj"] = res
    print("profile", res["fps_1obj"], res["stages_s_synchronised"], flush=True)
    print(res["top_tottime"][:4000], flush=True)
    _save(out)


def syncs(out: Path, frames: int) -> None:
    from sam2_plugins import SAM2VideoPredictor, build_sam2

    _, arr, clicks = _video(min(frames, 24))
    from dataclasses import replace

    from sam2_plugins.configs import get_config

    pred = SAM2VideoPredictor(build_sam2(replace(get_config(NAME), image_size=CFG["size"]), device=CFG["device"]),
                              fill_hole_area=0)
    engine = pred.engine
    orig = engine.track
    state = {"checked": 0, "frame": 0}

    def checked(*a: Any, **k: Any) -> Any:
        state["frame"] += 1
        if state["frame"] <= 18:  # warm-up: caches of pointer codes and index tensors fill
            return orig(*a, **k)
        if CFG["device"] == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            return orig(*a, **k)
        finally:
            if CFG["device"] == "cuda":
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


def finetune(out: Path, steps: int = 6) -> None:
    from dataclasses import replace

    from lightning_module.module import SAM2FineTuner
    from lightning_module.tracking import ClipBatch
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    dev = CFG["device"]
    module = SAM2FineTuner(model=SAM2Model(replace(get_config(NAME), image_size=CFG["size"])).train(),
                           lr=1e-5, vision_lr=1e-5).to(dev).train()
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)
    T, n_obj, S = (8 if dev == "cuda" else 3), 3, CFG["size"]
    g = torch.Generator().manual_seed(0)
    images = torch.randn(T, 1, 3, S, S, generator=g)
    images = images.to(dev)
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    r = S // 11
    masks = torch.stack([torch.stack([((xx - 2 * r - (3 * r // 2) * k - t) ** 2 + (yy - S // 2) ** 2 < r ** 2)
                                      for k in range(n_obj)]) for t in range(T)]).to(dev)
    batch = ClipBatch(images, masks, torch.zeros(n_obj, dtype=torch.long).to(dev))
    res: Dict[str, Any] = {"model": NAME, "clip_frames": T, "objects": n_obj, "image_size": S,
                           "precision": "bf16 autocast"}
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step() -> float:
        with _autocast(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log() outside a Trainer
            loss = module.training_step(batch, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    if dev != "cuda":
        steps = 1
    for _ in range(2 if dev == "cuda" else 1):  # warm-up
        step()
    _sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        res["last_loss"] = step()
    _sync()
    res["steps_per_s"] = steps / (time.perf_counter() - t0)
    if dev == "cuda":
        res["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    RESULTS["finetune_tiny_1024_bf16"] = res
    print("finetune", res, flush=True)
    _save(out)


def encoder(out: Path, budget: float) -> None:
    from tests.ref_utils import build_reference

    ref = build_reference(NAME, extra_overrides=_extra()).to(CFG["device"]).eval()
    ours = _our_model(ref)
    res: Dict[str, Any] = RESULTS.setdefault("image_encoder_bf16_images_per_s", {})
    for bs in CFG["batches"]:
        if time.time() - T0 > budget:
            break
        x = torch.randn(bs, 3, CFG["size"], CFG["size"], device=CFG["device"])
        row = {}
        for key, m in (("ours", ours), ("upstream", ref)):
            with torch.inference_mode(), _autocast():
                for _ in range(3 if CFG["device"] == "cuda" else 1):
                    m.forward_image(x)
                _sync()
                t0 = time.perf_counter()
                n = max(2, 32 // bs) if CFG["device"] == "cuda" else 1
                for _ in range(n):
                    m.forward_image(x)
                _sync()
            row[key] = bs * n / (time.perf_counter() - t0)
        res[f"batch_{bs}"] = row
        print("encoder", bs, row, flush=True)
        _save(out)
    last = f"batch_{CFG['batches'][-1]}"
    if "batch_1" in res and last in res:
        res[f"ours_speedup_{last}_over_batch_1"] = res[last]["ours"] / res["batch_1"]["ours"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/gpu")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which expensive parts are skipped")
    ap.add_argument("--sections", default="syncs,encoder,finetune,video")
    ap.add_argument("--video-configs", default="",
                    help="comma list of video configurations to run regardless of the budget "
                         "(upstream, ours_eager, ours_compiled, ours_compiled_cudagraphs, upstream_vos_optimized)")
    ap.add_argument("--smoke", action="store_true",
                    help="a CPU run of every section at 256² with few frames (checks the script, not speed)")
    a = ap.parse_args()
    if a.video_configs:
        CFG["video_configs"] = a.video_configs.split(",")
    if a.smoke:
        CFG.update(device="cpu", size=256, backend="eager", objects=(1, 2), batches=(1, 2))
        a.frames = min(a.frames, 3)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    if "finetune" in a.sections:
        import lightning_module.module  # noqa: F401  (before any torchvision stand-in: torchmetrics probes it)
    from tests.ref_utils import install_torchvision_shim

    try:
        import torchvision  # noqa: F401
    except Exception:
        install_torchvision_shim()
    RESULTS["env"] = {"torch": torch.__version__, "config": dict(CFG),
                      "gpu": torch.cuda.get_device_name(0) if CFG["device"] == "cuda" else "cpu (smoke run)"}
    for sec in a.sections.split(","):
        try:
            if sec == "video":
                video(out, a.frames, a.budget)
            elif sec == "encoder":
                encoder(out, a.budget)
            elif sec == "syncs":
                syncs(out, a.frames)
            elif sec == "finetune":
                finetune(out)
            elif sec == "profile":
                profile(out, a.frames)
        except Exception:
            RESULTS.setdefault("errors", {})[sec] = traceback.format_exc()
            print(traceback.format_exc(), flush=True)
        _save(out)
    _save(out)


if __name__ == "__main__":
    main()
