"""One prepared GPU run: automatic image labeling, batch 1 against batch 16 (issue 18).

Run on a CUDA machine from the repo root (needs torch, numpy, pillow only; no Ray, no FiftyOne)::

    python3 tools/gpu_batch_labeling.py --out OUTDIR [--images 96] [--batch 16] [--budget 75]

Measures ``sam2.1_hiera_tiny`` (random weights, speed only: ``--checkpoint PATH`` for real
ones; with random weights upstream's thresholds keep few masks, so the per-mask CPU
post-processing, which batching does not change, is light), bf16 autocast, on ``--images``
(fewer if batch 1 would not fit the budget) synthetic 480x640 JPEG files labeled by the project's
batched pipeline (:class:`sam2_exec.images.AutoLabeler`: a reader thread pool decoding the next
batch while the model works on the current one, the image encoder on ``batch_size`` images at
once, then the automatic mask generator's point grid per image; ``points_per_side`` 32 as
upstream's default):

* ``auto_label``: images/s at batch 1 and at ``--batch`` after a warm-up, the speed-up, the
  reader's wait (how much decoding the overlap did not hide) and the masks per image;
* ``encoder``: ``set_image_batch`` images/s at batch 1 and ``--batch`` (the stage batching
  speeds up), for context;
* agreement: on the first 8 images, the mean over batch-1 masks of their best IoU with a
  batch-``--batch`` mask (batched bf16 kernels round differently; masks should agree closely).

Writes ``OUTDIR/gpu_batch_labeling.json`` after each measurement and prints it at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS: Dict[str, Any] = {}


def _save(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_batch_labeling.json").write_text(json.dumps(RESULTS, indent=1) + "\n")


def _images(folder: Path, n: int) -> List[str]:
    from PIL import Image

    from sam2_plugins.evaluation.synthetic import make_image

    paths = []
    for i in range(n):
        img, _ = make_image(480, 640, 6, seed=i)
        p = folder / f"img{i:04d}.jpg"
        Image.fromarray(img).save(p, quality=92)
        paths.append(str(p))
    return paths


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _label(labeler: Any, paths: List[str]) -> Dict[str, Any]:
    _sync()
    t0 = time.perf_counter()
    res = labeler(paths)
    _sync()
    sec = time.perf_counter() - t0
    recs = res["images"]
    bad = [r for r in recs if "error" in r]
    if bad:
        raise RuntimeError(f"{len(bad)} images failed, e.g. {bad[0]['error']}")
    return {"images": len(recs), "seconds": sec, "images_per_s": len(recs) / sec,
            "model_seconds": res["model_seconds"], "read_wait_seconds": res["read_wait_seconds"],
            "masks_per_image": float(np.mean([len(r["annotations"]) for r in recs])), "records": recs}


def _matched_iou(a: Dict[str, Any], b: Dict[str, Any], device: str) -> float:
    """Mean over the masks of ``a`` of their best IoU with a mask of ``b`` (1.0 if both empty)."""
    from sam2_plugins.rle import rle_to_mask

    def stack(rec: Dict[str, Any]) -> torch.Tensor:
        ms = [rle_to_mask(ann["segmentation"]).reshape(-1) for ann in rec["annotations"]]
        return torch.as_tensor(np.stack(ms) if ms else np.zeros((0, 1), bool), device=device).float()

    x, y = stack(a), stack(b)
    if len(x) == 0 or len(y) == 0:
        return float(len(x) == len(y))
    inter = x @ y.T
    union = x.sum(1)[:, None] + y.sum(1)[None, :] - inter
    return float((inter / union.clamp(min=1)).max(dim=1).values.mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--model", default="sam2.1_hiera_tiny")
    p.add_argument("--checkpoint", default=None, help="weights file (default: random, speed only)")
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--budget", type=float, default=75.0, help="seconds; sections are skipped past it")
    p.add_argument("--device", default="cuda", help="cuda (the measurement); cpu only to smoke-test the script")
    args = p.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    from sam2_exec.images import AutoLabeler
    from sam2_plugins import SAM2ImagePredictor

    RESULTS.update(device=torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device,
                   torch=torch.__version__, model=args.model,
                   weights=args.checkpoint or "random (speed only)", dtype="bf16", images=args.images,
                   points_per_side=args.points_per_side, batch=args.batch)
    amg = {"points_per_side": args.points_per_side}  # upstream's thresholds (0.8 IoU, 0.95 stability)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="sam2_gpu_label_") as d:
        paths = _images(Path(d), args.images)
        warm = paths[: args.batch]
        runs: Dict[int, Dict[str, Any]] = {}
        for b in (1, args.batch):
            if time.perf_counter() - start > args.budget:
                RESULTS.setdefault("skipped", []).append(f"auto_label batch {b}: over budget")
                break
            try:
                torch.manual_seed(0)
                lab = AutoLabeler(args.model, checkpoint=args.checkpoint, device=args.device, batch_size=b, amg=amg,
                                  readers=4, dtype="bf16")
                w = _label(lab, warm)  # warm-up: CUDA context, kernel selection, allocator
                if b == 1:  # keep both timed runs inside the budget: fewer images if batch 1 is slow
                    per_image = w["seconds"] / len(warm)
                    fit = int((args.budget - (time.perf_counter() - start)) / 3.0 / max(per_image, 1e-3))
                    n = max(args.batch, min(len(paths), fit // args.batch * args.batch))
                    paths = paths[:n]
                    RESULTS["images_timed"] = n
                runs[b] = _label(lab, paths)
                RESULTS.setdefault("auto_label", {})[str(b)] = {k: v for k, v in runs[b].items() if k != "records"}
                if b == args.batch and time.perf_counter() - start < args.budget:
                    enc = {}
                    pred = SAM2ImagePredictor(lab.sam, dtype="bf16")
                    rng = np.random.default_rng(0)
                    imgs = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(args.batch)]
                    for eb in (1, args.batch):
                        pred.set_image_batch(imgs[:eb])
                        _sync()
                        t0, n = time.perf_counter(), 0
                        while time.perf_counter() - t0 < 3.0:
                            pred.set_image_batch(imgs[:eb])
                            n += eb
                        _sync()
                        enc[str(eb)] = n / (time.perf_counter() - t0)
                    RESULTS["encoder_images_per_s"] = enc
                del lab
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception as exc:  # keep what was measured
                RESULTS.setdefault("errors", []).append(f"batch {b}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
            _save(out)
        if 1 in runs and args.batch in runs:
            RESULTS["speedup_batch_vs_1"] = runs[args.batch]["images_per_s"] / runs[1]["images_per_s"]
            k = min(8, args.images)
            pairs = zip(runs[1]["records"][:k], runs[args.batch]["records"][:k])
            RESULTS["mask_matched_iou_batch_vs_1"] = float(np.mean([_matched_iou(x, y, args.device) for x, y in pairs]))
    RESULTS["seconds_total"] = time.perf_counter() - start
    _save(out)
    print(json.dumps(RESULTS, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
