"""Video tracking speed: ours vs upstream, per-stage times, and object scaling.

``python -m benchmarks.video_speed [--model sam2.1_hiera_tiny] [--frames 16] [--objects 3]
[--scaling 1 3 10] [--scaling-frames 6] [--image-size 1024] [--device cpu] [--threads N]
[--no-upstream] [--no-bf16] [--iou-video PATH] [--iou-frames 6] [--compiled] [--json out.json]``

* **ours vs upstream** (same random weights: upstream's, loaded strictly into ours; the same
  JPEG folder): ``init_state`` + one click per object on frame 0 + ``propagate_in_video``,
  wall time, for upstream's default (fp32 on CPU), ours in fp32, and ours under bf16 autocast;
  ratios ours / upstream. Upstream runs as its video builder makes it (``apply_postprocessing``);
  its CUDA-only hole filling is off on both sides.
* **bf16 vs fp32 masks**: mean IoU of our bf16 masks against our fp32 masks on the same run,
  and (``--iou-video``, default the shared sample ``videos/bedroom.mp4`` when present) on a
  real video: ``--iou-frames`` frames, 3 clicks on frame 0.
* **per stage**: image encoder, memory attention, mask decoder, memory encoder (ours, from the
  tracker's timers; upstream, from forward hooks on the same four modules).
* **default**: ``ratio_default_vs_upstream_default`` is the ratio of our default
  (``dtype="auto"``: bf16 on CPUs with native bf16 from 512² inputs, else fp32) to upstream's.
* **scaling**: ours with 1 / 3 / 10 objects (time per frame, and the ratio to 1 object), with
  ``dtype="auto"`` (bf16 on CUDA and on CPUs with native bf16 dot products, else fp32).
* **compiled** (``--compiled``): ours in fp32 with ``compile=True`` beside the eager fp32 run
  (after one untimed session that compiles), its ratio to upstream, and the mask IoU against
  eager.
* on CUDA, FPS = tracked frames per second of ``propagate_in_video`` (after a warm-up).
* **paper-style vs end-to-end FPS** (``--paper-fps-runs N``, default 3; 0 skips it): a separate
  section from :mod:`benchmarks.paper_fps`: upstream's ``benchmark.py`` measurement
  (propagation only, 1 object, warm-up runs, bf16 on CUDA) beside the end-to-end figure
  (init_state + click + propagation) on the same video, both labelled.

The whole thing is heavy on a CPU (tiny at 1024² takes seconds per frame): ``--frames 4
--scaling-frames 3 --image-size 512`` gives a smoke run. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def write_video(folder: str, frames: int, h: int = 480, w: int = 640, objects: int = 10) -> None:
    """A JPEG folder of ``objects`` coloured squares moving over a textured background."""
    from PIL import Image

    rng = np.random.default_rng(0)
    bg = (rng.random((h // 8, w // 8, 3)) * 90).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    side = h // 8
    for t in range(frames):
        f = bg.copy()
        for k in range(objects):
            y = 10 + (k % 5) * (h // 5)
            x = int((w - side) * (0.5 + 0.4 * np.sin(0.15 * t + 1.3 * k)))
            f[y:y + side, x:x + side] = ((60 + 37 * k) % 256, (200 - 23 * k) % 256, (90 + 71 * k) % 256)
        Image.fromarray(f).save(os.path.join(folder, f"{t:05d}.jpg"), quality=95)


def clicks(objects: int, h: int = 480, w: int = 640) -> List[Tuple[int, List[List[float]]]]:
    side = h // 8
    out = []
    for k in range(objects):
        y = 10 + (k % 5) * (h // 5) + side // 2
        x = int((w - side) * (0.5 + 0.4 * np.sin(1.3 * k))) + side // 2
        out.append((k + 1, [[float(x), float(y)]]))
    return out


def session(pred: Any, video: str, objects: int, dev: torch.device, ctx: Callable[[], Any]
            ) -> Tuple[Dict[str, float], Dict[int, torch.Tensor]]:
    """init + clicks + propagate; returns timings and the binary masks per frame."""
    masks: Dict[int, torch.Tensor] = {}
    with torch.inference_mode(), ctx():
        _sync(dev)
        c0, t0 = time.process_time(), time.perf_counter()
        s = pred.init_state(video)
        _sync(dev)
        t1 = time.perf_counter()
        for oid, pts in clicks(objects):
            pred.add_new_points_or_box(s, 0, oid, points=pts, labels=[1])
        _sync(dev)
        t2 = time.perf_counter()
        n = 0
        for f, _, m in pred.propagate_in_video(s):
            masks[f] = (m > 0).cpu()
            n += 1
        _sync(dev)
        t3 = time.perf_counter()
    # process CPU time: on a busy machine with one thread, a better estimate of the
    # uncontended wall time than the wall clock
    return {"init_s": t1 - t0, "prompts_s": t2 - t1, "propagate_s": t3 - t2, "total_s": t3 - t0,
            "cpu_s": time.process_time() - c0, "frames": n, "propagate_fps": n / (t3 - t2)}, masks


def stage_hooks(model: torch.nn.Module, stats: Dict[str, float], dev: torch.device) -> List[Any]:
    """Accumulate wall time per stage (upstream's modules) into ``stats``; returns the handles."""
    names = {"image_encoder": "image_encoder", "memory_attention": "memory_attention",
             "sam_mask_decoder": "mask_decoder", "memory_encoder": "memory_encoder"}
    handles, start = [], {}
    for attr, key in names.items():
        mod = getattr(model, attr, None)
        if mod is None:
            continue

        def pre(m: Any, a: Any, key: str = key) -> None:
            _sync(dev)
            start[key] = time.perf_counter()

        def post(m: Any, a: Any, o: Any, key: str = key) -> None:
            _sync(dev)
            stats[key] = stats.get(key, 0.0) + time.perf_counter() - start[key]

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    return handles


def sample_video_iou(net: Any, video: str, frames: int, dev: torch.device) -> Dict[str, Any]:
    """Mean IoU of our bf16 masks vs our fp32 masks on the first ``frames`` frames of a real
    video (3 clicks on frame 0, at a quarter, half and three quarters of the width)."""
    from sam2_plugins.io import open_frames
    from sam2_plugins.predictors.video import SAM2VideoPredictor

    src = open_frames(video)
    arr = np.stack([np.asarray(src[i]) for i in range(frames)])
    h, w = arr.shape[1:3]
    pts = [(k + 1, [[w * (k + 1) / 4.0, h / 2.0]]) for k in range(3)]
    out: Dict[str, Any] = {"video": os.path.basename(video), "frames": frames, "objects": 3}
    runs = {}
    for name, dtype in (("fp32", None), ("bf16", "bf16")):
        pred = SAM2VideoPredictor(net, apply_postprocessing=True, fill_hole_area=0, dtype=dtype)
        masks: Dict[int, torch.Tensor] = {}
        with torch.inference_mode():
            s = pred.init_state(arr)
            for oid, p in pts:
                pred.add_new_points_or_box(s, 0, oid, points=p, labels=[1])
            for f, _, m in pred.propagate_in_video(s):
                masks[f] = (m > 0).cpu()
        runs[name] = masks
    out["iou_bf16_vs_fp32"] = mean_iou(runs["fp32"], runs["bf16"])
    out["fg_fraction_fp32"] = float(np.mean([m.float().mean().item() for m in runs["fp32"].values()]))
    return out


def default_iou_video() -> Optional[str]:
    """The shared sample video (``../shared/data/videos/bedroom.mp4`` from the repo root)."""
    for root in (os.environ.get("SAM2_PLUGINS_DATA"), os.path.join("..", "shared", "data")):
        if root and os.path.isfile(os.path.join(root, "videos", "bedroom.mp4")):
            return os.path.join(root, "videos", "bedroom.mp4")
    return None


def mean_iou(a: Dict[int, torch.Tensor], b: Dict[int, torch.Tensor]) -> float:
    ious = []
    for f in a:
        inter = (a[f] & b[f]).flatten(1).sum(1).float()
        union = (a[f] | b[f]).flatten(1).sum(1).float()
        ious += [1.0 if u == 0 else float(i / u) for i, u in zip(inter, union)]
    return float(np.mean(ious)) if ious else float("nan")


def build(name: str, image_size: int, dev: torch.device, upstream: bool) -> Tuple[Any, Any]:
    """(upstream video predictor or None, our model with the same weights)."""
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model

    ref = None
    cfg = replace(get_config(name), image_size=image_size)
    if upstream:
        try:
            sys.path.insert(0, os.getcwd())
            from tests.ref_utils import build_reference

            extra = () if image_size == 1024 else (f"++model.image_size={image_size}",)
            ref = build_reference(cfg.name, video=True, extra_overrides=extra).to(dev)
        except Exception as e:  # missing sam2 / hydra, or not run from the repo root
            print(f"upstream not available ({type(e).__name__}: {e}); timing ours only")
    torch.manual_seed(0)
    model = SAM2Model(cfg)
    if ref is not None:
        model.load_state_dict(ref.state_dict(), strict=True)
    return ref, model.to(dev).eval()


def run(model: str = "sam2.1_hiera_tiny", frames: int = 16, objects: int = 3,
        scaling: Sequence[int] = (1, 3, 10), scaling_frames: int = 6, image_size: int = 1024,
        device: str = "cpu", threads: Optional[int] = None, upstream: bool = True,
        bf16: bool = True, iou_video: Optional[str] = None, iou_frames: int = 6,
        compiled: bool = False, compile_backend: str = "inductor") -> Dict[str, Any]:
    from sam2_plugins.modeling.attention_cpu import cpu_has_fast_bf16
    from sam2_plugins.predictors.video import SAM2VideoPredictor

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    ref, net = build(model, image_size, dev, upstream)
    res: Dict[str, Any] = {"model": model, "image_size": image_size, "device": str(dev),
                           "frames": frames, "objects": objects, "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                           "cpu_native_bf16": cpu_has_fast_bf16()}
    null = lambda: torch.autocast(dev.type, enabled=False)  # noqa: E731
    bf = lambda: torch.autocast(dev.type, dtype=torch.bfloat16)  # noqa: E731
    with tempfile.TemporaryDirectory() as d:
        write_video(d, max(frames, scaling_frames), objects=max([objects, *scaling]))
        vid = os.path.join(d, "main")
        os.makedirs(vid)
        for i in range(frames):
            os.link(os.path.join(d, f"{i:05d}.jpg"), os.path.join(vid, f"{i:05d}.jpg"))
        ours32 = SAM2VideoPredictor(net, apply_postprocessing=True, fill_hole_area=0, dtype=None)
        if dev.type == "cuda":  # warm-up (kernels, allocator) on a 2-frame run
            session(ours32, vid, 1, dev, null)
        if ref is not None:
            ref.fill_hole_area = 0
            up_stats: Dict[str, float] = {}
            handles = stage_hooks(ref, up_stats, dev)
            res["upstream_fp32"], _ = session(ref, vid, objects, dev, null)
            res["upstream_fp32_stages_s"] = dict(up_stats)
            for hd in handles:
                hd.remove()
            if bf16 and dev.type == "cuda":
                res["upstream_bf16"], _ = session(ref, vid, objects, dev, bf)
        ours32.engine.timed, ours32.engine.stats = True, {}
        res["ours_fp32"], m32 = session(ours32, vid, objects, dev, null)
        res["ours_fp32_stages_s"] = dict(ours32.engine.stats)
        if compiled:
            res.update(compiled_run(net, vid, objects, dev, null, m32, compile_backend))
        if bf16:
            ours_bf = SAM2VideoPredictor(net, apply_postprocessing=True, fill_hole_area=0, dtype="bf16")
            ours_bf.engine.timed, ours_bf.engine.stats = True, {}
            res["ours_bf16"], mbf = session(ours_bf, vid, objects, dev, null)
            res["ours_bf16_stages_s"] = dict(ours_bf.engine.stats)
            res["iou_bf16_vs_fp32"] = mean_iou(m32, mbf)
        if ref is not None:
            up = res["upstream_fp32"]["total_s"]
            res["ratio_fp32"] = res["ours_fp32"]["total_s"] / up
            if compiled:
                res["ratio_compiled_fp32"] = res["ours_compiled_fp32"]["total_s"] / up
            res["ratio_fp32_cpu_time"] = res["ours_fp32"]["cpu_s"] / res["upstream_fp32"]["cpu_s"]
            if bf16:
                res["ratio_bf16_vs_upstream_default"] = res["ours_bf16"]["total_s"] / up
                res["ratio_bf16_vs_upstream_default_cpu_time"] = (res["ours_bf16"]["cpu_s"]
                                                                  / res["upstream_fp32"]["cpu_s"])
        # what our default (dtype="auto") resolves to for this model, device and CPU
        from sam2_plugins.predictors.video.step import tracking_autocast

        with tracking_autocast(dev, "auto", image_size):
            auto_bf16 = torch.is_autocast_enabled(dev.type)
        res["ours_default_dtype"] = "bf16" if auto_bf16 else "fp32"
        key = "ratio_bf16_vs_upstream_default" if auto_bf16 else "ratio_fp32"
        if key in res:
            res["ratio_default_vs_upstream_default"] = res[key]
        scale_vid = os.path.join(d, "scale")
        os.makedirs(scale_vid)
        for i in range(scaling_frames):
            os.link(os.path.join(d, f"{i:05d}.jpg"), os.path.join(scale_vid, f"{i:05d}.jpg"))
        fast = SAM2VideoPredictor(net, apply_postprocessing=True, fill_hole_area=0,
                                  dtype="auto" if bf16 else None)
        res["scaling_dtype"] = ("bf16" if bf16 and (dev.type == "cuda" or cpu_has_fast_bf16())
                                else "fp32")
        res["scaling_frames"] = scaling_frames
        res["scaling"] = {}
        for k in scaling:
            t, _ = session(fast, scale_vid, k, dev, null)
            res["scaling"][k] = {"propagate_s_per_frame": t["propagate_s"] / max(1, t["frames"]),
                                 "fps": t["propagate_fps"]}
        base = res["scaling"][scaling[0]]["propagate_s_per_frame"]
        for k in scaling:
            res["scaling"][k]["ratio_to_first"] = res["scaling"][k]["propagate_s_per_frame"] / base
    if bf16 and iou_video:
        res["sample_video"] = sample_video_iou(net, iou_video, iou_frames, dev)
    return res


def compiled_run(net: torch.nn.Module, vid: str, objects: int, dev: torch.device, ctx: Callable[[], Any],
                 eager_masks: Dict[int, torch.Tensor], backend: str = "inductor") -> Dict[str, Any]:
    """Ours with ``compile=True`` (fp32), beside the eager fp32 run: a first session compiles
    (its wall time is reported as ``compile_warmup_s``), the second is timed."""
    from sam2_plugins.predictors.video import SAM2VideoPredictor

    comp = SAM2VideoPredictor(net, apply_postprocessing=True, fill_hole_area=0, dtype=None, compile=True,
                              compile_backend=backend)
    t0 = time.perf_counter()
    session(comp, vid, objects, dev, ctx)
    out: Dict[str, Any] = {"compile_warmup_s": time.perf_counter() - t0}
    comp.engine.timed, comp.engine.stats = True, {}
    out["ours_compiled_fp32"], masks = session(comp, vid, objects, dev, ctx)
    out["ours_compiled_fp32_stages_s"] = dict(comp.engine.stats)
    out["iou_compiled_vs_eager"] = mean_iou(eager_masks, masks)
    return out


def print_report(r: Dict[str, Any]) -> None:
    print(f"{r['model']} at {r['image_size']}², {r['objects']} objects, {r['frames']} frames, "
          f"{r['device']} ({r['threads']} threads, torch {r['torch']})")
    for key in ("upstream_fp32", "upstream_bf16", "ours_fp32", "ours_compiled_fp32", "ours_bf16"):
        if key in r:
            t = r[key]
            print(f"  {key:>14}: total {t['total_s']:7.2f} s, cpu {t['cpu_s']:7.2f} s (init {t['init_s']:.2f}, prompts "
                  f"{t['prompts_s']:.2f}, propagate {t['propagate_s']:.2f}; {t['propagate_fps']:.2f} fps)")
    for key in ("ratio_default_vs_upstream_default", "ours_default_dtype", "ratio_fp32",
                "ratio_fp32_cpu_time", "ratio_bf16_vs_upstream_default",
                "ratio_bf16_vs_upstream_default_cpu_time", "iou_bf16_vs_fp32", "ratio_compiled_fp32",
                "iou_compiled_vs_eager", "compile_warmup_s"):
        if key in r:
            print(f"  {key}: {r[key]:.3f}" if isinstance(r[key], float) else f"  {key}: {r[key]}")
    for key in ("upstream_fp32_stages_s", "ours_fp32_stages_s", "ours_compiled_fp32_stages_s", "ours_bf16_stages_s"):
        if key in r:
            print(f"  {key}: " + ", ".join(f"{k} {v:.2f}" for k, v in r[key].items()))
    if "sample_video" in r:
        sv = r["sample_video"]
        print(f"  {sv['video']} ({sv['frames']} frames, {sv['objects']} objects): IoU bf16 vs fp32 "
              f"{sv['iou_bf16_vs_fp32']:.4f}")
    if "scaling" in r:
        print(f"  scaling ({r.get('scaling_dtype')}, {r.get('scaling_frames')} frames):")
    for k, v in r.get("scaling", {}).items():
        print(f"  {k:>3} objects: {v['propagate_s_per_frame'] * 1000:8.1f} ms/frame ({v['fps']:.1f} fps), "
              f"x{v['ratio_to_first']:.2f}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.video_speed", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--scaling", type=int, nargs="*", default=[1, 3, 10])
    ap.add_argument("--scaling-frames", type=int, default=6)
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-upstream", action="store_true")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--iou-video", default="default",
                    help="real video for the bf16-vs-fp32 IoU ('default': the shared sample, 'none': skip)")
    ap.add_argument("--iou-frames", type=int, default=6)
    ap.add_argument("--compiled", action="store_true",
                    help="also time ours with compile=True (torch.compile of the image encoder and the step)")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--json", default=None)
    ap.add_argument("--paper-fps-runs", type=int, default=3,
                    help="timed runs of the paper-style FPS section (0: skip it)")
    ap.add_argument("--paper-fps-frames", type=int, default=None, help="frames for it (default: --frames)")
    a = ap.parse_args(argv)
    if not a.scaling:
        a.scaling = [1]
    iou_video = default_iou_video() if a.iou_video == "default" else (
        None if a.iou_video.lower() == "none" else a.iou_video)
    r = run(a.model, a.frames, a.objects, a.scaling, a.scaling_frames, a.image_size, a.device,
            a.threads, not a.no_upstream, not a.no_bf16, iou_video, a.iou_frames, a.compiled,
            a.compile_backend)
    print_report(r)
    if a.paper_fps_runs > 0:
        r["paper_fps"] = paper_fps_section(a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2, default=str)
    return 0


def paper_fps_section(a: argparse.Namespace) -> Dict[str, Any]:
    """Paper-style FPS beside the end-to-end figure (:mod:`benchmarks.paper_fps`), on the shared
    bedroom video when present (upstream's benchmark video), else a synthetic one."""
    from . import paper_fps

    net = paper_fps._build(a.model, a.image_size, a.device, None)
    out = paper_fps.measure(net, paper_fps.default_video(), a.paper_fps_frames or a.frames, a.paper_fps_runs, 1)
    print("  paper-style vs end-to-end (1 object):")
    for key in ("paper_style", "end_to_end"):
        print(f"    {out[key]['fps']:8.2f} fps  {out[key]['label']}")
    return out


if __name__ == "__main__":
    sys.exit(main())
