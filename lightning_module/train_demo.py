"""Train the demo model (``sam2.1_hiera_nano`` from scratch on synthetic clips) and export it.

    python -m lightning_module.train_demo --out sam2_plugins/weights/sam2.1_hiera_nano_demo.pt \
        --max-steps 3000 --accelerator auto

Works on CPU and CUDA (bf16-mixed there by default). Before and after training it scores the
model on held-out synthetic videos (seeds never used for training): J&F of tracking from a
first-frame mask, and mIoU of a one-centre-click segmentation of frame 0; both are printed
beside the untrained baseline and written, with the settings and timings, to ``<out>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["main", "parse_args", "demo_datamodule"]

VAL_SEED = 900_000_000


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lightning_module.train_demo",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="sam2_plugins/weights/sam2.1_hiera_nano_demo.pt")
    p.add_argument("--card", default=None,
                   help="also write the model card here (e.g. sam2_plugins/weights/MODEL_CARD.md)")
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop training after this wall time (validation and export still run)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="1")
    p.add_argument("--precision", default="auto", help="auto: bf16-mixed on CUDA, else 32-true")
    p.add_argument("--batch-size", type=int, default=4, help="clips per step (per device)")
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--image-weight", type=float, default=1.0,
                   help="sampling weight of 1-frame (image) batches vs 3 for video batches")
    p.add_argument("--image-first-steps", type=int, default=0,
                   help="curriculum: the first N steps train on click/box-prompted images only "
                        "(the decoder learns to follow prompts before tracking frames, which "
                        "carry no prompt, dominate)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--vision-lr", type=float, default=None,
                   help="rate of the image encoder (default: --lr)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this decay "
                        "(e.g. 0.998) and validate and export it instead of the last step's "
                        "weights (0: off); smooths the step-to-step swings of small-batch runs")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--corrections", type=int, default=3,
                   help="corrective clicks per corrected frame (upstream 7)")
    p.add_argument("--iou-weight", type=float, default=1.0,
                   help="weight of the IoU-prediction L1 term (upstream 1); the IoU head picks "
                        "which of the 3 masks a single click returns")
    p.add_argument("--attention-dropout", type=float, default=0.1,
                   help="memory-attention dropout (upstream 0.1); 0 makes steps faster "
                        "(SDPA can use its fused kernel)")
    p.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--val-clips", type=int, default=32)
    p.add_argument("--val-every", type=int, default=0, help="validate every N steps (0: end)")
    p.add_argument("--init", default=None, help="start from this checkpoint instead of random")
    p.add_argument("--eval-only", action="store_true",
                   help="only score --init (or the untrained model) on the held-out clips and "
                        "print the scores as JSON; nothing is trained or written")
    p.add_argument("--train-only", default="",
                   help="comma-separated parameter-name prefixes: train only these, freeze the "
                        "rest (e.g. 'sam_mask_decoder.iou_prediction_head': a stage that only "
                        "teaches the IoU head to rank the masks, which leaves every mask as is)")
    p.add_argument("--freeze", default="",
                   help="comma-separated parameter-name prefixes not to train (e.g. "
                        "'image_encoder,sam_prompt_encoder,sam_mask_decoder': a tracking stage "
                        "that trains only the memory path and keeps what the image stages "
                        "learned)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=25)
    args = p.parse_args(argv)
    # checked here so that a bad value fails before a model is built, --eval-only included
    if args.ema and not 0.0 < args.ema < 1.0:
        raise ValueError(f"--ema must be a decay in (0, 1), got {args.ema}")
    return args


def demo_datamodule(args: argparse.Namespace, image_size: int):
    from .datamodules import SAM2DataModule

    sizes = {"height": [96, 320], "width": [96, 320]}
    train = [
        {"kind": "synthetic", "length": 10_000_000, "num_frames": args.num_frames,
         "num_objects": [1, 3], "num_distractors": [0, 2], "seed": args.seed * 10_000_000,
         "weight": 3.0, **sizes},
        {"kind": "synthetic", "length": 10_000_000, "num_frames": 1, "num_objects": [1, 4],
         "num_distractors": [0, 2], "seed": 400_000_000 + args.seed * 10_000_000,
         "weight": args.image_weight, **sizes},
    ]
    val = [{"kind": "synthetic", "length": args.val_clips, "num_frames": 8,
            "num_objects": [1, 3], "num_distractors": 1, "seed": VAL_SEED,
            "height": 192, "width": 256}]
    bs = max(1, min(args.batch_size, 4))
    # the demo model was trained on whole synthetic frames squashed to 256² (resize="squash"),
    # without the absent-object draws (its synthetic clips have occlusions of their own)
    return SAM2DataModule(train_sources=train, val_sources=val, image_size=image_size,
                          resize="squash", absent_p=0.0,
                          batch_size=args.batch_size, val_batch_size=bs,
                          train_batches=max(args.max_steps, 1) * 64,
                          val_batches=max(1, args.val_clips // bs), max_objects=3,
                          augment=True, num_workers=args.num_workers, seed=args.seed,
                          curriculum=({"batches": args.image_first_steps, "weights": [0.0, 1.0]}
                                      if getattr(args, "image_first_steps", 0) else None))


def freeze_prefixes(model: Any, freeze: List[str],
                    train_only: Optional[List[str]] = None) -> int:
    """:func:`lightning_module.optim.freeze_prefixes` with this script's flag names."""
    from .optim import freeze_prefixes as _freeze

    return _freeze(model, freeze, train_only, names=("--freeze", "--train-only"))


