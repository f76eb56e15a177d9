"""The ``sam2-plugins`` console script.

Subcommands:
  models                      list model names and whether their weights are cached
  download NAME [NAME ...]    fetch official checkpoints into the cache
  segment IMAGE --point X,Y   segment one image from clicks / a box; writes a mask and an overlay
  fiftyone install            make FiftyOne find the bundled plugin (links it into its plugins dir)
  label IMAGES_DIR --out DIR  automatic masks for a folder of images, one COCO-RLE JSON each
                              (--executor ray for a Ray cluster; sam2_exec.cli)
  bench COMMAND ...           the benchmark suite (= python -m sam2_plugins_bench, or python -m
                              benchmarks in a checkout)
  finetune fit --config F     fine-tuning (= python -m sam2_plugins_lightning.cli; in a checkout
                              python -m lightning_module.cli); --print-example-config lists configs
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence


def _parse_xy(text: str, count: int = 2) -> List[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from exc
    if len(vals) != count:
        raise argparse.ArgumentTypeError(f"expected {count} numbers separated by commas, got {len(vals)} in {text!r}")
    return vals


def _parse_box(text: str) -> List[float]:
    return _parse_xy(text, 4)


def _cmd_models(_: argparse.Namespace) -> int:
    from .checkpoints import REGISTRY, cache_dir, demo_checkpoint_path
    from .configs import list_models
    from .default_model import DEFAULT_MODEL, DEMO_LABEL, DEMO_MODEL

    for name in list_models():
        if name in REGISTRY:
            cached = (cache_dir() / REGISTRY[name].filename).exists()
            where = "cached" if cached else "download on demand"
            where += " (the default)" if name == DEFAULT_MODEL else ""
        else:
            where = "shipped" if demo_checkpoint_path().exists() else "random init only"
            where += f": --model demo, {DEMO_LABEL}" if name == DEMO_MODEL else ""
        print(f"{name:28s} {where}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .checkpoints import resolve_checkpoint
    from .configs import get_config

    for name in args.names:
        path = resolve_checkpoint(get_config(name).name, "download")
        print(path)
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from .default_model import build_model, resolve_choice
    from .output_paths import OutputPathError, atomic_write_bytes
    from .predictors.image import SAM2ImagePredictor

    if args.label and len(args.label) != len(args.point or []):
        raise ValueError(f"--label given {len(args.label)} times for {len(args.point or [])} --point; "
                         "give one per point")
    if not args.point and not args.box:
        raise ValueError("no prompt: give --point X,Y (repeatable) and/or --box X0,Y0,X1,Y1")
    out = Path(args.out)
    targets = [out / "mask.png", out / "overlay.png"]
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"--out {out} is an existing file, not a folder")
    for t in targets:  # checked before the model runs: never replace the input or an earlier result unasked
        if Path(args.image).resolve() == t.resolve():
            raise OutputPathError(f"--out {out} would overwrite the input image {args.image}; choose another folder")
        if t.exists() and not args.overwrite:
            raise OutputPathError(f"{t} exists; pass --overwrite to replace it, or choose another --out folder")
    image = np.asarray(Image.open(args.image).convert("RGB"))
    choice = resolve_choice(args.model, args.checkpoint)
    if choice.is_demo:
        print(f"model: {choice.label}", file=sys.stderr)
    model = build_model(choice, device=args.device, how_to_use_demo="Run again with --model demo to try it.")
    pred = SAM2ImagePredictor(model)
    pred.set_image(image)
    points = np.array([p for p in args.point], dtype=np.float32).reshape(-1, 2) if args.point else None
    labels = np.array(args.label if args.label else [1] * (0 if points is None else len(points)), dtype=np.int32)
    box = np.array(args.box, dtype=np.float32) if args.box else None
    masks, scores, _ = pred.predict(point_coords=points, point_labels=labels if points is not None else None,
                                    box=box, multimask_output=False)
    mask = masks[0] > 0
    overlay = image.astype(np.float32)
    overlay[mask] = 0.5 * overlay[mask] + 0.5 * np.array([30, 144, 255], dtype=np.float32)
    for target, arr in zip(targets, ((mask * 255).astype(np.uint8), overlay.astype(np.uint8))):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        atomic_write_bytes(target, buf.getvalue())
    print(f"mask area {int(mask.sum())} px, predicted IoU {float(scores[0]):.3f}; wrote {out}/mask.png, overlay.png")
    return 0


#: Adapters add subcommands through this entry-point group (``name = "module:main"``, where
#: ``main(argv)`` returns an exit code), so the core never imports an adapter.
COMMAND_GROUP = "sam2_plugins.cli"


def adapter_commands() -> Dict[str, Any]:
    """Installed adapter subcommands: name -> entry point (loaded only when run)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


def _run_adapter(name: str, ep: Any, rest: Sequence[str]) -> int:
    try:
        fn = ep.load()
    except ImportError as exc:
        print(f"error: the '{name}' command ({ep.value}) cannot be loaded: {exc}; install its extra "
              f"(pip install 'sam2-plugins[all]', or the extra the command's docs name)", file=sys.stderr)
        return 2
    return int(fn(list(rest)) or 0)


def build_parser() -> argparse.ArgumentParser:
    from .default_model import DEFAULT_MODEL, DEMO_LABEL

    p = argparse.ArgumentParser(prog="sam2-plugins", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list models").set_defaults(func=_cmd_models)
    d = sub.add_parser("download", help="download official checkpoints")
    d.add_argument("names", nargs="+")
    d.set_defaults(func=_cmd_download)
    s = sub.add_parser("segment", help="segment one image from prompts")
    s.add_argument("image")
    s.add_argument("--point", type=_parse_xy, action="append", help="X,Y in image pixels (repeatable)")
    s.add_argument("--label", type=int, action="append", help="1 positive, 0 negative (one per --point)")
    s.add_argument("--box", type=_parse_box, help="X0,Y0,X1,Y1 in image pixels")
    s.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"a model name (default {DEFAULT_MODEL}: official weights, downloaded once and cached), "
                        f"or 'demo': the shipped {DEMO_LABEL}")
    s.add_argument("--checkpoint", default="auto",
                   help="'auto' (official weights for official names, the demo weights for 'demo'), "
                        "a path, 'download', 'demo' or 'none' (random weights)")
    s.add_argument("--device", default=None)
    s.add_argument("--out", default="out/segment")
    s.add_argument("--overwrite", action="store_true", help="replace mask.png / overlay.png already in --out")
    s.set_defaults(func=_cmd_segment)
    for name, ep in sorted(adapter_commands().items()):
        a = sub.add_parser(name, add_help=False, help=f"{_ADAPTER_HELP.get(name, 'an adapter command')} "
                                                     f"({ep.value.split(':')[0]}; '{name} --help')")
        a.add_argument("rest", nargs=argparse.REMAINDER)
        a.set_defaults(func=lambda args, name=name, ep=ep: _run_adapter(name, ep, args.rest))
    return p


_ADAPTER_HELP = {"fiftyone": "FiftyOne plugin helpers (e.g. 'fiftyone install')",
                 "bench": "the benchmark suite",
                 "finetune": "fine-tuning with Lightning ('finetune fit --config F')",
                 "label": "automatic masks for a folder of images, one COCO-RLE JSON each"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = adapter_commands()
    if argv and argv[0] in commands:  # the adapter's own parser takes every argument, in any order
        return _run_adapter(argv[0], commands[argv[0]], argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:  # OSError: missing / unreadable files
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
