"""``sam2-plugins label IMAGES_DIR --out OUT_DIR [--executor ray]``: label a folder of images.

Automatic masks (SAM 2's automatic mask generator) for every image under ``IMAGES_DIR``, one
COCO-RLE JSON per image under ``OUT_DIR`` (layout: :mod:`sam2_exec.label`). A rerun skips the
images already done; a file that is not a readable image is reported and skipped.

Exit status: 0 all done; 3 finished but some images failed (listed, and in
``OUT_DIR/sam2_label_summary.json``); 2 bad arguments; 130 interrupted (Ctrl-C; what was
written stays, rerun to continue).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .images import AMG_DEFAULTS
from .options import add_executor_args, executor_options

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sam2-plugins label", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder (one JSON per image)")
    p.add_argument("--model", default="sam2.1_hiera_nano", help="model name (sam2-plugins models)")
    p.add_argument("--checkpoint", default="demo", help="'demo' (shipped), 'download', a path, or 'none' (random)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, mps, cpu (default: best available)")
    p.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="autocast dtype")
    p.add_argument("--batch-size", type=int, default=1, help="images per image-encoder pass")
    p.add_argument("--images-per-task", type=int, default=None,
                   help="images sent to a worker at once (default 4 x batch size)")
    p.add_argument("--readers", type=int, default=2, help="image-decoding threads per worker")
    p.add_argument("--overwrite", action="store_true", help="relabel images that already have a JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    g = p.add_argument_group("automatic mask generator")
    for name, default in AMG_DEFAULTS.items():
        g.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    add_executor_args(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from .label import label_folder, print_summary

    def progress(fraction: float, text: str) -> None:
        if not args.quiet:
            print(f"[{100 * fraction:5.1f}%] {text}", file=sys.stderr, flush=True)

    try:
        opts = executor_options(args)
        name = opts.pop("executor")
        ckpt = None if args.checkpoint in ("none", "random") else args.checkpoint
        dtype = None if args.dtype == "fp32" else args.dtype
        summary = label_folder(
            args.images_dir, args.out, executor=name, workers=opts.pop("workers", None), model=args.model,
            checkpoint=ckpt, device=args.device, batch_size=args.batch_size,
            images_per_task=args.images_per_task, overwrite=args.overwrite, progress=progress,
            readers=args.readers, dtype=dtype, ray_options=opts,
            **{k: getattr(args, k) for k in AMG_DEFAULTS})
    except KeyboardInterrupt:
        print(f"interrupted: the images labeled so far are in {args.out}; rerun the same command to continue",
              file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary, args.out)
    return 3 if summary["failed"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
