"""GPU check: paper-style FPS (upstream's ``sam2/benchmark.py`` way) beside the end-to-end FPS.

Run from the repo root on a CUDA machine (plain ``python3`` with torch; no napari / FiftyOne):

    python3 tools/gpu_paper_fps.py [--models sam2.1_hiera_tiny,sam2.1_hiera_base_plus] [--frames 64]
                                   [--runs 3] [--out result.json]

For each model (random weights: speed does not depend on them) at 1024², on a synthetic 640x480
JPEG video: paper-style = ``propagate_in_video`` only, 1 object, 1 warm-up run then ``--runs``
timed runs, bf16; end-to-end = ``init_state`` + 1 click + 1 propagation from a cold state.
Not compiled (upstream's published FPS use ``vos_optimized=True``). Prints one JSON object.
About a minute on an H200.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    import torch

    from benchmarks.paper_fps import _build, measure

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="sam2.1_hiera_tiny,sam2.1_hiera_base_plus")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device"}))
        return 1
    out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "frames": a.frames, "runs": a.runs,
           "models": {}}
    for name in [m for m in a.models.split(",") if m]:
        t0 = time.perf_counter()
        net = _build(name, 1024, "cuda", None)
        r = measure(net, None, a.frames, a.runs, 1)
        r["wall_s"] = time.perf_counter() - t0
        r["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["models"][name] = r
        del net
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
