"""Model-running benchmark commands: ``vos``, ``interactive-image``, ``interactive-video``, ``demo``.

Each builds the model through the public API, runs a protocol from
:mod:`sam2_plugins.evaluation.protocols`, and writes a report folder (``report.json``,
``report.md``, PNG plots; ``vos`` also the predicted PNGs).

Model and predictor settings follow upstream where the protocol comes from:

- ``vos``: as ``tools/vos_inference.py`` (the script behind upstream's VOS numbers): the model
  built with ``apply_postprocessing=False`` (no dynamic multimask fallback) and the predictor
  without hole filling or binarised click masks;
- ``interactive-video`` / ``interactive-image``: as upstream's builders default
  (``apply_postprocessing=True``), corrections kept as conditioning frames.

The model is built once per command (a predictor built with ``apply_postprocessing=True``
changes its model's memory-encoding flag, so VOS and interactive runs never share one).
"""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .datasets import load_image_dataset, load_video_dataset
from .report import run_metadata, write_report

__all__ = ["load_bench_model", "video_predictor", "run_vos_command", "run_interactive_image_command",
           "run_interactive_video_command", "EVAL_KEYS"]

MODEL_ALIASES = {"nano": "sam2.1_hiera_nano", "tiny": "sam2.1_hiera_tiny", "small": "sam2.1_hiera_small",
                 "base_plus": "sam2.1_hiera_base_plus", "large": "sam2.1_hiera_large"}
EVAL_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
FPS_NOTE = ("fps_end_to_end: frames / wall time of opening each video, prompting (with click simulation) and "
            "propagating every object, and painting the outputs; not upstream's paper-style FPS "
            "(propagation only, 1 object, warm-up, bf16 on CUDA: `python -m benchmarks video-speed`)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_bench_model(model: str, checkpoint: Optional[str], device: Optional[str],
                apply_postprocessing: bool = True) -> Tuple[Any, Optional[str]]:
    """Build via ``sam2_plugins.build_sam2``; ``checkpoint="demo"`` falls back to random
    weights (and says so) when the shipped demo weights are missing. Returns (model, used)."""
    import torch

    from sam2_plugins import build_sam2

    name = MODEL_ALIASES.get(model, model)
    ck: Optional[str] = None if checkpoint in (None, "", "none", "random") else checkpoint
    opts = dict(device=device, apply_postprocessing=apply_postprocessing)
    if ck == "demo":
        try:
            return build_sam2(name, checkpoint="demo", **opts), "demo"
        except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
            _log(f"demo weights unavailable ({e}); using random weights: numbers are meaningless")
            torch.manual_seed(0)
            return build_sam2(name, checkpoint=None, **opts), "random (demo weights missing)"
    if ck is None:
        torch.manual_seed(0)
    return build_sam2(name, checkpoint=ck, **opts), ck


def _dtype_arg(dtype: Optional[str]) -> Any:
    return None if dtype in (None, "fp32", "float32") else dtype


def video_predictor(model: Any, purpose: str, dtype: Optional[str] = None, memory_mode: str = "sam2") -> Any:
    """The video predictor a protocol uses (see the module docstring); ``memory_mode``: the
    tracking mode (:mod:`sam2_plugins.predictors.video.modes`)."""
    from sam2_plugins import SAM2VideoPredictor
    from sam2_plugins.evaluation.interactive_video import interactive_video_predictor
    from sam2_plugins.evaluation.vos_protocol import vos_predictor

    opts: Dict[str, Any] = {"dtype": _dtype_arg(dtype)}
    if memory_mode != "sam2":
        opts["memory_mode"] = memory_mode
    if purpose == "interactive" and "feature_cache_size" in inspect.signature(SAM2VideoPredictor).parameters:
        opts["feature_cache_size"] = 64  # offline passes re-read every frame: keep their features
    if purpose == "vos":
        return vos_predictor(model, **opts)
    if purpose == "interactive":
        return interactive_video_predictor(model, **opts)
    raise ValueError(f"unknown purpose {purpose!r}")


