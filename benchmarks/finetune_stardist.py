"""Fine-tune the demo model on stardist nuclei and score it before / after on held-out data.

    python -m benchmarks finetune-stardist [--out-dir DIR] [--json FILE] [--threads 1]
    python -m benchmarks.finetune_stardist --skip-3d            # only the 2D recipe

Reproduces the before/after figures of ``lightning_module/README.md`` ("Fine-tune on your own
nuclei / cells"), running the documented recipes as a user does: the shipped configs through
``python -m lightning_module.cli fit`` in a subprocess, then the exported file through the
core's public predictors.

2D: ``stardist/img2d.tif`` (512², 125 nuclei). Training images: the top half and the
bottom-left quadrant; held out: the bottom-right quadrant (29 nuclei), scored at native scale
(the quadrant is the nano model's 256² input). Metric: mean IoU of the mask SAM 2 returns for
one click at each nucleus's centre (the pixel farthest from its border), with
``SAM2ImagePredictor`` (3 masks, the highest predicted IoU kept).

3D: ``stardist/img3d.tif`` (31 × 61 × 57). Training planes: z 0-15; held out: z 16-30.
Metric: Z-propagation J&F with ``SAM2VideoPredictor`` over the held-out sub-volume: each nucleus
gets its ground-truth mask on the first plane where it appears, is propagated to the last
plane, and is scored (DAVIS J and F) on every plane after the prompt, including the planes
where it has ended (there an empty prediction scores 1). ``J_present`` is J over the planes
where the nucleus is present only (an empty prediction scores 0 there).

Needs ``../shared/data/stardist`` (or ``--data``). Wall times depend on the machine and its
load; the JSON records steps, seconds, threads and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SAM2_PLUGINS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "stardist"
# the Lightning package: lightning_module in a checkout, sam2_plugins_lightning installed from the wheel
LIGHTNING = "lightning_module" if __package__ == "benchmarks" else "sam2_plugins_lightning"
CONFIGS = ROOT / LIGHTNING / "configs"  # package data of the installed wheel too
CONFIG_2D = CONFIGS / "finetune_nuclei.yaml"
CONFIG_3D = CONFIGS / "finetune_nuclei_3d.yaml"
Z_SPLIT = 16

__all__ = ["prepare_data", "click_miou", "z_propagation_jf", "train", "main"]


def prepare_data(src: Path, out: Path) -> Dict[str, Path]:
    """Write the train / held-out folders (TIFF) the recipes read; returns their roots."""
    import tifffile

    img, lab = tifffile.imread(src / "img2d.tif"), tifffile.imread(src / "mask2d.tif")
    vol, vlab = tifffile.imread(src / "img3d.tif"), tifffile.imread(src / "mask3d.tif")
    parts = {
        "2d/train": {"top": (img[:256], lab[:256]), "bottom_left": (img[256:, :256], lab[256:, :256])},
        "2d/val": {"bottom_right": (img[256:, 256:], lab[256:, 256:])},
        "3d/train": {"z00-15": (vol[:Z_SPLIT], vlab[:Z_SPLIT])},
        "3d/val": {"z16-30": (vol[Z_SPLIT:], vlab[Z_SPLIT:])},
    }
    for sub, files in parts.items():
        for d in ("images", "masks"):
            (out / sub / d).mkdir(parents=True, exist_ok=True)
        for name, (a, b) in files.items():
            tifffile.imwrite(out / sub / "images" / f"{name}.tif", a)
            tifffile.imwrite(out / sub / "masks" / f"{name}.tif", b)
    return {k: out / k for k in parts}


def _centre_click(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(d.argmax()), d.shape)
    return np.array([[x, y]], np.float32)


def click_miou(model: Any, image: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Mean 1-click IoU over every object of ``labels`` (image at native scale)."""
    from sam2_plugins import SAM2ImagePredictor

    pred = SAM2ImagePredictor(model)
    pred.set_image(image)
    ious = []
    for k in np.unique(labels)[1:]:
        gt = labels == k
        masks, scores, _ = pred.predict(point_coords=_centre_click(gt), point_labels=np.array([1]),
                                        multimask_output=True)
        m = masks[int(np.argmax(scores))] > 0
        ious.append(float((m & gt).sum() / max((m | gt).sum(), 1)))
    return {"mIoU_1click": float(np.mean(ious)), "objects": len(ious)}


