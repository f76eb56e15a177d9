"""``python -m benchmarks mode-speed``: cost per tracked frame of each tracking mode, side by side.

One process, one model, one clip; the modes run in turns (round-robin, ``--rounds`` times) so a
busy machine slows them alike, and the report gives each mode's median seconds per tracked frame
and its ratio to ``sam2``, in wall time and in this process's CPU time (the CPU time is what a
mode costs; on a shared machine the wall time also counts waiting for the CPU). Defaults:
``sam2.1_hiera_tiny`` with random weights (the figures are about cost, not quality), 1024² input,
3 objects, a 12-frame synthetic clip, CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks mode-speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--checkpoint", default=None, help="omit for random weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", help="auto, fp32 or bf16 (the predictor's dtype)")
    p.add_argument("--modes", default="sam2,samurai,distractor,long")
    p.add_argument("--objects", type=int, default=3)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--output", default=None, help="JSON file")
    args = p.parse_args(argv)
    import torch

    from sam2_plugins import SAM2VideoPredictor
    from sam2_plugins.evaluation.synthetic import make_video

    from .runs import MODEL_ALIASES, load_bench_model

    modes = [m for m in args.modes.split(",") if m]
    model, used = load_bench_model(args.model, args.checkpoint, args.device)
    model.eval()
    frames, masks = make_video(args.frames, 256, 256, args.objects, 7)
    dtype = None if args.dtype in ("fp32", "none") else args.dtype
    preds = {m: SAM2VideoPredictor(model, dtype=dtype, memory_mode=m) for m in modes}
    times: Dict[str, List[float]] = {m: [] for m in modes}
    cpu: Dict[str, List[float]] = {m: [] for m in modes}
    stages: Dict[str, Dict[str, float]] = {m: {} for m in modes}
    for r in range(args.rounds + 1):  # round 0 warms up (allocations, caches) and is not counted
        for m in modes:
            pred = preds[m]
            state = pred.init_state(frames)
            for k in range(1, args.objects + 1):
                pred.add_new_mask(state, 0, k, masks[0] == k)
            pred.engine.timed = r > 0
            t0, c0 = time.perf_counter(), time.process_time()
            n = sum(1 for _ in pred.propagate_in_video(state)) - 1  # frame 0 is the prompt
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if r > 0:
                times[m].append(dt / n)
                cpu[m].append(dc / n)
            print(f"round {r} {m}: {dt / n:.3f} s/frame wall, {dc / n:.3f} CPU", file=sys.stderr, flush=True)
        for m in modes:
            stages[m] = {k: v / max(args.rounds * (args.frames - 1), 1) for k, v in preds[m].engine.stats.items()}
    med = {m: float(np.median(v)) for m, v in times.items()}
    med_cpu = {m: float(np.median(v)) for m, v in cpu.items()}
    base, base_cpu = med.get("sam2"), med_cpu.get("sam2")
    res: Dict[str, Any] = {
        "model": MODEL_ALIASES.get(args.model, args.model), "checkpoint": used, "device": str(model.device),
        "dtype": args.dtype, "objects": args.objects, "frames": args.frames, "rounds": args.rounds,
        "image_size": int(model.image_size), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "seconds_per_frame": med, "cpu_seconds_per_frame": med_cpu, "all_rounds": times, "all_rounds_cpu": cpu,
        "stage_seconds_per_frame": stages,
        "ratio_to_sam2": {m: (v / base if base else None) for m, v in med.items()},
        "cpu_ratio_to_sam2": {m: (v / base_cpu if base_cpu else None) for m, v in med_cpu.items()}}
    text = json.dumps(res, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
