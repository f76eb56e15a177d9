"""Run by test_ddp.py in a subprocess: 2-process DDP (gloo, CPU) fit of the nano model.

Lightning's DDP launcher re-executes this file once per extra rank, so it must be a script.
Each process writes "RANK <r> WORLD <w> STEPS <n> LOSS <x> SUM <checksum>" to
``<out_dir>/rank<r>.txt`` (files, since the ranks' stdout lines can interleave); rank 0 also
exports ``<out_dir>/ddp.pt``.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from lightning_module.datamodules import SAM2DataModule  # noqa: E402
from lightning_module.module import SAM2FineTuner  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True)
    dm = SAM2DataModule(
        train_sources=[{"kind": "synthetic", "length": 50, "num_frames": 2, "height": 48, "width": 48}],
        val_sources=[{"kind": "synthetic", "length": 4, "num_frames": 3, "height": 48, "width": 48,
                      "seed": 1000}],
        batch_size=1, train_batches=4, val_batch_size=1, val_batches=2, augment=False)
    module = SAM2FineTuner(lr=1e-3, vision_lr=1e-3, prompts={"num_correction_clicks": 1})
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=2,
                         strategy="ddp_find_unused_parameters_true", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    loss = float(trainer.callback_metrics["train/loss"])
    # the J&F metric is synchronised: every rank reports the mean over both ranks' clips
    res = trainer.validate(module, datamodule=dm, verbose=False)[0]
    checksum = float(sum(p.detach().double().sum() for p in module.model.parameters()))
    out_dir = Path(sys.argv[1])
    line = (f"RANK {trainer.global_rank} WORLD {trainer.world_size} STEPS {trainer.global_step} "
            f"LOSS {loss:.6f} SUM {checksum:.8f} "
            f"JF {res['val/J&F']:.6f} OBJ {float(module.val_jf.objects):.0f}")
    (out_dir / f"rank{trainer.global_rank}.txt").write_text(line)
    if trainer.is_global_zero:
        module.export(out_dir / "ddp.pt")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
