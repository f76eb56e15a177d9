"""``python -m benchmarks <command>``: the zero-shot benchmark suite.

Commands:
  evaluate           score prediction folders against DAVIS-layout GT (J&F JSON contract)
  vos                semi-supervised VOS: GT mask / box / 1, 3, 5 click prompts, then J&F
                     (DAVIS, YouTube-VOS / MOSE / LVOS with a submission zip, SA-V per-object PNGs;
                      --dataset hard: the hard-case benchmark; --memory-mode a,b,c: tracking modes side by side)
  interactive-image  1..k click mIoU, NoC@85/90 on image sets (per dataset, then their mean)
  interactive-video  SAM 2 offline / online interactive video protocols
  suite              several datasets and protocols from a config (the SAM 2 paper's tables)
  speed              image / image-encoder latency (benchmarks.image_speed, image_encoder_speed)
  video-speed        video tracking speed (benchmarks.video_speed)
  video-memory       video memory use (benchmarks.video_memory)
  evaluate-speed     time ``evaluate`` against the official DAVIS evaluator on the golden data
  napari-speed       napari plugin: click -> Labels latency, propagation overhead (needs Xvfb or a display)
  scale              throughput in-process vs Ray workers; image encoder throughput vs batch size
  finetune-stardist  fine-tune the demo model on stardist nuclei with the documented recipes, before / after
  report             one HTML page (+ Markdown) from several run folders / JSON files
  demo               zero-shot VOS with the demo model on DAVIS (if present) or synthetic data

``evaluate`` imports neither torch nor the model code, so it starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .output_safety import add_overwrite, at_least, check_outputs, finish_outputs

__all__ = ["main", "build_parser"]

EVAL_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from sam2_plugins.evaluation.folders import evaluate_folders

    seqs = [s for s in args.sequences.split(",") if s] if args.sequences else None
    t0 = time.perf_counter()
    if args.layout == "sav":
        from sam2_plugins.evaluation.folders import evaluate_sav_folders

        if args.per_frame:
            raise ValueError("--per-frame is not available for the SA-V layout")
        res = evaluate_sav_folders(args.gt_root, args.pred_root, seqs, workers=args.workers,
                                   skip_first_last=not args.all_frames)
    else:
        res = evaluate_folders(
            args.gt_root, args.pred_root, seqs, workers=args.workers, binary_gt=args.binary_gt,
            skip_first_last=not args.all_frames, lifetime=args.lifetime,
            uint8_bins=not args.fixed_decay, per_frame=args.per_frame, progress=not args.quiet,
        )
    from .report import run_metadata, write_json, write_markdown, write_plots

    out: Dict[str, Any] = {k: res[k] for k in EVAL_KEYS}
    out["per_object"] = res["per_object"]
    out["per_sequence"] = res["per_sequence"]
    out["dropped_objects"] = res.get("dropped_objects", [])  # objects with no scored GT frame (warned)
    if args.per_frame:
        out["per_frame"] = res["per_frame"]
    meta = run_metadata("evaluate", settings={
        "gt_root": str(args.gt_root), "pred_root": str(args.pred_root), "sequences": res["sequences"],
        "lifetime": "first_appearance" if args.layout == "sav" else args.lifetime, "layout": args.layout,
        "skip_first_last": not args.all_frames, "binary_gt": args.binary_gt,
    })
    meta["seconds"] = time.perf_counter() - t0
    meta["n_objects"] = res["n_objects"]
    meta["workers"] = res.get("workers")
    out["metadata"] = meta
    write_json(args.output, out)
    if args.report_dir:
        run = dict(meta, results={k: v for k, v in out.items() if k != "metadata"})
        write_json(Path(args.report_dir) / "report.json", run)
        write_markdown(Path(args.report_dir) / "report.md", run)
        write_plots(args.report_dir, run)
    if not args.quiet:
        print(" ".join(f"{k}={out[k]:.4f}" if out[k] is not None else f"{k}=nan" for k in EVAL_KEYS))
        print(f"{res['n_objects']} objects, {len(res['sequences'])} sequences, {meta['seconds']:.2f} s -> "
              f"{args.output}")
    return 0


def _run(fn_name: str, module: str = "runs") -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        meta = getattr(importlib.import_module(f"{__package__}.{module}"), fn_name)(args)
        res = meta.get("results", {})
        keys = [k for k in ("J&F-Mean", "mIoU@1", "mIoU@5", "NoC@85", "NoC@90", "fps_end_to_end")
                if isinstance(res.get(k), (int, float))]
        print(" ".join(f"{k}={res[k]:.4f}" for k in keys) + f" -> {args.output_dir}")
        return 0

    return run


def _dispatch(module_names: Sequence[str]) -> Callable[[argparse.Namespace], int]:
    """Forward the remaining arguments to ``<module>.main(argv)`` (the first module found)."""

    def run(args: argparse.Namespace) -> int:
        errors = []
        for name in module_names:
            try:
                # "benchmarks.x" in a checkout, "sam2_plugins_bench.x" installed from the wheel
                mod = importlib.import_module(name.replace("benchmarks.", f"{__package__}.", 1))
            except ModuleNotFoundError as e:
                if e.name is not None and name.startswith(e.name):
                    errors.append(name)
                    continue
                raise
            rc = mod.main(list(args.rest))
            return int(rc or 0)
        print(f"error: {' or '.join(errors)} is not available in this checkout (written by another part of the "
              "project)", file=sys.stderr)
        return 2

    return run


def _cmd_suite(args: argparse.Namespace) -> int:
    from .suite import run_suite

    report = run_suite(args)
    for row in report["results"]["rows"]:
        val = row.get("headline")
        print(f"{row['protocol']:>17} {row['dataset']:<22} " + (f"{row['metric']}={val:.4f}" if val is not None
                                                               else f"skipped: {row.get('note', '')}"))
    for key, val in report["results"]["means"].items():
        print(f"mean {key}: {val:.4f}" if val is not None else f"mean {key}: no dataset ran")
    print(f"-> {args.output_dir}")
    return 0


def _vos(args: argparse.Namespace) -> int:
    """``vos``: the hard-case benchmark for ``--dataset hard``, else the protocol once per
    ``--memory-mode`` (several modes: one report folder each under ``--output-dir``)."""
    if args.dataset == "hard":
        from .hard import run_hard_command

        meta = run_hard_command(args)
        res = meta["results"]["per_mode"]
        for mode, r in res.items():
            s = r["summary"]
            print(f"{mode}: " + " ".join(f"{c}={v['J&F']:.4f}" for c, v in s.items()))
        print(f"-> {args.output_dir}")
        return 0
    from sam2_plugins.predictors.video.modes import make_policy

    modes = [m.strip() for m in str(args.memory_mode).split(",") if m.strip()]
    for m in modes:
        make_policy(m)
    if len(modes) == 1:
        return _run("run_vos_command")(args)
    out = args.output_dir
    for m in modes:
        _run("run_vos_command")(argparse.Namespace(**dict(vars(args), memory_mode=m,
                                                            output_dir=str(Path(out) / m))))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import render_html

    out = render_html(args.runs, args.output)
    print(f"wrote {out}")
    return 0


def _add_model_args(p: argparse.ArgumentParser, default_ckpt: Optional[str] = None) -> None:
    p.add_argument("--model", default="nano", help="model name or alias (nano, tiny, small, base_plus, large)")
    p.add_argument("--checkpoint", default=default_ckpt, help="path, 'download', 'demo', or omit for random weights")
    p.add_argument("--device", default=None, help="cuda, mps, cpu (default: best available)")
    p.add_argument("--dtype", default=None, choices=[None, "fp32", "bf16", "fp16"], help="autocast dtype")


def _add_video_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="synthetic",
                   help="'synthetic', 'davis' (../shared/data/davis2016-val) or a root folder")
    p.add_argument("--layout", default="auto", choices=["auto", "davis", "vos", "sav", "youtube", "mose", "lvos"],
                   help="davis: Annotations/480p; vos: JPEGImages/<seq> + sparse Annotations/<seq>; "
                        "sav: JPEGImages_24fps + Annotations_6fps/<video>/<obj:03d> (vos only: per-object PNGs, "
                        "SA-V scoring); youtube/mose/lvos: as vos, plus a submission folder and zip (vos only)")
    p.add_argument("--sequences", default=None, help="comma-separated sequence names")
    p.add_argument("--max-sequences", type=at_least(1), default=None,
                   help="use only the first N sequences ('synthetic': make N videos, default 3)")
    p.add_argument("--max-frames", type=at_least(1), default=None, help="use only the first N frames of each video")
    p.add_argument("--output-dir", required=True, help="report folder")
    add_overwrite(p)


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor ray --workers N ...``: one video / image per work item on Ray workers
    (benchmarks.distributed; the report's numbers are those of the in-process run)."""
    from sam2_exec.options import add_executor_args

    add_executor_args(p)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score prediction folders against DAVIS-layout GT")
    p.add_argument("--gt-root", required=True, type=Path, help="GT root with Annotations/480p/<seq>/*.png")
    p.add_argument("--pred-root", required=True, type=Path, help="predictions <seq>/*.png")
    p.add_argument("--sequences", default=None, help="comma-separated sequence names (default: all GT sequences)")
    p.add_argument("--output", required=True, type=Path, help="result JSON")
    p.add_argument("--workers", type=at_least(1), default=None,
                   help="processes sharing the frames (default: one per CPU; the numbers do not depend on it)")
    p.add_argument("--layout", default="davis", choices=["davis", "sav"],
                   help="davis: <seq>/*.png label maps; sav: <video>/<obj:03d>/*.png binary masks (SA-V rules)")
    p.add_argument("--binary-gt", action="store_true", help="DAVIS-2016 'L' 0/255 masks: one object, 255 is not void")
    p.add_argument("--lifetime", default="davis", choices=["davis", "first_appearance"],
                   help="object rule: DAVIS (objects of frame 0, every frame) or SA-V/YouTube-VOS (from first "
                       "appearance)")
    p.add_argument("--all-frames", action="store_true", help="also score the first and last frames")
    p.add_argument("--fixed-decay", action="store_true", help="do not reproduce the reference's uint8 Decay bins")
    p.add_argument("--per-frame", action="store_true", help="also write per-frame J and F")
    p.add_argument("--report-dir", default=None, help="also write report.json/.md and plots here")
    add_overwrite(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)