def _scores(res: List[Dict[str, float]]) -> Dict[str, float]:
    r = res[0] if res else {}
    return {k: float(r[f"val/{k}"])
            for k in ("J&F", "J", "F", "mIoU_1click", "mIoU_1click_best_of_masks", "loss")
            if f"val/{k}" in r}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import Callback

    from .module import SAM2FineTuner
    from .optim import cosine_lambda

    pl.seed_everything(args.seed, workers=True)
    cuda = torch.cuda.is_available() and args.accelerator in ("auto", "gpu", "cuda")
    precision = args.precision if args.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # the module's own step schedule is flat here; the Schedule callback below drives the rate
    module = SAM2FineTuner(model_name="sam2.1_hiera_nano", checkpoint=args.init,
                           attention_dropout=args.attention_dropout, lr=args.lr,
                           vision_lr=(args.vision_lr if args.vision_lr is not None else args.lr),
                           weight_decay=args.weight_decay, layer_decay=1.0,
                           warmup_steps=0, min_lr_ratio=1.0,
                           prompts={"num_correction_clicks": args.corrections},
                           loss_weights={"iou": args.iou_weight})
    keep = [f.strip() for f in args.train_only.split(",") if f.strip()]
    frozen = freeze_prefixes(module.model, [f for f in args.freeze.split(",") if f.strip()], keep)
    if frozen:
        print(f"frozen: {frozen} parameters ({args.freeze or 'all but ' + args.train_only})",
              flush=True)
    image_size = module.model.image_size
    dm = demo_datamodule(args, image_size)

    class Schedule(Callback):
        """Warm-up, then cosine to a tenth over the run's progress: the larger of the step
        fraction and, with --max-minutes, the wall-time fraction (so a time-boxed GPU run
        still ends at the low rate)."""

        def __init__(self) -> None:
            self.t0 = time.time()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            step = trainer.global_step
            frac = step / max(args.max_steps, 1)
            if args.max_minutes:
                frac = max(frac, (time.time() - self.t0) / (60.0 * args.max_minutes))
            factor = cosine_lambda(1000, 0, 0.1)(int(min(frac, 1.0) * 1000))
            if step < args.warmup_steps:
                factor = min(factor, (step + 1) / args.warmup_steps)
            for opt in trainer.optimizers:
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * factor

    class Printer(Callback):
        def __init__(self) -> None:
            self.t0 = time.time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step
            if step % args.log_every == 0 or step == 1:
                loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
                print(f"step {step:6d}  loss {loss:9.4f}  {time.time() - self.t0:7.1f}s",
                      flush=True)

        def on_validation_end(self, trainer, pl_module) -> None:
            # periodic validation (--val-every): print the scores so a long run can be watched
            if trainer.sanity_checking or trainer.state.fn != "fit":
                return
            m = {k.split("/", 1)[1]: round(float(v), 4) for k, v in trainer.callback_metrics.items()
                 if k.startswith("val/")}
            print(f"step {trainer.global_step:6d}  val {m}  {time.time() - self.t0:7.1f}s", flush=True)

    devices: Any = int(args.devices) if str(args.devices).isdigit() else args.devices
    # inference_mode=False: validation under no_grad only, so nothing cached during the
    # baseline evaluation is an inference tensor when training starts
    common = dict(accelerator=args.accelerator, devices=devices, precision=precision,
                  inference_mode=False, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False)
    evaluator = pl.Trainer(**common)
    t0 = time.time()
    baseline = _scores(evaluator.validate(module, datamodule=dm, verbose=False))
    t_base = time.time() - t0
    print(f"{'scores' if args.init else 'untrained baseline'}: {baseline}  ({t_base:.1f}s)", flush=True)
    if args.eval_only:
        result = {"checkpoint": args.init, "scores": baseline, "val_clips": args.val_clips,
                  "seconds": round(t_base, 1)}
        print(json.dumps(result), flush=True)
        return result

    callbacks: List[Any] = [Schedule(), Printer()]
    if args.ema:
        from lightning.pytorch.callbacks import EMAWeightAveraging

        # validation during the run and the exported file use the averaged weights
        callbacks.append(EMAWeightAveraging(decay=args.ema))
    trainer = pl.Trainer(max_steps=args.max_steps, gradient_clip_val=1.0,
                         max_time=({"minutes": args.max_minutes} if args.max_minutes else None),
                         val_check_interval=(args.val_every or None),
                         check_val_every_n_epoch=(None if args.val_every else 1),
                         limit_val_batches=(1.0 if args.val_every else 0),
                         callbacks=callbacks, **common)
    t1 = time.time()
    trainer.fit(module, datamodule=dm)
    train_s = time.time() - t1
    final = _scores(evaluator.validate(module, datamodule=dm, verbose=False))
    out = module.export(args.out)
    size_mb = out.stat().st_size / 2 ** 20
    summary = {
        "model": "sam2.1_hiera_nano", "out": str(out), "size_mb": round(size_mb, 2),
        "steps": int(trainer.global_step), "train_seconds": round(train_s, 1),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "precision": precision, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "baseline": baseline, "trained": final,
        "args": vars(args), "data": dm.describe(), "module": module.describe()["prompts"],
        "command": "python -m lightning_module.train_demo " + " ".join(
            sys.argv[1:] if argv is None else argv),
    }
    if args.init:
        # a staged run: keep the earlier stages' summaries so the card can give the whole
        # chain of commands and the scores of the truly untrained model
        summary["baseline_is"] = "the --init checkpoint"
        prev = Path(str(args.init) + ".json")
        if prev.is_file():
            summary["init_summary"] = json.loads(prev.read_text())
    Path(str(out) + ".json").write_text(json.dumps(summary, indent=2, default=str))
    if args.card:
        from .model_card import render_model_card

        Path(args.card).write_text(render_model_card(json.loads(json.dumps(summary, default=str))))
    print(f"trained {summary['steps']} steps in {train_s:.1f}s on {summary['device']}")
    for k in ("J&F", "mIoU_1click"):
        print(f"{k:12s} untrained {baseline.get(k, float('nan')):.4f}   "
              f"trained {final.get(k, float('nan')):.4f}")
    print(f"exported {out} ({size_mb:.2f} MB)")
    return summary


if __name__ == "__main__":
    main()
