"""Image-embedding speed: our image encoder vs upstream SAM 2's, same weights, same process.

``python -m benchmarks.image_encoder_speed [--model sam2.1_hiera_tiny] [--size 1024]
[--iters 5] [--warmup 1] [--threads N] [--device cpu] [--clock wall|cpu] [--no-bf16]
[--json out.json]``

Both encoders (Hiera trunk + FPN neck) get the same random weights (upstream's, loaded strictly
into ours) and the same input. After warm-up the two are timed alternately, in an order that
flips every iteration, so that load from other processes hits both alike; the medians and the
ratio ours / upstream are printed for float32 and for bfloat16 autocast. ``--clock cpu`` times
with the process CPU clock instead of the wall clock, which is steadier on a machine shared
with other jobs (meaningful with ``--threads 1``). Upstream
(``sam2==1.1.0`` + hydra-core + iopath) is optional: without it only our times are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from .upstream_configs import UPSTREAM_YAML  # re-exported: image_speed imports it here


def _upstream_encoder(name: str, device: torch.device) -> Optional[nn.Module]:
    """Upstream's image encoder with random weights, or None when sam2/hydra are missing."""
    try:
        from sam2.build_sam import build_sam2
    except Exception as exc:  # ImportError, or hydra failing to initialise
        print(f"upstream sam2 not available ({type(exc).__name__}: {exc}); timing ours only")
        return None
    if name not in UPSTREAM_YAML:
        print(f"no upstream config for {name}; timing ours only")
        return None
    model = build_sam2(UPSTREAM_YAML[name], ckpt_path=None, device=str(device),
                       apply_postprocessing=False)
    enc = model.image_encoder
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # upstream zero-inits the pos embeds; use non-trivial weights
        for p in enc.parameters():
            if float(p.abs().sum()) == 0.0:
                p.copy_(torch.randn(p.shape, generator=gen).to(p) * 0.02)
    return enc.eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _time_alternating(fns: Dict[str, Callable[[], object]], iters: int, warmup: int,
                      device: torch.device,
                      clock: Callable[[], float] = time.perf_counter) -> Dict[str, List[float]]:
    """Seconds per call of each function, interleaved and order-flipped each iteration."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    _sync(device)
    times: Dict[str, List[float]] = {n: [] for n in names}
    for i in range(iters):
        for n in (names if i % 2 == 0 else names[::-1]):
            _sync(device)
            t0 = clock()
            fns[n]()
            _sync(device)
            times[n].append(clock() - t0)
    return times


def run(model: str = "sam2.1_hiera_tiny", size: Optional[int] = None, iters: int = 5,
        warmup: int = 1, device: str = "cpu", bf16: bool = True,
        threads: Optional[int] = None, clock: str = "wall") -> Dict[str, object]:
    """Time both encoders; returns a dict of medians (seconds) and ratios."""
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.image_encoder import build_image_encoder

    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    timer = time.perf_counter if clock == "wall" else time.process_time
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    cfg = get_config(model)
    size = size or cfg.image_size
    torch.manual_seed(0)
    ours = build_image_encoder(cfg).to(dev).eval()
    theirs = _upstream_encoder(cfg.name, dev)
    if theirs is not None:
        ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, size, size, device=dev)

    result: Dict[str, object] = {
        "model": cfg.name, "size": size, "device": str(dev), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "iters": iters, "warmup": warmup, "clock": clock,
        "machine": platform.processor() or platform.machine(),
    }
    modes = [("fp32", contextlib.nullcontext)]
    if bf16:
        modes.append(("bf16_autocast",
                      lambda: torch.autocast(dev.type, dtype=torch.bfloat16)))
    for mode, ctx in modes:
        fns: Dict[str, Callable[[], object]] = {}

        def call(enc: nn.Module, ctx=ctx) -> Callable[[], object]:
            def f() -> object:
                with torch.inference_mode(), ctx():
                    return enc(x)
            return f

        fns["ours"] = call(ours)
        if theirs is not None:
            fns["upstream"] = call(theirs)
        times = _time_alternating(fns, iters, warmup, dev, timer)
        med = {k: statistics.median(v) for k, v in times.items()}
        entry: Dict[str, object] = {f"{k}_median_s": v for k, v in med.items()}
        entry.update({f"{k}_all_s": v for k, v in times.items()})
        if "upstream" in med:
            entry["ratio_ours_over_upstream"] = med["ours"] / med["upstream"]
        result[mode] = entry
    return result


def _print(result: Dict[str, object]) -> None:
    print(f"image encoder {result['model']} at {result['size']}², device {result['device']}, "
          f"torch {result['torch']}, {result['threads']} threads, "
          f"median of {result['iters']} after {result['warmup']} warm-up, {result['clock']} clock")
    for mode in ("fp32", "bf16_autocast"):
        entry = result.get(mode)
        if not isinstance(entry, dict):
            continue
        line = f"  {mode:14s} ours {entry['ours_median_s'] * 1000:8.1f} ms"
        if "upstream_median_s" in entry:
            line += (f"   upstream {entry['upstream_median_s'] * 1000:8.1f} ms"
                     f"   ratio ours/upstream {entry['ratio_ours_over_upstream']:.3f}")
        print(line)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.image_encoder_speed",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sam2.1_hiera_tiny")
    p.add_argument("--size", type=int, default=None, help="input side (default: the model's)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall clock, or process CPU time (steadier on a busy machine)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false",
                   help="skip the bfloat16-autocast timing")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        p.error("--iters must be >= 1 and --warmup >= 0")
    result = run(args.model, args.size, args.iters, args.warmup, args.device, args.bf16,
                 args.threads, args.clock)
    _print(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
