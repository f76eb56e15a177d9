"""Image predictor speed: ``set_image`` (ours vs upstream) and prompt-to-mask latency.

``python -m benchmarks.image_speed [--model sam2.1_hiera_tiny] [--image-size 1024]
[--iters 20] [--embed-iters 3] [--threads N] [--device cpu] [--no-bf16] [--json out.json]``

* **prompt-to-mask latency**: with the image embedding cached, one positive click ->
  masks returned at the original image size (1024x1024 by default), median over ``--iters``
  calls, for ``multimask_output=True`` (upstream's default, 3 masks) and ``False``.
  Goal on CPU: <= 60 ms median for tiny 2.1.
* **set_image**: our predictor vs upstream's ``SAM2ImagePredictor`` (needs ``sam2==1.1.0`` +
  hydra-core, and the torchvision stand-in from ``tests/ref_utils.py``, so run it from the repo
  root), same random weights (upstream's, loaded strictly into ours), timed alternately; the
  ratio ours / upstream is printed.

Both are repeated under bf16 autocast (``--no-bf16`` skips it). Nothing is asserted: this
prints figures and writes them as JSON on request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _upstream_predictor(name: str, device: torch.device) -> Optional[Any]:
    """Upstream's image predictor over a random-init model, or None (with the reason printed)."""
    try:
        from tests.ref_utils import install_torchvision_shim

        from .image_encoder_speed import UPSTREAM_YAML

        install_torchvision_shim()
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor as Upstream
    except Exception as exc:  # ImportError, hydra init failure, not run from the repo root
        print(f"upstream predictor not available ({type(exc).__name__}: {exc}); timing ours only")
        return None
    if name not in UPSTREAM_YAML:
        print(f"no upstream config for {name}; timing ours only")
        return None
    torch.manual_seed(0)
    model = build_sam2(UPSTREAM_YAML[name], ckpt_path=None, device=str(device))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # upstream zero-inits some tensors; make every weight non-trivial
        for p in model.parameters():
            if p.dim() >= 1 and float(p.abs().sum()) == 0.0:
                p.copy_(torch.randn(p.shape, generator=gen).to(p) * 0.02)
    return Upstream(model.eval())


def _median_ms(fn: Callable[[], object], iters: int, warmup: int, device: torch.device,
               cpu_out: Optional[List[float]] = None) -> List[float]:
    """Wall-clock milliseconds per call; CPU (process) milliseconds go to ``cpu_out``.

    With one thread on a busy machine the process time is the better estimate of the
    uncontended wall time, so both are reported.
    """
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        _sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t0) * 1000)
        if cpu_out is not None:
            cpu_out.append((time.process_time() - c0) * 1000)
    return out


