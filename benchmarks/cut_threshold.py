"""``python -m benchmarks cut-threshold``: measure the shot-cut detector's similarity threshold.

The detector (:mod:`sam2_plugins.predictors.video.modes.cuts`) flags a frame whose image-feature
descriptor has a cosine similarity below a threshold with the previous frame's. This script
computes that similarity for every pair of consecutive frames of: the cut category of the hard
benchmark (pairs across a cut, and the ordinary pairs of the same videos), long ordinary
synthetic clips, and the DAVIS-2016 frames in ``../shared/data`` (if present), with the shipped
demo model's image encoder (or ``--model/--checkpoint``). It prints and writes JSON: per source
the similarity percentiles, the cut recall and the false flags per 1,000 frames at each threshold
of ``--thresholds``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import numpy as np

__all__ = ["main"]


def _sims(model: Any, frames: Iterable[np.ndarray], detector: Any) -> List[float]:
    import torch

    from sam2_plugins.predictors.video.frames import normalize_frame
    from sam2_plugins.predictors.video.step import TrackingStep

    step = TrackingStep(model)
    out, prev = [], None
    with torch.inference_mode():
        for f in frames:
            feats = step.encode_image(normalize_frame(np.asarray(f), int(model.image_size))[None].to(model.device))
            d = detector.descriptor(feats)
            if prev is not None:
                out.append(float(detector.similarity(d, prev)))
            prev = d
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks cut-threshold", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="nano")
    p.add_argument("--checkpoint", default="demo")
    p.add_argument("--device", default=None)
    p.add_argument("--cut-videos", type=int, default=30, help="videos of the hard cut category")
    p.add_argument("--ordinary-clips", type=int, default=32, help="ordinary synthetic clips of 48 frames")
    p.add_argument("--no-davis", action="store_true")
    p.add_argument("--davis-root", default=None, help="DAVIS-2016 folder (default: ../shared/data/davis2016-val)")
    p.add_argument("--thresholds", default="0.45,0.5,0.55,0.6,0.65")
    p.add_argument("--output", default=None, help="JSON file")
    args = p.parse_args(argv)
    from sam2_plugins.evaluation.hard import make_hard_video
    from sam2_plugins.evaluation.synthetic import make_video
    from sam2_plugins.predictors.video.modes.cuts import CutDetector

    from .datasets import SHARED_DATA
    from .runs import load_bench_model

    model, used = load_bench_model(args.model, args.checkpoint, args.device)
    model.eval()
    det = CutDetector()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    t0 = time.perf_counter()
    cut_sims, cut_other = [], []
    for s in range(args.cut_videos):
        v = make_hard_video("cut", s)
        sims = _sims(model, v.frames, det)
        for t, x in enumerate(sims, start=1):
            (cut_sims if t in v.cuts else cut_other).append(x)
    ordinary = []
    for s in range(args.ordinary_clips):
        frames, _ = make_video(48, 192, 256, 1 + s % 3, 800_000_000 + s)
        ordinary += _sims(model, frames, det)
    davis: List[float] = []
    root = Path(args.davis_root) if args.davis_root else SHARED_DATA / "davis2016-val"
    if not args.no_davis and root.is_dir():
        from PIL import Image

        for seq in sorted((root / "JPEGImages" / "480p").iterdir()):
            davis += _sims(model, (np.asarray(Image.open(f).convert("RGB")) for f in sorted(seq.glob("*.jpg"))), det)

    def stats(x: List[float]) -> Dict[str, Any]:
        a = np.asarray(x)
        if a.size == 0:
            return {"pairs": 0}
        return {"pairs": int(a.size), "min": float(a.min()), "p0.1": float(np.percentile(a, 0.1)),
                "p1": float(np.percentile(a, 1)), "median": float(np.median(a)), "max": float(a.max())}

    res: Dict[str, Any] = {
        "model": args.model, "checkpoint": used, "seconds": None,
        "cut_pairs": stats(cut_sims), "cut_videos_other_pairs": stats(cut_other),
        "ordinary_synthetic": stats(ordinary), "davis2016": stats(davis), "per_threshold": {}}
    for th in thresholds:
        non_cut = cut_other + ordinary + davis
        res["per_threshold"][str(th)] = {
            "cut_recall": float(np.mean(np.asarray(cut_sims) < th)) if cut_sims else None,
            "false_flags_per_1000_frames": {
                "cut_videos_other_pairs": 1000 * float(np.mean(np.asarray(cut_other) < th)) if cut_other else None,
                "ordinary_synthetic": 1000 * float(np.mean(np.asarray(ordinary) < th)) if ordinary else None,
                "davis2016": 1000 * float(np.mean(np.asarray(davis) < th)) if davis else None,
                "all_non_cut": 1000 * float(np.mean(np.asarray(non_cut) < th))}}
    res["seconds"] = time.perf_counter() - t0
    text = json.dumps(res, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