def _evaluate_parser() -> argparse.ArgumentParser:
    """A parser with the ``evaluate`` command only: building the other ten costs more than
    parsing (argparse measures the terminal for every argument), and ``evaluate`` is timed
    as a whole process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    _add_evaluate(parser.add_subparsers(dest="command", required=True))
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_evaluate(sub)

    p = sub.add_parser("vos", help="semi-supervised VOS protocol")
    _add_video_args(p)
    _add_model_args(p)
    p.add_argument("--prompt", default="mask", help="mask, box, click1, click3, click5 (comma-separated) or all")
    p.add_argument("--lifetime", default="own_video", choices=["own_video", "davis", "first_appearance"],
                   help="own_video (the SAM 2 paper): objects entering late are their own video, their prompted "
                        "frame not scored; davis: objects of the first frame only; first_appearance: one run, "
                        "objects scored from their first appearance (SA-V / vos-benchmark rule)")
    p.add_argument("--save-predictions", action="store_true", help="write predicted PNGs (DAVIS layout)")
    p.add_argument("--warmup", type=at_least(0), default=0,
                   help="untimed warm-up on the first N frames of the first video")
    p.add_argument("--memory-mode", default="sam2",
                   help="tracking mode(s), comma-separated: sam2, samurai, distractor, long (several: compared side "
                       "by side)")
    hard = p.add_argument_group("--dataset hard (benchmarks.hard)")
    hard.add_argument("--videos-per-category", type=at_least(1), default=10,
                      help="hard videos per category (6 categories)")
    hard.add_argument("--categories", default=None, help="comma-separated subset of the hard categories")
    hard.add_argument("--ordinary-clips", type=at_least(0), default=128,
                      help="ordinary held-out synthetic clips tracked beside the hard videos")
    hard.add_argument("--seed", type=int, default=0, help="first seed of the hard videos")
    hard.add_argument("--results-json", default=None, help="also write the raw JSON here (e.g. benchmarks/results/...)")
    _add_executor_args(p)
    p.set_defaults(func=_vos)

    p = sub.add_parser("interactive-image", help="click-based image segmentation: mIoU@k, NoC")
    p.add_argument("--dataset", default="synthetic",
                   help="'synthetic', 'shared', a .npz, a .tif (+--masks), COCO .json (+--images), or an image folder "
                       "(+--masks)")
    p.add_argument("--masks", default=None)
    p.add_argument("--images", default=None)
    p.add_argument("--max-clicks", type=at_least(1), default=20,
                   help="clicks per instance; NoC is capped at it (RITM: 20)")
    p.add_argument("--max-instances", type=at_least(1), default=None, help="at most this many instances per dataset")
    p.add_argument("--max-instances-per-image", type=at_least(1), default=None,
                   help="at most this many instances per image")
    p.add_argument("--oracle", action="store_true",
                   help="first click: the best of the 3 masks against the GT (SAM's oracle)")
    p.add_argument("--no-mask-input", action="store_true",
                   help="do not feed the previous low-res logits back as mask_input from the 2nd click on")
    p.add_argument("--output-dir", required=True)
    add_overwrite(p)
    _add_model_args(p)
    _add_executor_args(p)
    p.set_defaults(func=_run("run_interactive_image_command"))

    p = sub.add_parser("interactive-video", help="SAM 2 offline / online interactive video protocol")
    _add_video_args(p)
    _add_model_args(p)
    p.add_argument("--mode", default="offline", help="offline, online or both")
    p.add_argument("--max-interacted", type=at_least(1), default=8,
                   help="maximum interacted frames per object (curve N = 1..it)")
    p.add_argument("--clicks-per-frame", type=at_least(1), default=3)
    p.add_argument("--pause-iou", type=float, default=0.75, help="online mode pauses on a frame with IoU below it")
    _add_executor_args(p)
    p.set_defaults(func=_run("run_interactive_video_command"))

    p = sub.add_parser("suite", help="run the datasets of a suite config; one report with per-dataset rows and means")
    p.add_argument("--config", required=True, help="suite config (JSON; benchmarks/configs/*.json)")
    p.add_argument("--data-root", default=None,
                   help="replaces {data_root} in dataset paths (default: $SAM2_BENCH_DATA or ./data)")
    p.add_argument("--output-dir", required=True)
    add_overwrite(p)
    p.add_argument("--only", default=None, help="comma-separated dataset names to run (default: all)")
    _add_model_args(p)
    p.set_defaults(func=_cmd_suite)

    for name, mods, helptext in (
        ("speed", ("benchmarks.image_speed", "benchmarks.image_encoder_speed"), "image predictor speed"),
        ("encoder-speed", ("benchmarks.image_encoder_speed",), "image encoder speed"),
        ("video-speed", ("benchmarks.video_speed",), "video tracking speed"),
        ("video-memory", ("benchmarks.video_memory",), "video memory use"),
        ("evaluate-speed", ("benchmarks.evaluate_speed",), "evaluate speed versus the official DAVIS evaluator"),
        ("napari-speed", ("benchmarks.napari_speed",), "napari plugin click latency and propagation overhead"),
        ("scale", ("benchmarks.scale",), "throughput in-process vs Ray workers, image encoder vs batch size"),
        ("finetune-stardist", ("benchmarks.finetune_stardist",),
         "fine-tune the demo model on stardist nuclei (2D, 3D) and score it before / after"),
        ("cut-threshold", ("benchmarks.cut_threshold",), "shot-cut detector: similarity of consecutive frames"),
        ("mode-speed", ("benchmarks.mode_speed",), "tracking modes: cost per frame side by side"),
    ):
        p = sub.add_parser(name, help=f"{helptext} (arguments are passed on to {mods[0]})", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_dispatch(mods))

    p = sub.add_parser("report", help="render several runs side by side as one HTML page")
    p.add_argument("runs", nargs="+", help="run folders (with report.json) or run JSON files")
    p.add_argument("--output", required=True, type=Path, help="HTML file")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("demo", help="the main job: VOS, interactive image, pictures and speed with the demo model")
    p.add_argument("--output-dir", default="benchmark_report")
    add_overwrite(p)
    p.add_argument("--model", default="nano")
    p.add_argument("--checkpoint", default="demo")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--prompt", default="mask")
    p.add_argument("--sequences", default=None)
    p.add_argument("--max-sequences", type=at_least(1), default=3)
    p.add_argument("--max-frames", type=at_least(1), default=24)
    p.add_argument("--max-clicks", type=at_least(1), default=20,
                   help="clicks per instance (interactive image; RITM's NoC cap)")
    p.add_argument("--max-instances-per-image", type=at_least(1), default=4,
                   help="instances per image (interactive image)")
    p.add_argument("--max-instances", type=at_least(1), default=None, help="instances per dataset (interactive image)")
    p.add_argument("--interactive-sequences", type=at_least(0), default=2,
                   help="synthetic sequences for the interactive video protocols (0: skip them)")
    p.add_argument("--synthetic", action="store_true", help="use synthetic data even if ../shared/data is present")
    p.set_defaults(func=_run("run_full_demo", "demo"))
    return parser


_DISPATCHED = ("speed", "encoder-speed", "video-speed", "video-memory", "evaluate-speed", "napari-speed", "scale",
               "finetune-stardist", "cut-threshold", "mode-speed")


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "evaluate":
        args = _evaluate_parser().parse_args(argv)
    elif argv and argv[0] in _DISPATCHED:
        # dispatching commands take every remaining argument verbatim (including --help)
        parser = build_parser()
        args = argparse.Namespace(func=parser._subparsers._group_actions[0].choices[argv[0]].get_default("func"),
                                  rest=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "executor"):  # bad executor options are refused before a folder is made
            from .distributed import check_executor_args

            check_executor_args(args, str(getattr(args, "command", "") or ""))
        check_outputs(args)  # before any work: outputs never replace inputs or mix runs
        rc = int(args.func(args) or 0)
        if rc == 0:
            finish_outputs(args)
        return rc
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # --executor ray: the workers were stopped; files written so far stay
        print("interrupted", file=sys.stderr)
        return 130
