"""The ``sam2-plugins`` console script.

Subcommands:
  models                      list model names and whether their weights are cached
  download NAME [NAME ...]    fetch official checkpoints into the cache
  segment IMAGE --point X,Y   segment one image from clicks / a box; writes a mask and an overlay
  fiftyone install            make FiftyOne find the bundled plugin (links it into its plugins dir)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence


def _parse_xy(text: str) -> List[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from exc
    return vals


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
    from .predictors.image import SAM2ImagePredictor

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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask * 255).astype(np.uint8)).save(out / "mask.png")
    overlay = image.astype(np.float32)
    overlay[mask] = 0.5 * overlay[mask] + 0.5 * np.array([30, 144, 255], dtype=np.float32)
    Image.fromarray(overlay.astype(np.uint8)).save(out / "overlay.png")
    print(f"mask area {int(mask.sum())} px, predicted IoU {float(scores[0]):.3f}; wrote {out}/mask.png, overlay.png")
    return 0


def _cmd_fiftyone(args: argparse.Namespace) -> int:
    try:
        from fiftyone_sam2._install import main as fo_main
    except ImportError as exc:
        print(f"the FiftyOne plugin needs its extra: pip install 'sam2-plugins[fiftyone]' ({exc})", file=sys.stderr)
        return 2
    return int(fo_main(args.rest) or 0)


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
    s.add_argument("--box", type=_parse_xy, help="X0,Y0,X1,Y1 in image pixels")
    s.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"a model name (default {DEFAULT_MODEL}: official weights, downloaded once and cached), "
                        f"or 'demo': the shipped {DEMO_LABEL}")
    s.add_argument("--checkpoint", default="auto",
                   help="'auto' (official weights for official names, the demo weights for 'demo'), "
                        "a path, 'download', 'demo' or 'none' (random weights)")
    s.add_argument("--device", default=None)
    s.add_argument("--out", default="out/segment")
    s.set_defaults(func=_cmd_segment)
    f = sub.add_parser("fiftyone", help="FiftyOne plugin helpers (e.g. 'fiftyone install')")
    f.add_argument("rest", nargs=argparse.REMAINDER)
    f.set_defaults(func=_cmd_fiftyone)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
