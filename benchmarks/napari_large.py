"""napari plugin, large images: tiled against untiled, with exact ground truth.

``python -m benchmarks.napari_large [--size 4096] [--nuclei 400] [--tile 128] [--overlap 32]
[--points-per-side 6] [--clicks 40] [--memory-size 16384] [--json FILE]``

Through the plugin's public controller (:class:`napari_sam2.controller.SAM2Controller`, no
viewer) and the shipped demo model:

* **automatic recall**: a ``size``² RGB image of ``nuclei`` small stained nuclei (12-20 px,
  :func:`napari_sam2.sample_data.make_nuclei_2d`), segmented everything tiled and untiled;
  recall = the fraction of nuclei matched by a mask with IoU >= 0.5. The untiled figure is the
  better of two runs (the same thresholds, and both thresholds at 0).
* **click IoU**: one positive click at the centre of ``clicks`` nuclei, tiled and untiled.
* **cache**: tiled automatic on a ``cache-size``² crop, then again with a new controller on
  the same on-disk embedding cache: the second run must encode no tile.
* **memory**: in a fresh process, a ``memory-size``² uint16 image read lazily (dask, generated
  chunk by chunk, never held whole): clicks on it and tiled automatic over all of it (with
  ``--memory-automatic``), peak resident memory from ``getrusage``.

The demo model was trained on textured shapes of 50-100 px at its 256² input; tiles of 128 px
(``--tile``) show it the nuclei at 2x, which is what tiling is for. Figures are printed and, with
``--json``, written to that file. Runs for a long time on a CPU (about 2 s per tile of automatic
mode at 2 threads on a busy machine): ``--size 2048`` for a quicker look.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np


def recall(pred: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> float:
    """Fraction of ground-truth objects with a predicted label of IoU >= ``thr``."""
    areas = np.bincount(pred.ravel())
    hits, n = 0, int(gt.max())
    flat_gt, flat_pred = gt.ravel(), pred.ravel()
    order = np.argsort(flat_gt, kind="stable")
    bounds = np.searchsorted(flat_gt[order], np.arange(1, n + 2))
    for i in range(n):
        idx = order[bounds[i]:bounds[i + 1]]
        ids, inter = np.unique(flat_pred[idx], return_counts=True)
        keep = ids > 0
        if keep.any():
            iou = inter[keep] / (len(idx) + areas[ids[keep]] - inter[keep])
            hits += bool(iou.max() >= thr)
    return hits / max(n, 1)


def centre(mask: np.ndarray) -> Tuple[int, int]:
    """The pixel farthest from the background (SAM's usual "centre" click)."""
    from scipy.ndimage import distance_transform_edt

    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    sub = np.pad(mask[y0:ys.max() + 1, x0:xs.max() + 1], 1)
    d = distance_transform_edt(sub)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(y + y0), int(x + x0)


def _controller(model: Any, tiled: bool, tile: int, overlap: int, disk: bool = False) -> Any:
    from napari_sam2.controller import SAM2Controller, TileSettings

    ctl = SAM2Controller()
    if disk:
        ctl.use_disk_cache(True)
    ctl.set_model(model, "demo")
    ctl.tiles = TileSettings(tiled, tile, overlap)
    ctl.overwrite = True  # one object per nucleus, each scored alone
    return ctl


def automatic(model: Any, img: np.ndarray, tiled: bool, args: argparse.Namespace, pps: int,
              iou: float, stab: float) -> Tuple[np.ndarray, Dict[str, Any]]:
    from napari_sam2.controller import AutoParams

    ctl = _controller(model, tiled, args.tile, args.overlap)
    s = ctl.open_image(img, "nuclei", rgb=True)
    t0 = time.perf_counter()
    ctl.segment_everything((), AutoParams(pps, iou, stab, 0))
    res = ctl.last_automatic
    info = {"seconds": time.perf_counter() - t0, "masks": res.n_masks, "tiles": res.tiles, "points_per_side": pps,
            "pred_iou_thresh": iou, "stability_score_thresh": stab, "encoded": ctl.cache.misses,
            "reason": res.reason}
    return s.outputs["automatic"][()] if "automatic" in s.outputs else np.zeros(img.shape[:2], np.int32), info


def click_ious(model: Any, img: np.ndarray, gt: np.ndarray, ids: Sequence[int], tiled: bool,
               args: argparse.Namespace) -> Dict[str, Any]:
    ctl = _controller(model, tiled, args.tile, args.overlap)
    s = ctl.open_image(img, "nuclei", rgb=True)
    ious = []
    t0 = time.perf_counter()
    for i in ids:
        m = gt == i
        oid = ctl.new_object()
        ctl.add_click(centre(m), obj_id=oid)
        out = s.outputs["instances"] == oid
        ious.append(float((out & m).sum() / (out | m).sum()))
    return {"mean_iou": float(np.mean(ious)), "median_iou": float(np.median(ious)),
            "share_iou_ge_0.5": float(np.mean(np.asarray(ious) >= 0.5)), "clicks": len(ids),
            "seconds": time.perf_counter() - t0}


def cache_check(model: Any, img: np.ndarray, args: argparse.Namespace) -> Dict[str, Any]:
    from napari_sam2.controller import AutoParams

    crop = img[:args.cache_size, :args.cache_size]
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("NAPARI_SAM2_CACHE_DIR")
        os.environ["NAPARI_SAM2_CACHE_DIR"] = tmp
        try:
            runs = []
            for _ in range(2):  # the second controller: as after restarting napari
                ctl = _controller(model, True, args.tile, args.overlap, disk=True)
                ctl.open_image(crop, "crop", rgb=True)
                t0 = time.perf_counter()
                ctl.segment_everything((), AutoParams(args.points_per_side, args.iou, args.stability, 0))
                runs.append({"tiles": ctl.last_automatic.tiles, "encoded": ctl.cache.misses,
                             "from_disk": ctl.cache.disk_hits, "seconds": time.perf_counter() - t0})
        finally:
            if old is None:
                os.environ.pop("NAPARI_SAM2_CACHE_DIR", None)
            else:
                os.environ["NAPARI_SAM2_CACHE_DIR"] = old
    return {"first": runs[0], "second": runs[1], "crop": args.cache_size}


def lazy_nuclei(size: int, chunk: int = 1024, seed: int = 0) -> Any:
    """A ``size``² uint16 dask array of bright discs on a dim background, made chunk by chunk."""
    import dask.array as da

    def block(block_info: Any = None) -> np.ndarray:
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        rng = np.random.default_rng([seed, y0, x0])
        out = rng.normal(300, 30, (y1 - y0, x1 - x0)).clip(0, 4095)
        yy, xx = np.ogrid[0:y1 - y0, 0:x1 - x0]
        for _ in range(20):
            cy, cx, r = rng.integers(20, y1 - y0 - 20), rng.integers(20, x1 - x0 - 20), rng.uniform(6, 10)
            out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += 2000
        return out.astype(np.uint16)

    n = size // chunk
    return da.map_blocks(block, dtype=np.uint16, chunks=((chunk,) * n, (chunk,) * n))


def memory_child(size: int, tile: int, overlap: int, run_automatic: bool, pps: int) -> Dict[str, Any]:
    """Runs in its own process (peak memory is per process)."""
    from napari_sam2.controller import AutoParams
    from sam2_plugins import build_sam2

    model = build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu")
    ctl = _controller(model, True, tile, overlap)
    s = ctl.open_image(lazy_nuclei(size), "lazy", contrast=lambda: (200.0, 2500.0))
    t0 = time.perf_counter()
    for y, x in ((500, 700), (size // 2, size // 2), (size - 600, 900), (1200, size - 800)):
        ctl.add_click((y, x), obj_id=ctl.new_object())
    out: Dict[str, Any] = {"size": size, "clicks": 4, "click_seconds": time.perf_counter() - t0}
    if run_automatic:
        t0 = time.perf_counter()
        ctl.segment_everything((), AutoParams(pps, 0.5, 0.6, 0))
        out.update(automatic_tiles=ctl.last_automatic.tiles, automatic_masks=ctl.last_automatic.n_masks,
                   automatic_seconds=time.perf_counter() - t0)
    out["labels_bytes_reserved"] = int(s.outputs["instances"].nbytes)
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    return out


def memory_check(size: int, tile: int, overlap: int, run_automatic: bool, pps: int) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", f"{__package__}.napari_large", "--memory-child", str(size), "--tile", str(tile),
           "--overlap", str(overlap), "--points-per-side", str(pps)] + (["--memory-automatic"] if run_automatic else [])
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if r.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.napari_large", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--nuclei", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--points-per-side", type=int, default=6, help="automatic mode, per tile")
    ap.add_argument("--untiled-points-per-side", type=int, default=16)
    ap.add_argument("--iou", type=float, default=0.5, help="predicted-IoU threshold")
    ap.add_argument("--stability", type=float, default=0.6, help="stability threshold")
    ap.add_argument("--clicks", type=int, default=40)
    ap.add_argument("--cache-size", type=int, default=512)
    ap.add_argument("--memory-size", type=int, default=16384)
    ap.add_argument("--memory-tile", type=int, default=1024)
    ap.add_argument("--memory-automatic", action="store_true", help="also tiled automatic over the lazy image")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: automatic,clicks,cache,memory")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, args.tile, args.overlap, args.memory_automatic,
                                      args.points_per_side)))
        return 0
    from napari_sam2.sample_data import make_nuclei_2d
    from sam2_plugins import build_sam2

    skip = set(filter(None, args.skip.split(",")))
    model = build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu")
    img, gt = make_nuclei_2d(args.size, args.nuclei, seed=args.seed)
    run: Dict[str, Any] = {"model": "demo (sam2.1_hiera_nano)", "size": args.size, "nuclei": int(gt.max()),
                           "tile": args.tile, "overlap": args.overlap, "threads": torch.get_num_threads(),
                           "load_avg_before": list(os.getloadavg())}
    print(f"{args.size}² image, {int(gt.max())} nuclei of 12-20 px; tiles {args.tile} px, overlap {args.overlap}",
          flush=True)
    if "automatic" not in skip:
        lab_t, info_t = automatic(model, img, True, args, args.points_per_side, args.iou, args.stability)
        info_t["recall"] = recall(lab_t, gt)
        print(f"tiled automatic: recall {info_t['recall']:.3f} ({info_t['masks']} masks, {info_t['tiles']} tiles, "
              f"{info_t['seconds']:.0f} s)", flush=True)
        untiled = []
        for iou, stab in ((args.iou, args.stability), (0.0, 0.0)):
            lab_u, info_u = automatic(model, img, False, args, args.untiled_points_per_side, iou, stab)
            info_u["recall"] = recall(lab_u, gt)
            untiled.append(info_u)
            print(f"untiled automatic (thresholds {iou}/{stab}): recall {info_u['recall']:.3f} "
                  f"({info_u['masks']} masks, {info_u['seconds']:.0f} s)", flush=True)
        best_u = max(u["recall"] for u in untiled)
        run["automatic"] = {"tiled": info_t, "untiled": untiled, "untiled_recall": best_u,
                            "ratio": (info_t["recall"] / best_u) if best_u > 0 else float("inf")}
        print(f"recall at IoU 0.5: tiled {info_t['recall']:.3f} vs untiled {best_u:.3f}", flush=True)
    if "clicks" not in skip:
        ids = np.random.default_rng(args.seed).choice(np.arange(1, gt.max() + 1), min(args.clicks, gt.max()),
                                                      replace=False)
        ct = click_ious(model, img, gt, ids, True, args)
        cu = click_ious(model, img, gt, ids, False, args)
        run["clicks"] = {"tiled": ct, "untiled": cu}
        print(f"click IoU over {len(ids)} nuclei: tiled mean {ct['mean_iou']:.3f} (>= 0.5 for "
              f"{100 * ct['share_iou_ge_0.5']:.0f} %) vs untiled mean {cu['mean_iou']:.3f}", flush=True)
    if "cache" not in skip:
        run["cache"] = cache_check(model, img, args)
        c = run["cache"]
        print(f"tile cache on disk ({c['crop']}² crop, {c['first']['tiles']} tiles): first run encoded "
              f"{c['first']['encoded']}, second run encoded {c['second']['encoded']} "
              f"(read {c['second']['from_disk']} entries from disk)", flush=True)
    if "memory" not in skip:
        run["memory"] = memory_check(args.memory_size, args.memory_tile, 128, args.memory_automatic,
                                     args.points_per_side)
        m = run["memory"]
        print(f"{m['size']}² uint16 read lazily: peak resident memory {m['peak_rss_gb']:.2f} GB "
              f"(clicks{', automatic over %d tiles' % m['automatic_tiles'] if 'automatic_tiles' in m else ''})",
              flush=True)
    run["load_avg_after"] = list(os.getloadavg())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(run, indent=2, default=float) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
