"""Multi-process DDP (gloo on CPU) and the LightningCLI entry point with a YAML config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_ddp_on_cpu_completes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("ddp_script.py")),
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    text = " ".join(p.read_text() for p in sorted(tmp_path.glob("rank*.txt")))
    lines = re.findall(r"RANK (\d) WORLD (\d) STEPS (\d+) LOSS (\S+) SUM (\S+) JF (\S+)", text)
    assert sorted(r[0] for r in lines) == ["0", "1"], log[-4000:]
    assert all(w == "2" and s == "2" for _, w, s, *_ in lines)
    # DDP keeps the replicas identical: same parameters on both ranks after the updates
    assert len({float(r[4]) for r in lines}) == 1
    assert all(torch.isfinite(torch.tensor(float(r[3]))) for r in lines)
    # the validation metric is reduced across ranks (each rank scored a different clip)
    assert len({r[5] for r in lines}) == 1 and 0.0 <= float(lines[0][5]) <= 1.0
    sd = torch.load(tmp_path / "ddp.pt", weights_only=True)["model"]
    assert "memory_attention.layers.0.self_attn.q_proj.weight" in sd


def test_cli_fit_with_yaml_config_and_export(tmp_path):
    from lightning_module.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 1
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  gradient_clip_val: 1.0
  default_root_dir: {tmp_path}
model:
  model_name: sam2.1_hiera_nano
  lr: 1.0e-3
  freeze_image_encoder: true
  prompts:
    num_correction_clicks: 1
data:
  batch_size: 1
  train_batches: 2
  train_sources:
    - {{kind: synthetic, length: 10, num_frames: 2, height: 32, width: 32}}
""")
    out = tmp_path / "cli.pt"
    main(["fit", "--config", str(cfg), "--export", str(out)])
    sd = torch.load(out, weights_only=True)["model"]
    assert "image_encoder.trunk.patch_embed.proj.weight" in sd


@pytest.mark.parametrize("name", ["finetune_davis.yaml", "nano_synthetic.yaml",
                                  "finetune_nuclei.yaml", "finetune_nuclei_3d.yaml"])
def test_shipped_configs_parse(name):
    from lightning_module.cli import SAM2CLI
    from lightning_module.datamodules import SAM2DataModule
    from lightning_module.module import SAM2FineTuner

    path = ROOT / "lightning_module" / "configs" / name
    cli = SAM2CLI(SAM2FineTuner, SAM2DataModule, run=False,
                  args=["--config", str(path), "--model.checkpoint=null",
                        "--model.model_name=sam2.1_hiera_nano", "--trainer.accelerator=cpu",
                        "--trainer.devices=1", "--trainer.strategy=auto",
                        "--trainer.precision=32-true", "--trainer.logger=false"])
    assert isinstance(cli.model, SAM2FineTuner)
    assert cli.datamodule.hparams.train_sources
