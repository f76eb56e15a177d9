"""Peak memory of streaming video tracking vs video length (ours bounded, upstream growing).

``python -m benchmarks.video_memory [--model sam2.1_hiera_nano] [--frames 200 2000]
[--objects 1] [--size 240x320] [--device cpu] [--upstream] [--upstream-frames 40 160] [--json out]``

Each run is a fresh subprocess (so ``ru_maxrss`` is that run's peak): a synthetic video of
moving squares is generated frame by frame and streamed through :class:`VideoSession`, with a
click per object on frame 0. Printed: peak RSS (and peak CUDA memory on a GPU) per length, and
the ratio longest / shortest; the goal is <= 1.1.

``--upstream`` also runs upstream's ``SAM2VideoPredictor`` (tiny at a ``--upstream-size``²
input, random weights, needs ``sam2==1.1.0``; it needs a JPEG folder, written to a temporary
directory) for ``--upstream-frames`` lengths, next to ours on the same model and frames, and
prints both growths. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np


def synthetic_frames(n: int, h: int, w: int, objects: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Frames of ``objects`` coloured squares bouncing over noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
    side = max(4, min(h, w) // 6)
    for t in range(n):
        f = noise.copy()
        for k in range(objects):
            y = (h // (objects + 1)) * (k + 1) - side // 2
            x = int((w - side) * (0.5 + 0.45 * np.sin(0.07 * t + k)))
            f[max(0, y):y + side, x:x + side] = (200, 60 + 40 * k % 190, 40)
        yield f


def _clicks(h: int, w: int, objects: int) -> List[Dict[str, Any]]:
    side = max(4, min(h, w) // 6)
    out = []
    for k in range(objects):
        y = (h // (objects + 1)) * (k + 1)
        x = int((w - side) * (0.5 + 0.45 * np.sin(k))) + side // 2
        out.append(dict(obj_id=k + 1, points=[[x, y]], labels=[1]))
    return out


def _peak_rss_mb() -> float:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024.0


def child_ours(model_name: str, frames: int, objects: int, h: int, w: int, device: str,
               image_size: Optional[int]) -> Dict[str, Any]:
    from dataclasses import replace

    import torch

    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model
    from sam2_plugins.predictors.video.session import VideoSession

    torch.manual_seed(0)
    cfg = get_config(model_name)
    if image_size:
        cfg = replace(cfg, image_size=image_size)
    model = SAM2Model(cfg).to(device).eval()
    sess = VideoSession(model)  # length unknown: a true stream
    t0 = time.perf_counter()
    rss_after_first = None
    n = 0
    for r in sess.run(synthetic_frames(frames, h, w, objects), {0: _clicks(h, w, objects)}):
        n += 1
        if r.frame_idx == 0:
            rss_after_first = _peak_rss_mb()
    wall = time.perf_counter() - t0
    out = {"impl": "ours", "frames": n, "peak_rss_mb": _peak_rss_mb(), "rss_after_frame0_mb": rss_after_first,
           "wall_s": wall, "fps": n / wall, "stored_bytes": sess.memory_footprint()}
    if device.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def child_upstream(frames: int, objects: int, h: int, w: int, image_size: int) -> Dict[str, Any]:
    import torch
    from PIL import Image

    sys.path.insert(0, os.getcwd())
    from tests.ref_utils import build_reference

    torch.set_num_threads(max(1, torch.get_num_threads()))
    ref = build_reference("sam2.1_hiera_tiny", video=True,
                          extra_overrides=(f"++model.image_size={image_size}",))
    with tempfile.TemporaryDirectory() as d:
        for i, f in enumerate(synthetic_frames(frames, h, w, objects)):
            Image.fromarray(f).save(os.path.join(d, f"{i:05d}.jpg"), quality=95)
        t0 = time.perf_counter()
        with torch.inference_mode():
            s = ref.init_state(d)
            for c in _clicks(h, w, objects):
                ref.add_new_points_or_box(s, 0, c["obj_id"], points=c["points"], labels=c["labels"])
            n = sum(1 for _ in ref.propagate_in_video(s))
        wall = time.perf_counter() - t0
    return {"impl": "upstream", "frames": n, "peak_rss_mb": _peak_rss_mb(), "wall_s": wall, "fps": n / wall}


def _spawn(args: Sequence[str]) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", f"{__package__}.video_memory", "--child", *args]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _report(rows: List[Dict[str, Any]], label: str) -> Optional[float]:
    if not rows:
        return None
    for r in rows:
        extra = f", peak CUDA {r['peak_cuda_mb']:.1f} MiB" if "peak_cuda_mb" in r else ""
        print(f"  {label:>8} {r['frames']:>6} frames: peak RSS {r['peak_rss_mb']:8.1f} MiB{extra}, "
              f"{r['fps']:.1f} fps")
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    per_frame = ((rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"])
                 / max(1, rows[-1]["frames"] - rows[0]["frames"]))
    print(f"  {label:>8} ratio {rows[-1]['frames']}/{rows[0]['frames']} frames: {ratio:.3f} "
          f"({per_frame * 1024:.1f} KiB per extra frame)")
    if "peak_cuda_mb" in rows[0]:
        print(f"  {label:>8} CUDA ratio: {rows[-1]['peak_cuda_mb'] / rows[0]['peak_cuda_mb']:.3f}")
    return ratio


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.video_memory", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="sam2.1_hiera_nano")
    ap.add_argument("--frames", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--objects", type=int, default=1)
    ap.add_argument("--size", default="240x320", help="frame HxW")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--image-size", type=int, default=None, help="override the model input size")
    ap.add_argument("--upstream", action="store_true", help="also measure upstream (tiny) growth")
    ap.add_argument("--upstream-frames", type=int, nargs="+", default=[40, 160])
    ap.add_argument("--upstream-size", type=int, default=256)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    h, w = (int(x) for x in a.size.lower().split("x"))
    if a.child:
        n = a.frames[0]
        if a.impl == "ours":
            res = child_ours(a.model, n, a.objects, h, w, a.device, a.image_size)
        else:
            res = child_upstream(n, a.objects, h, w, a.upstream_size)
        print(json.dumps(res))
        return 0
    common = ["--objects", str(a.objects), "--size", a.size, "--device", a.device]
    print(f"streaming {a.model}, {a.objects} object(s), {h}x{w} frames, device {a.device}")
    ours = [_spawn(["--frames", str(n), "--model", a.model, *common]
                   + (["--image-size", str(a.image_size)] if a.image_size else [])) for n in a.frames]
    result: Dict[str, Any] = {"model": a.model, "objects": a.objects, "size": [h, w], "ours": ours}
    result["ours_ratio"] = _report(ours, "ours")
    if a.upstream:
        print(f"same frames, tiny 2.1 at {a.upstream_size}² (random weights): upstream vs ours")
        up, mine = [], []
        for n in a.upstream_frames:
            try:
                up.append(_spawn(["--frames", str(n), "--impl", "upstream", "--upstream-size",
                                  str(a.upstream_size), *common]))
            except RuntimeError as e:
                print(f"  upstream failed: {str(e).splitlines()[-1]}")
                break
            mine.append(_spawn(["--frames", str(n), "--model", "sam2.1_hiera_tiny", "--image-size",
                                str(a.upstream_size), *common]))
        result["upstream"], result["ours_tiny"] = up, mine
        result["upstream_ratio"] = _report(up, "upstream")
        result["ours_tiny_ratio"] = _report(mine, "ours")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
