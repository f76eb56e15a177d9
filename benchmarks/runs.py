"""Model-running benchmark commands: ``vos``, ``interactive-image``, ``interactive-video``, ``demo``.

Each builds the model through the public API, runs a protocol from
:mod:`sam2_plugins.evaluation.protocols`, and writes a report folder (``report.json``,
``report.md``, PNG plots; ``vos`` also the predicted PNGs in DAVIS layout).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .datasets import SHARED_DATA, load_image_dataset, load_video_dataset
from .report import run_metadata, write_report

__all__ = ["build_model", "run_vos_command", "run_interactive_image_command", "run_interactive_video_command", "run_demo"]

MODEL_ALIASES = {"nano": "sam2.1_hiera_nano", "tiny": "sam2.1_hiera_tiny", "small": "sam2.1_hiera_small",
                 "base_plus": "sam2.1_hiera_base_plus", "large": "sam2.1_hiera_large"}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_model(model: str, checkpoint: Optional[str], device: Optional[str]) -> Tuple[Any, Optional[str]]:
    """Build via ``sam2_plugins.build_sam2``; ``checkpoint="demo"`` falls back to random
    weights (and says so) when the shipped demo weights are missing. Returns (model, used)."""
    import torch

    from sam2_plugins import build_sam2

    name = MODEL_ALIASES.get(model, model)
    ck: Optional[str] = None if checkpoint in (None, "", "none", "random") else checkpoint
    if ck == "demo":
        try:
            return build_sam2(name, checkpoint="demo", device=device), "demo"
        except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
            _log(f"demo weights unavailable ({e}); using random weights: numbers are meaningless")
            torch.manual_seed(0)
            return build_sam2(name, checkpoint=None, device=device), "random (demo weights missing)"
    if ck is None:
        torch.manual_seed(0)
    return build_sam2(name, checkpoint=ck, device=device), ck


def _dtype_arg(dtype: Optional[str]) -> Any:
    return None if dtype in (None, "fp32", "float32") else dtype


def run_vos_command(args: Any) -> Dict[str, Any]:
    """``vos``: the semi-supervised protocol for each requested prompt setting."""
    from sam2_plugins import SAM2VideoPredictor
    from sam2_plugins.evaluation.protocols import PROMPTS, run_vos

    prompts = list(PROMPTS) if args.prompt == "all" else args.prompt.split(",")
    bad = [p for p in prompts if p not in PROMPTS]
    if bad:
        raise ValueError(f"unknown prompt(s) {bad}; choose from {PROMPTS} or 'all'")
    seqs = load_video_dataset(args.dataset, _split(args.sequences), args.max_sequences, args.max_frames, args.layout)
    model, used = build_model(args.model, args.checkpoint, args.device)
    predictor = SAM2VideoPredictor(model, dtype=_dtype_arg(args.dtype),
                                   memory_mode=getattr(args, "memory_mode", None) or "sam2")
    out_dir = Path(args.output_dir)
    warm = int(getattr(args, "warmup", 0) or 0)
    if warm > 0:  # untimed run on the first frames (CUDA context, kernel selection, caches)
        from sam2_plugins.evaluation.vos_protocol import _first_appearances, predict_vos

        from .datasets import limit_frames

        w = limit_frames(seqs[:1], warm)[0]
        predict_vos(predictor, w.frames, _first_appearances(w, True), "mask")
    results: Dict[str, Any] = {}
    first = None
    for p in prompts:
        _log(f"vos: prompt={p} on {len(seqs)} sequences")
        run = run_vos(predictor, seqs, prompt=p, lifetime=args.lifetime,
                      out_dir=out_dir / "predictions" / p if args.save_predictions else None,
                      progress=lambda name: _log(f"  {name}"))
        results[p] = {k: run.summary[k] for k in ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")}
        results[p].update(fps=run.fps, frames=run.frames, seconds=run.seconds)
        if first is None:
            first = run.summary
    main = results[prompts[0]]
    out = {
        **{k: main[k] for k in main}, "prompt": prompts[0], "per_prompt": results,
        "per_sequence": first["per_sequence"] if first else {}, "per_object": first["per_object"] if first else {},
    }
    if model.device.type == "cuda":
        import torch

        out["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(model.device) / 2**20
    meta = run_metadata("vos", MODEL_ALIASES.get(args.model, args.model), used, str(model.device), args.dtype or "fp32",
                        settings={"dataset": args.dataset, "prompts": prompts, "lifetime": args.lifetime,
                                  "memory_mode": getattr(args, "memory_mode", None) or "sam2",
                                  "sequences": [s.name for s in seqs], "max_frames": args.max_frames,
                                  "warmup_frames": warm})
    meta["results"] = out
    write_report(out_dir, meta)
    return meta


def run_interactive_image_command(args: Any) -> Dict[str, Any]:
    from sam2_plugins import SAM2ImagePredictor
    from sam2_plugins.evaluation.protocols import run_interactive_image

    datasets = load_image_dataset(args.dataset, args.masks, args.images)
    model, used = build_model(args.model, args.checkpoint, args.device)
    predictor = SAM2ImagePredictor(model)
    samples: List[Any] = [s for d in datasets for s in d]
    t0 = time.perf_counter()
    res = run_interactive_image(predictor, samples, max_clicks=args.max_clicks,
                                max_instances=args.max_instances, progress=lambda n: _log(f"  {n}"))
    summary = res.summary()
    summary["seconds"] = time.perf_counter() - t0
    summary["per_instance"] = res.ious
    meta = run_metadata("interactive-image", MODEL_ALIASES.get(args.model, args.model), used, str(model.device),
                        "fp32", settings={"dataset": args.dataset, "max_clicks": args.max_clicks,
                                          "max_instances": args.max_instances})
    meta["results"] = summary
    write_report(Path(args.output_dir), meta)
    return meta


def run_interactive_video_command(args: Any) -> Dict[str, Any]:
    from sam2_plugins import SAM2VideoPredictor
    from sam2_plugins.evaluation.protocols import run_interactive_video

    seqs = load_video_dataset(args.dataset, _split(args.sequences), args.max_sequences, args.max_frames, args.layout)
    model, used = build_model(args.model, args.checkpoint, args.device)
    predictor = SAM2VideoPredictor(model, dtype=_dtype_arg(args.dtype))
    t0 = time.perf_counter()
    res = run_interactive_video(predictor, seqs, mode=args.mode, max_frames=args.max_interacted,
                                clicks_per_frame=args.clicks_per_frame)
    res["seconds"] = time.perf_counter() - t0
    meta = run_metadata("interactive-video", MODEL_ALIASES.get(args.model, args.model), used, str(model.device),
                        args.dtype or "fp32", settings={"dataset": args.dataset, "mode": args.mode,
                                                         "max_interacted": args.max_interacted})
    meta["results"] = res
    write_report(Path(args.output_dir), meta)
    return meta


def run_demo(args: Any) -> Dict[str, Any]:
    """The README's main job (see :mod:`benchmarks.demo`)."""
    from .demo import run_full_demo

    return run_full_demo(args)


def run_vos_demo(args: Any) -> Dict[str, Any]:
    """Zero-shot VOS with the demo model: DAVIS-2016 (a few short sequences) if present, else
    synthetic videos; GT-mask prompt."""
    davis = SHARED_DATA / "davis2016-val"
    dataset = "davis" if davis.is_dir() and not args.synthetic else "synthetic"
    ns = argparse.Namespace(
        dataset=dataset, sequences=args.sequences, layout="auto", lifetime="davis",
        max_sequences=args.max_sequences, max_frames=args.max_frames, model=args.model,
        checkpoint=args.checkpoint, device=args.device, dtype=args.dtype, prompt=args.prompt,
        output_dir=args.output_dir, save_predictions=True, warmup=0,
    )
    _log(f"demo: {dataset} data, model {args.model} ({args.checkpoint} weights)")
    meta = run_vos_command(ns)
    meta["kind"] = "demo"
    write_report(Path(args.output_dir), meta)
    return meta


def _split(s: Optional[str]) -> Optional[List[str]]:
    return [x for x in s.split(",") if x] if s else None
