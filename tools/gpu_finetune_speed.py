"""Training speed and peak memory of ``lightning_module`` on one GPU: SAM 2.1 tiny, bf16, 1024².

    python3 tools/gpu_finetune_speed.py [--steps 10] [--warmup 3] [--out result.json]

Run from the repository root (it imports ``sam2_plugins`` and ``lightning_module`` from there;
needs torch with CUDA and lightning 2.x, no install). It trains a random-init
``sam2.1_hiera_tiny`` with :class:`lightning_module.SAM2FineTuner` through a real
``lightning.pytorch.Trainer`` (``precision="bf16-mixed"``, gradient clipping, AdamW, the
paper's loss and prompt simulation) on synthetic data brought to the 1024² input, for two
workloads:

* ``clips``: upstream's video recipe, a batch of 1 clip of 8 frames with 3 objects through the
  memory path, mask / click / box prompts and 7 corrective clicks as upstream;
* ``images``: 4 one-frame images with up to 16 objects each (a nuclei-style image step).

Each workload runs ``--warmup`` untimed steps, then ``--steps`` timed ones; a step's time is
taken between ``on_train_batch_start`` and ``on_train_batch_end`` with CUDA synchronised (the
data loader is excluded; its time is reported apart). Peak memory is
``torch.cuda.max_memory_allocated`` over the workload. Prints one JSON object. About a minute
on an H200 (most of it imports and building the model).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _workload(name: str, steps: int, warmup: int, data_kw: Dict[str, Any],
              prompts: Dict[str, Any], smoke: bool = False) -> Dict[str, Any]:
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import Callback

    from lightning_module import SAM2DataModule, SAM2FineTuner

    cuda = not smoke
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    class Clock(Callback):
        def __init__(self) -> None:
            self.step_s: List[float] = []
            self.t0 = 0.0
            self.t_end = 0.0
            self.wall_start = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            sync()
            self.t0 = time.perf_counter()
            if batch_idx == warmup:
                self.wall_start = self.t0 if not self.t_end else self.t_end

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync()
            self.t_end = time.perf_counter()
            if batch_idx >= warmup:
                self.step_s.append(self.t_end - self.t0)

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    dm = SAM2DataModule(resize="squash", augment=True, num_workers=0 if smoke else 4,
                        train_batches=steps + warmup, absent_p=0.0, **data_kw)
    module = SAM2FineTuner(model_name="sam2.1_hiera_nano" if smoke else "sam2.1_hiera_tiny",
                           checkpoint=None, lr=1e-4, vision_lr=6e-5, prompts=prompts)
    clock = Clock()
    trainer = pl.Trainer(accelerator="cpu" if smoke else "gpu", devices=1,
                         precision="32-true" if smoke else "bf16-mixed", max_steps=steps + warmup,
                         gradient_clip_val=0.1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    sync()
    total = time.perf_counter() - t0
    s = sorted(clock.step_s)
    mean = sum(s) / len(s)
    wall = clock.t_end - clock.wall_start if clock.wall_start else float("nan")
    return {
        "workload": name, "batch": data_kw["batch_size"], "max_objects": data_kw["max_objects"],
        "frames": data_kw["train_sources"][0]["num_frames"], "warmup_steps": warmup,
        "timed_steps": len(s), "steps_per_s": round(1.0 / mean, 3), "s_per_step_mean": round(mean, 4),
        "s_per_step_median": round(s[len(s) // 2], 4),
        "steps_per_s_with_data_loading": round(len(s) / wall, 3) if wall == wall and wall > 0 else None,
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
        "fit_seconds_incl_warmup": round(total, 1),
    }


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per workload")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--only", choices=["clips", "images"], default=None)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--smoke", action="store_true",
                   help="check the script on a CPU: nano at 256², fp32, no timing value")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    out: Dict[str, Any] = {"tool": "gpu_finetune_speed", "model": "sam2.1_hiera_tiny (random init)",
                           "image_size": 1024, "precision": "bf16-mixed"}
    try:
        import lightning
        import torch

        out.update(torch=torch.__version__, lightning=lightning.__version__)
        if args.smoke:
            out.update(device="cpu (smoke run: no timing value)", model="sam2.1_hiera_nano (random init)",
                       image_size=256, precision="32-true")
        else:
            if not torch.cuda.is_available():
                raise RuntimeError("no CUDA device (use --smoke to check the script on a CPU)")
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            out.update(device=torch.cuda.get_device_name(0),
                       total_gpu_mem_gib=round(torch.cuda.get_device_properties(0).total_memory
                                               / 2 ** 30, 1))
        synth = {"kind": "synthetic", "length": 10000, "height": [240, 320], "width": [320, 427],
                 "num_objects": [1, 3], "num_distractors": [0, 2]}
        runs = {
            "clips": ({"batch_size": 1, "max_objects": 3,
                       "train_sources": [{**synth, "num_frames": 8}]},
                      {"num_correction_clicks": 7}),
            "images": ({"batch_size": 4, "max_objects": 16,
                        "train_sources": [{**synth, "num_frames": 1, "num_objects": [4, 16]}]},
                       {"num_correction_clicks": 7}),
        }
        if args.smoke:
            for d, pr in runs.values():
                d["train_sources"][0].update(height=64, width=64)
                pr["num_correction_clicks"] = 1
        out["results"] = [_workload(n, args.steps, args.warmup, d, pr, args.smoke)
                          for n, (d, pr) in runs.items() if args.only in (None, n)]
    except Exception as exc:  # report, as JSON, what stopped the run
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