def z_propagation_jf(model: Any, volume: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Mean J&F of each object tracked through Z from its first plane (see the module docstring)."""
    import torch

    from sam2_plugins import SAM2VideoPredictor
    from sam2_plugins.evaluation.jf import f_radius, score_frame

    pred = SAM2VideoPredictor(model)
    state = pred.init_state(volume)
    radius = f_radius(*labels.shape[1:])
    per_obj = []
    for k in np.unique(labels)[1:]:
        gt = labels == k
        first = int(np.flatnonzero(gt.any((1, 2)))[0])
        if first == len(gt) - 1:
            continue  # nothing after the prompt to score
        pred.reset_state(state)
        pred.add_new_mask(state, frame_idx=first, obj_id=1, mask=gt[first])
        scores, present = [], []
        with torch.inference_mode():
            for t, _, logits in pred.propagate_in_video(state, start_frame_idx=first):
                if t > first:
                    scores.append(score_frame(logits[0, 0].cpu().numpy() > 0, gt[t], radius))
                    present.append(bool(gt[t].any()))
        sc = np.asarray(scores)
        j, f = sc.mean(0)
        # J on the planes where the nucleus is there: an empty prediction scores 0 here, so
        # this part cannot be raised by predicting nothing
        per_obj.append((j, f, sc[np.asarray(present), 0].mean() if any(present) else np.nan))
    j, f, jp = np.nanmean(per_obj, 0)
    return {"J&F": float((j + f) / 2), "J": float(j), "F": float(f), "J_present": float(jp),
            "objects": len(per_obj)}


def _load(checkpoint: str) -> Any:
    from sam2_plugins import build_sam2

    return build_sam2("sam2.1_hiera_nano", checkpoint=checkpoint, device="cpu")


def score(checkpoint: str, data: Dict[str, Path]) -> Dict[str, Dict[str, float]]:
    """Both held-out scores of a checkpoint (``"demo"`` or a path)."""
    import tifffile

    model = _load(checkpoint)
    out = {}
    if (data["2d/val"] / "images").is_dir():
        img = tifffile.imread(data["2d/val"] / "images" / "bottom_right.tif")
        lab = tifffile.imread(data["2d/val"] / "masks" / "bottom_right.tif")
        out["2d"] = click_miou(model, img, lab)
    if (data["3d/val"] / "images").is_dir():
        vol = tifffile.imread(data["3d/val"] / "images" / "z16-30.tif")
        vlab = tifffile.imread(data["3d/val"] / "masks" / "z16-30.tif")
        out["3d"] = z_propagation_jf(model, vol, vlab)
    return out


def _sources(config: Path, key: str, root: Path) -> str:
    """The config's ``data.<key>`` with its ``/path/to/<x>`` placeholders pointing into ``root``."""
    import yaml

    specs = yaml.safe_load(config.read_text())["data"][key]
    text = json.dumps(specs).replace("/path/to/train", str(root / "train")).replace(
        "/path/to/val", str(root / "val"))
    return text


def train(config: Path, data_root: Path, export: Path, threads: int,
          extra: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run the documented CLI recipe on ``data_root/{train,val}``; returns steps and wall time."""
    logs = export.parent / f"logs_{export.stem}"
    cmd = [sys.executable, "-m", f"{LIGHTNING}.cli", "fit", "--config", str(config),
           f"--data.train_sources={_sources(config, 'train_sources', data_root)}",
           f"--data.val_sources={_sources(config, 'val_sources', data_root)}",
           f"--trainer.logger.init_args.save_dir={logs}", "--export", str(export), *(extra or [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}):\n{log[-4000:]}")
    return {"command": " ".join(cmd[1:]), "wall_seconds": round(wall, 1), "steps": _steps(logs)}


def _steps(log_root: Path) -> Optional[int]:
    """The last training step in the run's CSV log."""
    files = sorted(log_root.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    rows = files[-1].read_text().splitlines()
    header = rows[0].split(",")
    i = header.index("step")
    return max(int(r.split(",")[i]) for r in rows[1:] if r.split(",")[i])


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks finetune-stardist", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="folder with img2d.tif, mask2d.tif, img3d.tif, mask3d.tif")
    p.add_argument("--out-dir", type=Path, default=Path("finetune_stardist_run"))
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
                   help="CPU threads of the training runs (1 is fastest on a machine shared with others)")
    p.add_argument("--skip-2d", action="store_true")
    p.add_argument("--skip-3d", action="store_true")
    args = p.parse_args(argv)
    if not (args.data / "img2d.tif").is_file():
        print(f"error: {args.data} has no stardist data (img2d.tif ...); pass --data", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    data = prepare_data(args.data, args.out_dir / "data")
    result: Dict[str, Any] = {"threads": args.threads, "load_average_start": os.getloadavg(),
                              "torch": torch.__version__, "baseline": score("demo", data)}
    print(f"baseline (demo model): {json.dumps(result['baseline'])}", flush=True)
    for dim, config, skip in (("2d", CONFIG_2D, args.skip_2d), ("3d", CONFIG_3D, args.skip_3d)):
        if skip:
            continue
        out = args.out_dir / f"nuclei_{dim}.pt"
        run = train(config, args.out_dir / "data" / dim, out, args.threads)
        after = score(str(out), data)[dim]
        result[dim] = {"config": str(config.relative_to(ROOT)), "steps": run["steps"],
                       "wall_seconds": run["wall_seconds"], "after": after,
                       "before": result["baseline"][dim], "command": run["command"]}
        print(f"{dim}: {run['steps']} steps, {run['wall_seconds'] / 60:.1f} min (whole CLI run): "
              f"{json.dumps(result['baseline'][dim])} -> {json.dumps(after)}", flush=True)
    result["load_average_end"] = os.getloadavg()
    _print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def _print_table(r: Dict[str, Any]) -> None:
    print("\n| held-out data | metric | demo model | fine-tuned | steps | wall time |")
    print("|---|---|---|---|---|---|")
    if "2d" in r:
        b, a = r["2d"]["before"], r["2d"]["after"]
        print(f"| stardist 2D, bottom-right quadrant ({a['objects']} nuclei, native scale) | 1-click mIoU "
              f"| {b['mIoU_1click']:.3f} | {a['mIoU_1click']:.3f} | {r['2d']['steps']} | "
              f"{r['2d']['wall_seconds'] / 60:.1f} min |")
    if "3d" in r:
        b, a = r["3d"]["before"], r["3d"]["after"]
        print(f"| stardist 3D, planes z 16-30 ({a['objects']} nuclei) | Z-propagation J&F "
              f"| {b['J&F']:.3f} | {a['J&F']:.3f} | {r['3d']['steps']} | "
              f"{r['3d']['wall_seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    sys.exit(main())