def run(model: str = "sam2.1_hiera_tiny", image_size: int = 1024, iters: int = 20, embed_iters: int = 3,
        device: str = "cpu", bf16: bool = True, threads: Optional[int] = None,
        upstream: bool = True) -> Dict[str, Any]:
    """Run the timings; returns a dict of per-call milliseconds, medians and ratios."""
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model
    from sam2_plugins.predictors.image import SAM2ImagePredictor

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    cfg = get_config(model)
    theirs = _upstream_predictor(cfg.name, dev) if upstream else None
    torch.manual_seed(0)
    net = SAM2Model(cfg)
    if theirs is not None:
        net.load_state_dict(theirs.model.state_dict(), strict=True)
    net = net.to(dev).eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
    image[image_size // 4: image_size // 2, image_size // 4: 3 * image_size // 4] = (200, 40, 40)
    click = dict(point_coords=np.array([[image_size * 0.4, image_size * 0.35]]), point_labels=np.array([1]))

    result: Dict[str, Any] = {
        "model": cfg.name, "image_size": image_size, "device": str(dev), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "iters": iters, "embed_iters": embed_iters,
        "machine": platform.processor() or platform.machine(),
    }
    modes = [("fp32", "fp32", contextlib.nullcontext)]
    if bf16:
        modes.append(("bf16_autocast", "bf16", lambda: torch.autocast(dev.type, dtype=torch.bfloat16)))
    for mode, dtype, ctx in modes:
        ours = SAM2ImagePredictor(net, dtype=dtype)
        entry: Dict[str, Any] = {}
        # set_image, alternating ours / upstream so background load hits both alike
        set_times: Dict[str, List[float]] = {"ours": []}
        fns: Dict[str, Callable[[], object]] = {"ours": lambda ours=ours: ours.set_image(image)}
        if theirs is not None:
            set_times["upstream"] = []

            def up_set(c=ctx) -> None:
                with c():
                    theirs.set_image(image)
            fns["upstream"] = up_set
        for f in fns.values():  # warm-up
            f()
        for i in range(embed_iters):
            names = list(fns) if i % 2 == 0 else list(fns)[::-1]
            for n in names:
                set_times[n] += _median_ms(fns[n], 1, 0, dev)
        for n, v in set_times.items():
            entry[f"set_image_{n}_ms"] = v
            entry[f"set_image_{n}_median_ms"] = statistics.median(v)
        if "upstream" in set_times:
            entry["set_image_ratio_ours_over_upstream"] = (entry["set_image_ours_median_ms"]
                                                          / entry["set_image_upstream_median_ms"])
        ours.set_image(image)
        for multi in (True, False):
            key = "multimask" if multi else "single"
            cpu: List[float] = []
            t = _median_ms(lambda ours=ours, multi=multi: ours.predict(**click, multimask_output=multi), iters, 3,
                           dev, cpu)
            entry[f"predict_{key}_ours_ms"] = t
            entry[f"predict_{key}_ours_median_ms"] = statistics.median(t)
            entry[f"predict_{key}_ours_cpu_median_ms"] = statistics.median(cpu)
            if theirs is not None:
                def up_pred(c=ctx, m=multi) -> None:
                    with c():
                        theirs.predict(**click, multimask_output=m)
                tu = _median_ms(up_pred, iters, 3, dev)
                entry[f"predict_{key}_upstream_median_ms"] = statistics.median(tu)
                entry[f"predict_{key}_ratio_ours_over_upstream"] = (statistics.median(t) / statistics.median(tu))
        result[mode] = entry
    return result


def _print(r: Dict[str, Any]) -> None:
    print(f"image predictor {r['model']}, image {r['image_size']}², device {r['device']}, torch {r['torch']}, "
          f"{r['threads']} threads")
    for mode in ("fp32", "bf16_autocast"):
        e = r.get(mode)
        if not isinstance(e, dict):
            continue
        line = f"  {mode:14s} set_image ours {e['set_image_ours_median_ms']:8.1f} ms"
        if "set_image_upstream_median_ms" in e:
            line += (f"  upstream {e['set_image_upstream_median_ms']:8.1f} ms"
                     f"  ratio ours/upstream {e['set_image_ratio_ours_over_upstream']:.3f}")
        print(line)
        for key in ("multimask", "single"):
            line = (f"  {mode:14s} click->mask ({key}, {r['image_size']}²) ours "
                    f"{e[f'predict_{key}_ours_median_ms']:7.1f} ms"
                    f" (process CPU {e[f'predict_{key}_ours_cpu_median_ms']:.1f} ms)")
            if f"predict_{key}_upstream_median_ms" in e:
                line += (f"  upstream {e[f'predict_{key}_upstream_median_ms']:7.1f} ms"
                         f"  ratio {e[f'predict_{key}_ratio_ours_over_upstream']:.3f}")
            print(line)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.image_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sam2.1_hiera_tiny")
    p.add_argument("--image-size", type=int, default=1024, help="side of the square test image")
    p.add_argument("--iters", type=int, default=20, help="prompt-to-mask calls timed")
    p.add_argument("--embed-iters", type=int, default=3, help="set_image calls timed (each predictor)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16-autocast figures")
    p.add_argument("--no-upstream", dest="upstream", action="store_false", help="time ours only")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.iters < 1 or args.embed_iters < 1 or args.image_size < 8:
        p.error("--iters and --embed-iters must be >= 1, --image-size >= 8")
    result = run(args.model, args.image_size, args.iters, args.embed_iters, args.device, args.bf16,
                 args.threads, args.upstream)
    _print(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