def _prompts(arg: str) -> List[str]:
    from sam2_plugins.evaluation.vos_protocol import PROMPTS

    prompts = list(PROMPTS) if arg == "all" else [p for p in arg.split(",") if p]
    bad = [p for p in prompts if p not in PROMPTS]
    if bad or not prompts:
        raise ValueError(f"unknown prompt(s) {bad or arg!r}; choose from {PROMPTS} or 'all'")
    return prompts


def vos_results(model: Any, args: Any, out_dir: Path, runner: Any = None) -> Dict[str, Any]:
    """Run ``vos`` for each prompt of ``args.prompt`` on ``args.dataset`` (any layout); returns
    the ``results`` dict of the report. ``runner``: a :class:`benchmarks.distributed.Distributed`
    that runs the videos on its workers instead (``model`` is then None)."""
    from sam2_plugins.evaluation.layouts import run_vos_sav, run_vos_submission
    from sam2_plugins.evaluation.vos_protocol import first_appearances, predict_vos, run_vos

    prompts = _prompts(args.prompt)
    layout = getattr(args, "layout", "auto") or "auto"
    predictor = (video_predictor(model, "vos", getattr(args, "dtype", None),
                                 getattr(args, "memory_mode", None) or "sam2") if runner is None else None)
    seqs: List[Any] = []
    if layout == "sav":
        if getattr(args, "max_frames", None) or getattr(args, "max_sequences", None):
            raise ValueError("--max-frames / --max-sequences do not apply to --layout sav: the SA-V evaluator "
                             "scores every annotated frame of every listed video (use --sequences)")
    else:
        seqs = load_video_dataset(args.dataset, _split(args.sequences), args.max_sequences, args.max_frames, layout)
    warm = int(getattr(args, "warmup", 0) or 0)
    # untimed run on the first frames (CUDA context, kernel selection, caches); in-process only
    if warm > 0 and seqs and predictor is not None:
        from .datasets import limit_frames

        w = limit_frames(seqs[:1], warm)[0]
        predict_vos(predictor, w.frames, first_appearances(w, "davis"), "mask")
    results: Dict[str, Any] = {}
    first: Optional[Dict[str, Any]] = None
    lifetime = getattr(args, "lifetime", "own_video")
    remote = runner.vos(prompts, seqs, out_dir) if runner is not None else None
    for p in prompts:
        _log(f"vos: prompt={p} ({layout} layout)")
        t0 = time.perf_counter()
        if remote is not None:
            summary, frames, ray_seconds = remote[p]
        elif layout == "sav":
            summary = run_vos_sav(predictor, args.dataset, out_dir / "predictions" / p, _split(args.sequences), p,
                                  progress=lambda name: _log(f"  {name}"))
            frames = summary["frames"]
        elif layout in ("youtube", "mose", "lvos"):
            summary = run_vos_submission(predictor, seqs, layout, out_dir / p, p,
                                         progress=lambda name: _log(f"  {name}"))
            frames = summary["frames"]
        else:
            run = run_vos(predictor, seqs, prompt=p, lifetime=lifetime,
                          out_dir=out_dir / "predictions" / p if args.save_predictions else None,
                          progress=lambda name: _log(f"  {name}"))
            summary, frames = run.summary, run.frames
        seconds = time.perf_counter() - t0 if remote is None else ray_seconds
        results[p] = {k: summary.get(k) for k in EVAL_KEYS}
        results[p].update(fps_end_to_end=frames / seconds if seconds > 0 else None, frames=frames, seconds=seconds,
                          n_objects=summary.get("n_objects"))
        for extra in ("submission", "zip", "pred_root", "note", "unscored_objects"):
            if summary.get(extra):
                results[p][extra] = summary[extra]
        if first is None:
            first = summary
    main = results[prompts[0]]
    out = {**main, "prompt": prompts[0], "per_prompt": results,
           "per_sequence": (first or {}).get("per_sequence", {}), "per_object": (first or {}).get("per_object", {}),
           "fps_note": FPS_NOTE,
           "protocol": ("semi-supervised VOS (SAM 2 paper E.1.3): first-appearance prompt per object, objects "
                        f"entering late tracked and scored as their own video (lifetime={lifetime}); "
                        + ("SA-V evaluator rules on per-object PNGs" if layout == "sav" else
                           "DAVIS rules (first and last frame of each video not scored)"))}
    if model is not None and model.device.type == "cuda":
        import torch

        out["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(model.device) / 2**20
    elif runner is not None and runner.peak_gpu_memory_mib is not None:
        out["peak_gpu_memory_mib"] = runner.peak_gpu_memory_mib  # the largest over the workers
    out["_sequences"] = [s.name for s in seqs] or list((first or {}).get("sequences", []))
    return out


def _distributed(args: Any, kind: str) -> Any:
    """``--executor ray``: the runner of :mod:`benchmarks.distributed`; None in-process."""
    from .distributed import distributed_for

    return distributed_for(args, kind)


def _add_execution(meta: Dict[str, Any], runner: Any) -> None:
    """The report's ``execution`` block; on Ray, library versions come from the workers (the
    driver never imports torch)."""
    from .distributed import in_process_execution

    meta["execution"] = runner.execution if runner is not None else in_process_execution()
    if runner is not None:
        for k, v in runner.versions.items():
            if meta["versions"].get(k) is None:
                meta["versions"][k] = v


def run_vos_command(args: Any) -> Dict[str, Any]:
    """``vos``: the semi-supervised protocol for each requested prompt setting."""
    out_dir = Path(args.output_dir)
    runner = _distributed(args, "vos")
    if runner is None:
        model, used = load_bench_model(args.model, args.checkpoint, args.device, apply_postprocessing=False)
        out = vos_results(model, args, out_dir)
        device = str(model.device)
    else:
        out = vos_results(None, args, out_dir, runner=runner)
        used, device = runner.used, runner.device
    names = out.pop("_sequences")
    meta = run_metadata("vos", MODEL_ALIASES.get(args.model, args.model), used, device, args.dtype or "fp32",
                        settings={"dataset": str(args.dataset), "layout": args.layout, "prompts": _prompts(args.prompt),
                                  "lifetime": args.lifetime, "sequences": names, "max_frames": args.max_frames,
                                  "warmup_frames": int(getattr(args, "warmup", 0) or 0),
                                  "memory_mode": getattr(args, "memory_mode", None) or "sam2"})
    meta["results"] = out
    _add_execution(meta, runner)
    write_report(out_dir, meta)
    return meta


def interactive_image_results(model: Any, args: Any, datasets: Optional[Dict[str, Any]] = None,
                              runner: Any = None) -> Dict[str, Any]:
    """``interactive-image`` on ``args.dataset`` (or the given ``{name: samples}``); ``runner``:
    run the images on the workers of a :class:`benchmarks.distributed.Distributed`."""
    from sam2_plugins import SAM2ImagePredictor
    from sam2_plugins.evaluation.protocols import run_interactive_image

    if datasets is None:
        datasets = load_image_dataset(args.dataset, args.masks, args.images)
    t0 = time.perf_counter()
    res = runner.interactive_image(datasets) if runner is not None else run_interactive_image(
        SAM2ImagePredictor(model), datasets, max_clicks=args.max_clicks, max_instances=args.max_instances,
        progress=lambda n: _log(f"  {n}"), max_instances_per_image=getattr(args, "max_instances_per_image", None),
        oracle=bool(getattr(args, "oracle", False)), feed_logits=not getattr(args, "no_mask_input", False))
    summary = res.summary()
    summary["seconds"] = time.perf_counter() - t0 if runner is None else runner.seconds
    summary["per_instance"] = res.ious
    summary["protocol"] = (
        f"interactive image (RITM/SAM): first click at the object centre, then error-region centres; up to "
        f"{args.max_clicks} clicks; "
        f"{'oracle (best of 3 vs GT)' if getattr(args, 'oracle', False) else 'most confident'} "
        f"mask at click 1; previous logits {'not ' if getattr(args, 'no_mask_input', False) else ''}fed back; "
        "void excluded; NoC capped at the click budget, NoF = instances at the cap (RITM); "
        "headline = mean of per-dataset values")
    return summary


def run_interactive_image_command(args: Any) -> Dict[str, Any]:
    runner = _distributed(args, "interactive-image")
    if runner is None:
        model, used = load_bench_model(args.model, args.checkpoint, args.device)
        summary = interactive_image_results(model, args)
        device = str(model.device)
    else:
        summary = interactive_image_results(None, args, runner=runner)
        used, device = runner.used, runner.device
    meta = run_metadata("interactive-image", MODEL_ALIASES.get(args.model, args.model), used, device,
                        "fp32", settings={"dataset": args.dataset, "max_clicks": args.max_clicks,
                                          "max_instances": args.max_instances,
                                          "max_instances_per_image": getattr(args, "max_instances_per_image", None),
                                          "oracle": bool(getattr(args, "oracle", False)),
                                          "feed_logits": not getattr(args, "no_mask_input", False)})
    meta["results"] = summary
    _add_execution(meta, runner)
    write_report(Path(args.output_dir), meta)
    return meta


def _modes(arg: str) -> List[str]:
    modes = ["offline", "online"] if arg == "both" else [m for m in arg.split(",") if m]
    bad = [m for m in modes if m not in ("offline", "online")]
    if bad or not modes:
        raise ValueError(f"unknown mode(s) {bad or arg!r}; choose offline, online or both")
    return modes


def interactive_video_results(model: Any, args: Any, seqs: Optional[Sequence[Any]] = None,
                              runner: Any = None) -> Dict[str, Any]:
    """``interactive-video`` for each mode of ``args.mode``; ``runner``: run the videos on the
    workers of a :class:`benchmarks.distributed.Distributed` (``model`` is then None)."""
    from sam2_plugins.evaluation.protocols import run_interactive_video

    if seqs is None:
        seqs = load_video_dataset(args.dataset, _split(args.sequences), args.max_sequences, args.max_frames,
                                  args.layout)
    predictor = video_predictor(model, "interactive", getattr(args, "dtype", None)) if runner is None else None
    remote = runner.interactive_video(_modes(args.mode), seqs) if runner is not None else None
    per_mode: Dict[str, Any] = {}
    for mode in _modes(args.mode):
        _log(f"interactive-video: {mode}")
        if remote is not None:
            per_mode[mode] = remote[mode]
            continue
        t0 = time.perf_counter()
        res = run_interactive_video(predictor, seqs, mode=mode, max_frames=args.max_interacted,
                                    clicks_per_frame=args.clicks_per_frame, pause_iou=args.pause_iou,
                                    progress=lambda k: _log(f"  {k}"))
        res["seconds"] = time.perf_counter() - t0
        per_mode[mode] = res
    first = per_mode[next(iter(per_mode))]
    protocol = first["protocol"].replace(f"interactive {first['mode']}", "interactive " + " and ".join(per_mode))
    out: Dict[str, Any] = {"J&F-Mean": first["J&F-Mean"], "curve": first["curve"], "mode": first["mode"],
                           "per_mode": per_mode, "per_sequence": first["per_sequence"], "protocol": protocol}
    for mode, res in per_mode.items():
        out[f"{mode} J&F-Mean"] = res["J&F-Mean"]
        out[f"{mode} J&F@1"] = res["J&F@1"]
        out[f"{mode} J&F@{args.max_interacted}"] = res["curve"][-1]
    out["_sequences"] = [s.name for s in seqs]
    return out


def run_interactive_video_command(args: Any) -> Dict[str, Any]:
    runner = _distributed(args, "interactive-video")
    if runner is None:
        model, used = load_bench_model(args.model, args.checkpoint, args.device)
        res = interactive_video_results(model, args)
        device = str(model.device)
    else:
        res = interactive_video_results(None, args, runner=runner)
        used, device = runner.used, runner.device
    names = res.pop("_sequences")
    meta = run_metadata("interactive-video", MODEL_ALIASES.get(args.model, args.model), used, device,
                        args.dtype or "fp32", settings={"dataset": args.dataset, "modes": _modes(args.mode),
                                                         "max_interacted": args.max_interacted,
                                                         "clicks_per_frame": args.clicks_per_frame,
                                                         "pause_iou": args.pause_iou, "sequences": names})
    meta["results"] = res
    _add_execution(meta, runner)
    write_report(Path(args.output_dir), meta)
    return meta


def _split(s: Optional[str]) -> Optional[List[str]]:
    return [x for x in s.split(",") if x] if s else None
