"""Honest validation: fixed clips and objects (two passes, same scores), every object scored up
to the cap, and the CLI logs a baseline before the first step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest

from lightning_module.datamodules import SAM2DataModule
from lightning_module.module import SAM2FineTuner

from .helpers import trainer_kwargs
from .test_data_prompts import _write_video_folder
from .test_microscopy_data import _nuclei, _volume

tifffile = pytest.importorskip("tifffile")
ROOT = Path(__file__).resolve().parents[2]


def _write_sources(root: Path) -> list:
    """A video folder (4 frames), a 3D stack and a 2D image folder (300x280: 2x2 tiles)."""
    _write_video_folder(root / "vos", frames=6)
    img, lab = _volume()
    for d in ("stack/images", "stack/masks", "cells/images", "cells/masks"):
        (root / d).mkdir(parents=True)
    tifffile.imwrite(root / "stack/images/v.tif", img)
    tifffile.imwrite(root / "stack/masks/v.tif", lab)
    cimg, clab = _nuclei(300, 280, n=30, seed=5)
    tifffile.imwrite(root / "cells/images/c.tif", cimg)
    tifffile.imwrite(root / "cells/masks/c.tif", clab)
    return [{"kind": "video_folder", "root": str(root / "vos"), "num_frames": 4, "resize": "squash"},
            {"kind": "stack", "images": str(root / "stack/images"), "masks": str(root / "stack/masks"),
             "num_frames": 4, "scale": 4.0},
            {"kind": "image_folder", "images": str(root / "cells/images"),
             "masks": str(root / "cells/masks")}]


def test_two_validation_passes_with_unchanged_weights_give_identical_metrics(tmp_path):
    dm = SAM2DataModule(val_sources=_write_sources(tmp_path), val_batch_size=2, val_batches=50)
    module = SAM2FineTuner()
    trainer = pl.Trainer(**trainer_kwargs())
    first = trainer.validate(module, datamodule=dm, verbose=False)[0]
    # a fresh DataModule: the clips must not depend on what was read before, nor on an RNG
    dm2 = SAM2DataModule(val_sources=_write_sources(tmp_path / "again"), val_batch_size=2,
                         val_batches=50)
    second = pl.Trainer(**trainer_kwargs()).validate(module, datamodule=dm2, verbose=False)[0]
    third = trainer.validate(module, datamodule=dm, verbose=False)[0]
    assert set(first) >= {"val/J&F", "val/mIoU_1click", "val/loss", "val/objects"}
    assert first == second == third
    # every object on the first frame of every view is scored: all 30 cells (once each,
    # although the image is cut into 4 tiles), the 2 objects of the video, and the stack's
    _, clab = _nuclei(300, 280, n=30, seed=5)
    _, vlab = _volume()
    starts = [w[1] for w in dm.val_set.sources[1].windows]
    stack_objects = sum(len(np.unique(vlab[s])) - 1 for s in starts)
    assert first["val/objects"] == len(np.unique(clab)) - 1 + 2 + stack_objects


def test_objects_beyond_the_cap_are_reported(tmp_path):
    specs = _write_sources(tmp_path)[2:]
    dm = SAM2DataModule(val_sources=specs, val_max_objects=3, image_size=256)
    with pytest.warns(UserWarning, match=r"at most 3 objects per view \(val_max_objects\): "
                                         r"\d+ object\(s\) beyond that are not scored"):
        dm.setup("validate")
    for b in (dm.val_set[i] for i in range(len(dm.val_set))):
        assert int(np.bincount(b.obj_to_clip.numpy()).max()) <= 3  # per view


def _cli(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(body)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lightning_module.cli", "fit", "--config", str(cfg),
                           "--export", str(tmp_path / "out.pt")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_logs_the_baseline_first_and_shows_real_epochs(tmp_path):
    specs = _write_sources(tmp_path)[2:]
    proc = _cli(tmp_path, f"""
seed_everything: 0
trainer:
  accelerator: cpu
  max_steps: 3
  logger: {{class_path: lightning.pytorch.loggers.CSVLogger, init_args: {{save_dir: {tmp_path}}}}}
  enable_checkpointing: false
  enable_model_summary: false
  val_check_interval: 2
  check_val_every_n_epoch: null
data:
  batch_size: 1
  train_batches: 2
  val_batches: 2
  max_objects: 2
  train_sources: [{{kind: image_folder, images: {specs[0]['images']}, masks: {specs[0]['masks']}}}]
  val_sources: [{{kind: image_folder, images: {specs[0]['images']}, masks: {specs[0]['masks']}}}]
model:
  freeze: [image_encoder]
  prompts: {{num_correction_clicks: 1}}
""")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "args parameter" not in log  # no LightningCLI noise
    assert "baseline (before training):" in log and "val/mIoU_1click" in log
    assert "/-2" not in log and "Epoch 1/1" in log  # 3 steps of 2-batch epochs: epochs 0 and 1
    metrics = next(tmp_path.rglob("metrics.csv")).read_text().splitlines()
    header = metrics[0].split(",")
    rows = [dict(zip(header, r.split(","))) for r in metrics[1:]]
    val_rows = [r for r in rows if r.get("val/mIoU_1click")]
    assert val_rows and val_rows[0]["step"] == "0"  # the log starts with the baseline
    assert len(val_rows) >= 2  # and validates during training too
    assert (tmp_path / "out.pt").is_file()


def test_cli_refuses_a_size_the_model_cannot_take(tmp_path):
    specs = _write_sources(tmp_path)[2:]
    proc = _cli(tmp_path, f"""
trainer: {{accelerator: cpu, max_steps: 1, logger: false}}
data:
  image_size: 512
  train_sources: [{{kind: image_folder, images: {specs[0]['images']}, masks: {specs[0]['masks']}}}]
""")
    assert proc.returncode != 0
    assert "data.image_size is 512 but the model sam2.1_hiera_nano takes 256x256" in proc.stderr
    assert not (tmp_path / "out.pt").exists()
